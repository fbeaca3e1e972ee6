"""Behaviour of the image operations, their request format and the pipeline that runs them."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from dataset_assets.operations import (
    OPERATIONS,
    Augment,
    Blur,
    CenterCrop,
    ColorJitter,
    Crop,
    Flip,
    GrayScale,
    Noise,
    Normalize,
    OperationError,
    OperationPipeline,
    Pad,
    Posterize,
    Resize,
    Rotate,
    Sharpen,
    Tile,
    Variant,
    describe_operations,
    encode_image,
    format_extension,
)

SEED_EXAMPLE = [{"Resize": {"scaling_factor": 0.5}}, "GrayScale", {"Noise": {"noise_level": 0.1}}]
PROJECT_ROOT = Path(__file__).resolve().parents[1]


def gradient(width: int = 64, height: int = 48, mode: str = "RGB") -> Image.Image:
    """A deterministic colour gradient with distinct pixels along both axes."""
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None].repeat(width, axis=1)
    rgb = np.stack([x, y, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb).convert(mode)


def run(spec: list, image: Image.Image, seed: int = 7) -> list[Variant]:
    return OperationPipeline.parse(spec).apply(image, seed)


def only_image(spec: list, image: Image.Image, seed: int = 7) -> Image.Image:
    (variant,) = run(spec, image, seed)
    return variant.image


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def parse_error(spec: Any) -> str:
    with pytest.raises(OperationError) as caught:
        OperationPipeline.parse(spec)
    return str(caught.value)


# Request format


def test_seed_example_parses_into_the_three_operations() -> None:
    pipeline = OperationPipeline.parse(SEED_EXAMPLE)

    assert [type(operation) for operation in pipeline.operations] == [Resize, GrayScale, Noise]
    assert pipeline.operations[0] == Resize(scaling_factor=0.5)
    assert pipeline.operations[2] == Noise(noise_level=0.1)


def test_to_spec_is_json_and_parses_back_to_the_same_pipeline() -> None:
    spec = [
        *SEED_EXAMPLE,
        {"Pad": {"padding": 3, "fill": "#FFAA00"}},
        {"Rotate": {"degrees": [-10, 10]}},
        {"Augment": {"n": 2, "ops": ["GrayScale", {"Flip": {"direction": "vertical"}}]}},
        {"Convert": {"format": "webp"}},
    ]
    pipeline = OperationPipeline.parse(spec)

    canonical = json.loads(json.dumps(pipeline.to_spec()))

    assert OperationPipeline.parse(canonical) == pipeline
    assert OperationPipeline.parse(canonical).to_spec() == canonical
    assert canonical[1] == "GrayScale"
    assert canonical[3] == {"Pad": {"padding": [3, 3, 3, 3], "fill": "#ffaa00"}}


def test_unknown_operation_lists_the_known_ones_and_suggests_a_close_name() -> None:
    message = parse_error(["Grayscale"])

    assert "operations[0]" in message
    assert "'Grayscale'" in message
    assert "did you mean 'GrayScale'" in message
    for name in OPERATIONS:
        assert name in message


def test_out_of_range_parameter_names_index_operation_parameter_value_and_limit() -> None:
    message = parse_error(["GrayScale", {"Resize": {"scaling_factor": 9}}])

    assert message == (
        "operations[1] Resize: scaling_factor=9: Input should be less than or equal to 8"
    )


def test_every_bad_item_is_reported_one_line_each() -> None:
    message = parse_error(
        [
            {"Noise": {"noise_level": 1.5}},
            {"Flip": {"direction": "diagonal", "angle": 3}},
            {"Tile": {"size": 8, "overlap": 8}},
        ]
    )

    lines = message.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith("operations[0] Noise: noise_level=1.5:")
    assert lines[1] == (
        "operations[1] Flip: direction='diagonal': Input should be 'horizontal' or 'vertical'"
    )
    assert lines[2] == "operations[1] Flip: unknown parameter 'angle' (allowed: direction)"
    assert lines[3] == "operations[2] Tile: overlap must be below size (8), got 8"


def test_missing_and_conflicting_parameters_are_explained() -> None:
    assert parse_error(["Flip"]) == "operations[0] Flip: missing required parameter 'direction'"
    assert "exactly one of scaling_factor, width+height or max_side" in parse_error(
        [{"Resize": {"scaling_factor": 0.5, "max_side": 100}}]
    )
    assert "give both" in parse_error([{"Resize": {"width": 100}}])
    assert "either size, or both width and height" in parse_error(
        [{"CenterCrop": {"size": 4, "width": 4}}]
    )


def test_non_finite_numbers_are_rejected() -> None:
    message = parse_error([{"Blur": {"radius": float("nan")}}])

    assert "radius=nan" in message


def test_union_parameters_give_one_readable_line() -> None:
    message = parse_error([{"Pad": {"padding": -1, "fill": 300}}])

    assert message.splitlines() == [
        "operations[0] Pad: padding=-1: allowed: an integer 0..65535 "
        "or a list [left, top, right, bottom]",
        "operations[0] Pad: fill=300: allowed: a grey level 0..255 or a colour '#rrggbb'",
    ]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ([{"Resize": {"width": 2}, "GrayScale": {}}], "one-key object"),
        ([3], "got 3 (int)"),
        ([["GrayScale"]], "one-key object"),
        ("GrayScale", "expected a list of operations"),
        ({"GrayScale": {}}, "expected a list of operations"),
        ([{"GrayScale": 3}], "parameters must be an object, got 3"),
        ([{7: {}}], "operation name must be a string"),
    ],
)
def test_wrong_shapes_are_operation_errors(spec: object, expected: str) -> None:
    assert expected in parse_error(spec)


def test_nested_augment_errors_point_into_the_nested_list() -> None:
    message = parse_error(
        [{"Augment": {"n": 2, "ops": ["GrayScale", {"Noise": {"noise_level": -1}}]}}]
    )

    assert message.startswith("operations[0] Augment: ops[1] Noise: noise_level=-1:")


def test_augment_cannot_nest_augment() -> None:
    inner = {"Augment": {"n": 2, "ops": ["GrayScale"]}}

    assert "cannot contain another Augment" in parse_error([{"Augment": {"n": 2, "ops": [inner]}}])


def test_describe_operations_gives_one_line_for_every_registered_operation() -> None:
    described = dict(describe_operations())

    assert set(described) == set(OPERATIONS)
    assert {"Resize", "GrayScale", "Noise", "Tile", "Augment", "Convert"} <= set(described)
    assert all(doc and "\n" not in doc for doc in described.values())


# Fingerprints


def test_fingerprints_differ_when_parameters_differ() -> None:
    half = OperationPipeline.parse([{"Resize": {"scaling_factor": 0.5}}])
    quarter = OperationPipeline.parse([{"Resize": {"scaling_factor": 0.25}}])

    assert half.fingerprint != quarter.fingerprint
    assert Resize(scaling_factor=0.5).fingerprint() != Resize(scaling_factor=0.25).fingerprint()
    assert half.fingerprint != OperationPipeline.parse(["GrayScale"]).fingerprint
    assert (
        OperationPipeline.parse(["GrayScale", {"Flip": {"direction": "vertical"}}]).fingerprint
        != OperationPipeline.parse([{"Flip": {"direction": "vertical"}}, "GrayScale"]).fingerprint
    )


def test_equivalent_spellings_share_a_fingerprint() -> None:
    short = OperationPipeline.parse([{"Pad": {"padding": 2}}, {"Resize": {"scaling_factor": 1}}])
    long = OperationPipeline.parse(
        [{"Pad": {"padding": [2, 2, 2, 2], "fill": 0}}, {"Resize": {"scaling_factor": 1.0}}]
    )

    assert short.fingerprint == long.fingerprint


def test_empty_pipeline_has_a_fingerprint_of_its_own() -> None:
    identity = OperationPipeline.parse([])

    assert len(identity.fingerprint) == 12
    assert int(identity.fingerprint, 16) >= 0
    assert identity.fingerprint != OperationPipeline.parse(["GrayScale"]).fingerprint


def test_fingerprint_is_stable_across_processes() -> None:
    code = (
        "from dataset_assets.operations import OperationPipeline\n"
        f"p = OperationPipeline.parse({SEED_EXAMPLE!r})\n"
        "print(p.fingerprint, p.operations[0].fingerprint())"
    )
    outputs = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(PROJECT_ROOT)}
        result = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout.strip())

    pipeline = OperationPipeline.parse(SEED_EXAMPLE)
    assert outputs == {f"{pipeline.fingerprint} {pipeline.operations[0].fingerprint()}"}
    assert pipeline.fingerprint == "7042f18f0375"


# Resize and draft decoding


def test_resize_by_scaling_factor() -> None:
    resized = only_image([{"Resize": {"scaling_factor": 0.5}}], gradient(64, 48))

    assert resized.size == (32, 24)


def test_resize_to_width_and_height_ignores_aspect() -> None:
    resized = only_image([{"Resize": {"width": 10, "height": 40}}], gradient(64, 48))

    assert resized.size == (10, 40)


def test_resize_max_side_keeps_aspect_and_never_upscales() -> None:
    assert only_image([{"Resize": {"max_side": 32}}], gradient(64, 48)).size == (32, 24)
    assert only_image([{"Resize": {"max_side": 32}}], gradient(24, 48)).size == (16, 32)
    assert only_image([{"Resize": {"max_side": 500}}], gradient(64, 48)).size == (64, 48)


def test_resize_nearest_keeps_original_pixel_values() -> None:
    image = Image.new("L", (4, 4), 0)
    image.putpixel((0, 0), 200)
    resized = only_image([{"Resize": {"scaling_factor": 2, "resample": "nearest"}}], image)

    assert set(np.unique(pixels(resized))) == {0, 200}
    assert pixels(resized)[:2, :2].tolist() == [[200, 200], [200, 200]]


def test_resize_refuses_outputs_beyond_the_decompression_bomb_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)

    with pytest.raises(OperationError, match="pixel limit"):
        run([{"Resize": {"scaling_factor": 8}}], gradient(16, 16))


def test_draft_size_is_the_target_of_a_leading_downscale() -> None:
    assert OperationPipeline.parse(SEED_EXAMPLE).draft_size(1600, 1200) == (800, 600)
    assert OperationPipeline.parse([{"Resize": {"max_side": 200}}]).draft_size(1600, 1200) == (
        200,
        150,
    )


@pytest.mark.parametrize(
    "spec",
    [
        [],
        ["GrayScale", {"Resize": {"scaling_factor": 0.5}}],
        [{"Resize": {"scaling_factor": 2}}],
        [{"Resize": {"max_side": 4000}}],
        [{"Resize": {"width": 1600, "height": 1200}}],
        [{"Resize": {"width": 3000, "height": 100}}],
    ],
)
def test_draft_size_is_none_without_a_leading_downscale(spec: list) -> None:
    assert OperationPipeline.parse(spec).draft_size(1600, 1200) is None


@pytest.mark.parametrize(
    "resize",
    [{"scaling_factor": 0.3}, {"max_side": 301}, {"width": 203, "height": 97}],
)
def test_draft_decoded_jpeg_gives_the_same_output_as_a_full_decode(
    tmp_path: Path, resize: dict
) -> None:
    path = tmp_path / "photo.jpg"
    gradient(1203, 901).save(path, quality=95)
    pipeline = OperationPipeline.parse([{"Resize": resize}, "GrayScale"])

    with Image.open(path) as full:
        (expected,) = pipeline.apply(full, seed=3)
    with Image.open(path) as drafted:
        source_size = drafted.size
        size = pipeline.draft_size(*source_size)
        assert size is not None
        drafted.draft(drafted.mode, size)
        assert drafted.size[0] < source_size[0]
        (result,) = pipeline.apply(drafted, seed=3, source_size=source_size)

    assert result.image.size == expected.image.size
    difference = np.abs(pixels(result.image) - pixels(expected.image))
    assert difference.mean() < 2


def test_draft_reduced_jpeg_without_source_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    gradient(800, 600).save(path)
    pipeline = OperationPipeline.parse([{"Resize": {"scaling_factor": 0.25}}])

    with Image.open(path) as image:
        size = pipeline.draft_size(*image.size)
        assert size is not None
        image.draft(image.mode, size)
        with pytest.raises(OperationError, match="source_size"):
            pipeline.apply(image, seed=1)


def test_source_size_needs_a_leading_resize() -> None:
    with pytest.raises(OperationError, match="does not start with Resize"):
        OperationPipeline.parse(["GrayScale"]).apply(gradient(32, 24), 1, source_size=(64, 48))


# Pixel and colour operations


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "CMYK", "1", "LA"])
def test_grayscale_gives_mode_l(mode: str) -> None:
    result = only_image(["GrayScale"], gradient(mode=mode))

    assert result.mode == "L"
    assert result.size == (64, 48)


def test_sixteen_bit_images_are_scaled_to_eight_bits_not_clipped(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(path)

    with Image.open(path) as image:
        assert image.mode.startswith("I")
        result = only_image(["GrayScale"], image)

    assert pixels(result).tolist() == [[0, 128, 255]]


def test_noise_has_about_the_requested_sigma() -> None:
    image = Image.new("RGB", (200, 200), (128, 128, 128))

    noisy = only_image([{"Noise": {"noise_level": 0.05}}], image)

    difference = pixels(noisy) - 128
    assert abs(difference.std() - 0.05 * 255) < 0.5
    assert abs(difference.mean()) < 0.5


def test_noise_is_identical_for_a_seed_and_different_for_another() -> None:
    image = gradient()
    spec = [{"Noise": {"noise_level": 0.1}}]

    first = pixels(only_image(spec, image, seed=11))
    again = pixels(only_image(spec, image, seed=11))
    other = pixels(only_image(spec, image, seed=12))

    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_noise_leaves_alpha_alone() -> None:
    image = gradient(mode="RGBA")
    image.putalpha(77)

    noisy = only_image([{"Noise": {"noise_level": 0.2}}], image)

    assert noisy.mode == "RGBA"
    assert set(np.unique(pixels(noisy)[..., 3])) == {77}


def test_zero_color_jitter_changes_nothing() -> None:
    image = gradient()

    result = only_image([{"ColorJitter": {}}], image)

    assert np.array_equal(pixels(result), pixels(image))


def test_color_jitter_brightness_factor_stays_in_range_and_follows_the_seed() -> None:
    image = Image.new("RGB", (8, 8), (100, 100, 100))
    spec = [{"ColorJitter": {"brightness": 0.5}}]

    levels = {int(pixels(only_image(spec, image, seed=seed))[0, 0, 0]) for seed in range(20)}

    assert all(50 <= level <= 150 for level in levels)
    assert len(levels) > 10
    assert pixels(only_image(spec, image, seed=4)).tolist() == (
        pixels(only_image(spec, image, seed=4)).tolist()
    )


def test_color_jitter_saturation_moves_colourfulness_both_ways() -> None:
    jitter = ColorJitter(saturation=1.0)
    image = Image.new("RGB", (4, 4), (200, 40, 40))
    rng = np.random.default_rng(0)

    spreads = [np.ptp(pixels(jitter.apply(image, rng)[0])[0, 0]) for _ in range(30)]

    assert min(spreads) < 160 < max(spreads)


def test_normalize_stretches_each_channel_to_full_range() -> None:
    values = np.linspace(50, 100, 64, dtype=np.uint8)[None, :].repeat(4, axis=0)
    image = Image.merge(
        "RGBA",
        [
            Image.fromarray(values),
            Image.fromarray(values // 2),
            Image.fromarray(values),
            Image.new("L", (64, 4), 99),
        ],
    )

    result = pixels(only_image(["Normalize"], image))

    for band in range(3):
        assert result[..., band].min() == 0
        assert result[..., band].max() == 255
    assert set(np.unique(result[..., 3])) == {99}


def test_normalize_cutoff_ignores_outliers() -> None:
    values = np.full((10, 100), 120, dtype=np.uint8)
    values[0, 0], values[0, 1] = 0, 255
    values[5:, :] = 140
    image = Image.fromarray(values)

    plain = pixels(only_image(["Normalize"], image))
    clipped = pixels(only_image([{"Normalize": {"cutoff": 1}}], image))

    assert plain[9, 9] == 140
    assert clipped[9, 9] == 255


def test_blur_smooths_a_checkerboard() -> None:
    board = (np.indices((32, 32)).sum(axis=0) % 2 * 255).astype(np.uint8)
    image = Image.fromarray(board)

    blurred = pixels(only_image([{"Blur": {"radius": 2}}], image))

    assert blurred.std() < pixels(image).std() / 4


def test_sharpen_increases_edge_contrast() -> None:
    step = np.zeros((20, 20), dtype=np.uint8)
    step[:, 10:] = 100
    step[:, :10] = 50
    image = Image.fromarray(step)

    sharp = pixels(only_image(["Sharpen"], image))

    assert sharp[10, 9] < 50
    assert sharp[10, 10] > 100
    assert pixels(only_image([{"Sharpen": {"threshold": 255}}], image)).tolist() == step.tolist()


# Geometry


def test_crop_cuts_the_box_and_keeps_its_pixels() -> None:
    image = gradient(64, 48)

    result = only_image([{"Crop": {"left": 10, "top": 5, "width": 20, "height": 8}}], image)

    assert result.size == (20, 8)
    assert result.getpixel((0, 0)) == image.getpixel((10, 5))


def test_crop_is_clipped_to_the_image() -> None:
    result = only_image(
        [{"Crop": {"left": 50, "top": 40, "width": 100, "height": 100}}], gradient()
    )

    assert result.size == (14, 8)


def test_crop_entirely_outside_the_image_is_an_error() -> None:
    with pytest.raises(OperationError, match="outside the 64x48 image"):
        run([{"Crop": {"left": 64, "top": 0, "width": 5, "height": 5}}], gradient())


def test_center_crop_takes_the_middle() -> None:
    image = gradient(64, 48)

    result = only_image([{"CenterCrop": {"width": 20, "height": 10}}], image)

    assert result.size == (20, 10)
    assert result.getpixel((0, 0)) == image.getpixel((22, 19))


def test_center_crop_size_is_square_and_clipped() -> None:
    assert only_image([{"CenterCrop": {"size": 30}}], gradient()).size == (30, 30)
    assert only_image([{"CenterCrop": {"size": 100}}], gradient()).size == (64, 48)


def test_pad_adds_border_in_fill_colour() -> None:
    image = Image.new("RGB", (10, 10), (1, 2, 3))

    padded = only_image([{"Pad": {"padding": [1, 2, 3, 4], "fill": "#ff0000"}}], image)

    assert padded.size == (14, 16)
    assert padded.getpixel((0, 0)) == (255, 0, 0)
    assert padded.getpixel((1, 2)) == (1, 2, 3)
    assert padded.getpixel((13, 15)) == (255, 0, 0)


def test_pad_grey_fill_on_transparent_image_is_opaque() -> None:
    image = Image.new("RGBA", (4, 4), (0, 0, 0, 0))

    padded = only_image([{"Pad": {"padding": 2, "fill": 200}}], image)

    assert padded.size == (8, 8)
    assert padded.getpixel((0, 0)) == (200, 200, 200, 255)


def test_rotate_quarter_turn_with_expand_swaps_width_and_height() -> None:
    image = Image.new("L", (40, 20), 0)
    image.putpixel((39, 0), 255)

    rotated = only_image([{"Rotate": {"degrees": 90}}], image)

    assert rotated.size == (20, 40)
    assert rotated.getpixel((0, 0)) == 255


def test_rotate_without_expand_keeps_size_and_fills_corners() -> None:
    image = Image.new("RGB", (40, 40), (0, 0, 255))

    rotated = only_image([{"Rotate": {"degrees": 45, "expand": False, "fill": "#00ff00"}}], image)

    assert rotated.size == (40, 40)
    assert rotated.getpixel((0, 0)) == (0, 255, 0)
    assert rotated.getpixel((20, 20)) == (0, 0, 255)


def test_rotate_range_draws_an_angle_from_the_seed() -> None:
    image = gradient(40, 20)
    spec = [{"Rotate": {"degrees": [-30, 30]}}]

    sizes = {only_image(spec, image, seed=seed).size for seed in range(8)}

    assert len(sizes) > 1
    assert np.array_equal(
        pixels(only_image(spec, image, seed=5)), pixels(only_image(spec, image, seed=5))
    )


@pytest.mark.parametrize(
    ("direction", "moved_to"), [("horizontal", (63, 0)), ("vertical", (0, 47))]
)
def test_flip_mirrors_a_known_pixel(direction: str, moved_to: tuple[int, int]) -> None:
    image = Image.new("RGB", (64, 48), (0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0))

    flipped = only_image([{"Flip": {"direction": direction}}], image)

    assert flipped.getpixel(moved_to) == (255, 0, 0)
    assert flipped.getpixel((0, 0)) == (0, 0, 0)


# Tiles, conversion and augmentation


def test_tile_count_sizes_and_suffixes_with_overlap() -> None:
    image = gradient(100, 60)

    tiles = run([{"Tile": {"size": 40, "overlap": 10}}], image)

    assert [tile.suffix for tile in tiles] == [f"t{index:04d}" for index in range(6)]
    assert [tile.image.size for tile in tiles] == [
        (40, 40),
        (40, 40),
        (40, 40),
        (40, 30),
        (40, 30),
        (40, 30),
    ]
    assert tiles[4].image.getpixel((0, 0)) == image.getpixel((30, 30))


def test_tile_without_overlap_partitions_the_image_with_clipped_edges() -> None:
    tiles = run([{"Tile": {"size": 32}}], gradient(70, 32))

    assert [tile.image.size for tile in tiles] == [(32, 32), (32, 32), (6, 32)]


def test_tile_larger_than_image_gives_the_whole_image() -> None:
    (tile,) = run([{"Tile": {"size": 500}}], gradient(64, 48))

    assert tile.image.size == (64, 48)
    assert tile.suffix == "t0000"


def test_tile_refuses_to_explode_into_too_many_tiles() -> None:
    with pytest.raises(OperationError, match="over the limit"):
        run([{"Tile": {"size": 1}}], gradient(200, 200))


def test_tile_apply_returns_many_images() -> None:
    tiles = Tile(size=16).apply(gradient(32, 32), np.random.default_rng(0))

    assert len(tiles) == 4


def test_convert_to_jpeg_drops_alpha_and_sets_the_encoding() -> None:
    image = Image.new("RGBA", (8, 8), (255, 0, 0, 0))

    (variant,) = run([{"Convert": {"format": "jpeg", "quality": 70}}], image)

    assert (variant.format, variant.quality) == ("jpeg", 70)
    assert variant.image.mode == "RGB"
    assert variant.image.getpixel((0, 0)) == (255, 255, 255)


def test_convert_to_png_keeps_alpha_and_has_no_quality() -> None:
    (variant,) = run([{"Convert": {"format": "png"}}], gradient(mode="RGBA"))

    assert (variant.format, variant.quality) == ("png", None)
    assert variant.image.mode == "RGBA"


def test_without_convert_the_format_is_left_to_the_caller() -> None:
    (variant,) = run(SEED_EXAMPLE, gradient())

    assert (variant.suffix, variant.format, variant.quality, variant.seed) == ("", None, None, 7)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "L", "RGB", "CMYK", "1"])
@pytest.mark.parametrize("format", ["jpeg", "png", "webp"])
def test_encode_image_writes_a_decodable_file(tmp_path: Path, mode: str, format: str) -> None:
    path = tmp_path / f"out.{format_extension(format)}"
    path.write_bytes(encode_image(gradient(mode=mode), format, quality=80))

    with Image.open(path) as decoded:
        decoded.load()
        assert decoded.format == {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}[format]
        assert decoded.size == (64, 48)


def test_encode_image_jpeg_from_sixteen_bit(tmp_path: Path) -> None:
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16)).save(path)

    with Image.open(path) as image:
        data = encode_image(image, "jpeg")

    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == "L"
        assert decoded.getpixel((0, 0)) >= 250


def test_encode_image_png_is_lossless() -> None:
    image = gradient(mode="RGBA")

    with Image.open(io.BytesIO(encode_image(image, "png"))) as decoded:
        assert np.array_equal(pixels(decoded), pixels(image))


def test_format_extensions_and_unknown_formats() -> None:
    assert [format_extension(name) for name in ("jpeg", "png", "webp")] == ["jpg", "png", "webp"]
    with pytest.raises(OperationError, match="jpeg, png, webp"):
        format_extension("gif")
    with pytest.raises(OperationError, match="unsupported output format"):
        encode_image(gradient(), "bmp")


def test_augment_gives_n_variants_with_distinct_recorded_seeds() -> None:
    spec = [
        {
            "Augment": {
                "n": 5,
                "ops": [
                    {"ColorJitter": {"brightness": 0.3, "saturation": 0.3}},
                    {"Noise": {"noise_level": 0.05}},
                    {"Rotate": {"degrees": [-20, 20]}},
                ],
            }
        }
    ]
    image = gradient()

    variants = run(spec, image, seed=21)

    assert [variant.suffix for variant in variants] == ["a00", "a01", "a02", "a03", "a04"]
    assert len({variant.seed for variant in variants}) == 5
    assert len({pixels(variant.image).tobytes() for variant in variants}) == 5
    assert [variant.seed for variant in run(spec, image, seed=21)] == [
        variant.seed for variant in variants
    ]
    assert [variant.seed for variant in run(spec, image, seed=22)] != [
        variant.seed for variant in variants
    ]


def test_augment_variant_is_reproduced_from_its_recorded_seed() -> None:
    augment = Augment(n=3, ops=(Noise(noise_level=0.1), Flip(direction="horizontal")))
    image = gradient()

    variants = OperationPipeline((augment,)).apply(image, seed=99)
    (again,) = OperationPipeline(augment.ops).apply(image, seed=variants[2].seed)

    assert np.array_equal(pixels(again.image), pixels(variants[2].image))


def test_augment_then_tile_names_each_output() -> None:
    spec = [{"Augment": {"n": 2, "ops": [{"Tile": {"size": 32}}]}}, {"Convert": {"format": "png"}}]

    variants = run(spec, gradient(64, 48))

    assert [variant.suffix for variant in variants] == [
        "a00_t0000",
        "a00_t0001",
        "a00_t0002",
        "a00_t0003",
        "a01_t0000",
        "a01_t0001",
        "a01_t0002",
        "a01_t0003",
    ]
    assert {variant.format for variant in variants} == {"png"}


def test_pipeline_is_deterministic_for_a_seed_across_random_operations() -> None:
    spec = [
        {"Resize": {"max_side": 40}},
        {"Rotate": {"degrees": [-15, 15], "fill": 128}},
        {"ColorJitter": {"brightness": 0.2, "contrast": 0.2}},
        {"Noise": {"noise_level": 0.05}},
        {"Tile": {"size": 16, "overlap": 4}},
        {"Noise": {"noise_level": 0.05}},
    ]
    image = gradient()

    first = run(spec, image, seed=5)
    again = run(spec, image, seed=5)

    assert [variant.suffix for variant in first] == [variant.suffix for variant in again]
    for one, other in zip(first, again, strict=True):
        assert np.array_equal(pixels(one.image), pixels(other.image))


def test_operations_built_directly_are_frozen_and_validated() -> None:
    with pytest.raises(ValueError):
        Noise(noise_level=2)
    noise = Noise(noise_level=0.5)
    with pytest.raises(ValueError):
        noise.noise_level = 0.1  # type: ignore[misc]
    assert OperationPipeline.parse([noise, "GrayScale"]).operations[0] is noise


def test_single_image_operations_return_one_image() -> None:
    image = gradient()
    rng = np.random.default_rng(0)

    for operation in (
        Blur(radius=1),
        Sharpen(),
        Normalize(),
        GrayScale(),
        CenterCrop(size=8),
        Crop(left=0, top=0, width=4, height=4),
        Pad(padding=1),
        Rotate(degrees=10),
        Flip(direction="vertical"),
        Resize(max_side=10),
    ):
        assert len(operation.apply(image, rng)) == 1


@pytest.mark.parametrize(
    "spec",
    [
        [],
        [{"Resize": {"scaling_factor": 2.7}}],
        [{"Resize": {"width": 90, "height": 11}}, {"Resize": {"max_side": 40}}],
        [{"Rotate": {"degrees": 45}}] * 3,
        [{"Rotate": {"degrees": [-170, 130]}}, {"Pad": {"padding": [3, 0, 9, 2]}}],
        [{"Crop": {"left": 5, "top": 3, "width": 30, "height": 300}}, {"CenterCrop": {"size": 9}}],
        [{"Tile": {"size": 7, "overlap": 3}}, {"Rotate": {"degrees": 30}}],
        [
            {
                "Augment": {
                    "n": 3,
                    "ops": [{"Resize": {"scaling_factor": 1.5}}, {"Tile": {"size": 20}}],
                }
            }
        ],
    ],
)
@pytest.mark.parametrize("size", [(64, 48), (13, 97), (9, 7)])
def test_the_worst_case_bound_is_never_below_what_the_operations_make(
    spec: list, size: tuple[int, int]
) -> None:
    pipeline = OperationPipeline.parse(spec)
    outputs = pipeline.apply(gradient(*size), seed=3)
    bound = pipeline.bound(*size, size[0] * size[1])
    assert len(outputs) <= bound.outputs
    for output in outputs:
        width, height = output.image.size
        assert width <= bound.width and height <= bound.height
        assert width * height <= bound.pixels
    assert sum(o.image.width * o.image.height for o in outputs) <= bound.total_pixels


def test_the_bound_names_what_hostile_pipelines_would_make_from_a_50_megapixel_image() -> None:
    def bound(spec: list) -> tuple[int, int]:
        found = OperationPipeline.parse(spec).bound(20_000, 20_000, 50_000_000)
        return found.outputs, found.total_pixels

    assert bound([]) == (1, 50_000_000)
    assert bound([{"Resize": {"max_side": 1024}}, {"Rotate": {"degrees": 45}}])[1] < 3_500_000
    assert bound([{"Resize": {"scaling_factor": 8}}])[1] > 3_000_000_000
    assert bound([{"Rotate": {"degrees": 45}}] * 8)[1] > 250_000_000
    assert bound([{"Tile": {"size": 1}}])[0] == 10_000
    outputs, pixels = bound([{"Augment": {"n": 64, "ops": [{"Resize": {"scaling_factor": 8}}]}}])
    assert outputs == 64 and pixels > 64 * 3_000_000_000


def test_posterize_keeps_the_top_bits_of_each_channel_and_the_alpha_band() -> None:
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    (gray,) = Posterize(bits=2).apply(Image.fromarray(ramp), np.random.default_rng(0))
    assert sorted(np.unique(np.asarray(gray)).tolist()) == [0, 64, 128, 192]
    rgba = Image.fromarray(np.dstack([ramp, ramp, 255 - ramp, ramp]))
    (out,) = Posterize(bits=1).apply(rgba, np.random.default_rng(0))
    assert out.mode == "RGBA"
    assert sorted(np.unique(np.asarray(out)[..., :3]).tolist()) == [0, 128]
    assert np.array_equal(np.asarray(out)[..., 3], ramp)
    assert "bits=9" in parse_error([{"Posterize": {"bits": 9}}])
