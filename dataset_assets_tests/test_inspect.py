"""Behaviour of the decode-once validation on real files written with Pillow."""

import io
import struct
import warnings
import zlib
from functools import partial
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageFile, ImageFilter, ImageOps

from dataset_assets.imaging.hashing import WINDOWS, hash_distance, image_hashes
from dataset_assets.imaging.inspect import (
    ISSUE_THRESHOLDS,
    REJECT_REASONS,
    Inspection,
    ValidationRules,
    decode_scale_for,
    inspect_image,
)
from dataset_assets_tests.photos import PHOTOS
from dataset_assets_tests.photos import photo as real_photo

QUALITY_ISSUES = {
    "blurry",
    "dark",
    "light",
    "low_information",
    "grayscale",
    "odd_aspect_ratio",
    "odd_size",
    "extension_mismatch",
}


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Colour noise with equal energy in every octave, like the spectrum of a natural photo."""
    rng = np.random.default_rng(seed)
    total = np.zeros((height, width, 3), np.float32)
    cells = 4
    while cells <= max(width, height):
        coarse = rng.standard_normal((max(2, cells * height // width), cells, 3))
        for channel in range(3):
            layer = Image.fromarray(coarse[..., channel].astype(np.float32), "F")
            total[..., channel] += np.asarray(
                layer.resize((width, height), Image.Resampling.BICUBIC)
            )
        cells *= 2
    scaled = (total - total.mean()) / total.std() * 45 + 120
    return Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))


def write(tmp_path: Path, name: str, image: Image.Image, image_format: str, **options) -> bytes:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, image_format, **options)
    return path.read_bytes()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR is patched (with a fresh CRC) to claim `width` x `height`."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def assert_rejected(result: Inspection, reason: str, name: str) -> None:
    assert not result.ok
    assert result.reason == reason
    assert reason in REJECT_REASONS
    assert result.message is not None and result.message.startswith(f"{name}: ")
    assert result.perceptual_hash is None and result.pixel_hash is None
    assert result.thumbnail is None and result.issues == {}


def test_normal_photo_is_accepted_with_every_issue_scored_low(tmp_path: Path) -> None:
    data = write(tmp_path, "cat/01.jpg", photo(640, 480), "JPEG", quality=92)

    result = inspect_image(data, "cat/01.jpg")

    assert result.ok and result.reason is None and result.message is None
    assert (result.format, result.width, result.height, result.mode) == ("JPEG", 640, 480, "RGB")
    assert result.frames == 1 and not result.exif_rotated
    assert set(result.issues) == QUALITY_ISSUES
    assert all(0.0 <= score <= 1.0 for score in result.issues.values())
    assert result.flagged == ()
    assert max(result.issues[name] for name in ("blurry", "dark", "light", "grayscale")) < 0.3
    assert result.perceptual_hash is not None and len(result.perceptual_hash) == 16
    assert result.pixel_hash is not None and len(result.pixel_hash) == 64
    assert result.brightness is not None and 90 < result.brightness < 150
    assert result.sharpness is not None and result.sharpness > 0


def test_random_bytes_are_not_an_image(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()

    assert_rejected(inspect_image(data, "noise.jpg"), "not_an_image", "noise.jpg")


def test_png_with_damaged_pixel_data_is_corrupt_with_pillows_error(tmp_path: Path) -> None:
    data = bytearray(write(tmp_path, "a.png", photo(128, 128), "PNG"))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)

    result = inspect_image(bytes(data), "a.png")

    assert_rejected(result, "corrupt", "a.png")
    assert result.format == "PNG" and (result.width, result.height) == (128, 128)
    assert "cannot decode PNG: OSError" in result.message


@pytest.mark.parametrize(("name", "image_format"), [("t.jpg", "JPEG"), ("t.png", "PNG")])
def test_file_cut_in_half_is_rejected_as_truncated(
    tmp_path: Path, name: str, image_format: str
) -> None:
    data = write(tmp_path, name, photo(256, 256), image_format)

    result = inspect_image(data[: len(data) // 2], name)

    assert_rejected(result, "truncated", name)
    assert result.format == image_format
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_zero_byte_file_is_empty(tmp_path: Path) -> None:
    (tmp_path / "empty.png").write_bytes(b"")

    result = inspect_image((tmp_path / "empty.png").read_bytes(), "empty.png")

    assert_rejected(result, "empty_file", "empty.png")
    assert result.frames == 0


def test_file_above_byte_limit_is_rejected_before_opening(tmp_path: Path) -> None:
    data = write(tmp_path, "a.png", photo(64, 64), "PNG")

    result = inspect_image(data, "a.png", ValidationRules(max_file_bytes=len(data) - 1))

    assert_rejected(result, "file_too_large", "a.png")
    assert f"{len(data):,} bytes" in result.message and result.format is None


def test_png_named_jpg_is_accepted_and_flagged_for_its_extension(tmp_path: Path) -> None:
    data = write(tmp_path, "really_png.jpg", photo(96, 96), "PNG")

    result = inspect_image(data, "really_png.jpg")

    assert result.ok and result.format == "PNG"
    assert result.issues["extension_mismatch"] == 1.0
    assert "extension_mismatch" in result.flagged
    assert inspect_image(data, "really_png.png").issues["extension_mismatch"] == 0.0


def test_tiff_is_unsupported_when_the_rules_leave_it_out(tmp_path: Path) -> None:
    data = write(tmp_path, "a.tif", photo(64, 64), "TIFF")
    rules = ValidationRules(allowed_formats=frozenset({"JPEG", "PNG"}))

    result = inspect_image(data, "a.tif", rules)

    assert_rejected(result, "unsupported_format", "a.tif")
    assert result.format == "TIFF"
    assert "JPEG, PNG" in result.message
    assert inspect_image(data, "a.tif").ok


def test_icon_file_is_unsupported_by_default(tmp_path: Path) -> None:
    data = write(tmp_path, "favicon.ico", photo(64, 64), "ICO")

    result = inspect_image(data, "favicon.ico")

    assert_rejected(result, "unsupported_format", "favicon.ico")
    assert result.format == "ICO"


def test_one_pixel_image_is_too_small(tmp_path: Path) -> None:
    data = write(tmp_path, "dot.png", Image.new("RGB", (1, 1), "red"), "PNG")

    result = inspect_image(data, "dot.png")

    assert_rejected(result, "too_small", "dot.png")
    assert result.message == "dot.png: 1x1 px is below the minimum 32x32"


def test_very_wide_image_is_rejected_from_its_header_without_decoding(tmp_path: Path) -> None:
    data = png_claiming(100_000, 1)

    result = inspect_image(data, "strip.png")

    assert_rejected(result, "too_large", "strip.png")
    assert (result.width, result.height) == (100_000, 1)
    assert "100000x1 px is above the maximum 20000x20000" in result.message
    permissive = ValidationRules(max_width=200_000, min_height=1, max_aspect=1e6)
    assert inspect_image(data, "strip.png", permissive).reason == "truncated"


def test_extreme_aspect_ratio_is_rejected(tmp_path: Path) -> None:
    data = write(tmp_path, "banner.png", photo(400, 32), "PNG")

    result = inspect_image(data, "banner.png")

    assert_rejected(result, "bad_aspect_ratio", "banner.png")
    assert "12.5" in result.message


def animated_gif(tmp_path: Path) -> bytes:
    frames = [Image.new("RGB", (64, 48), colour) for colour in ("black", "white", "red")]
    return write(
        tmp_path, "anim.gif", frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50
    )


def test_animated_gif_is_accepted_from_its_first_frame(tmp_path: Path) -> None:
    result = inspect_image(animated_gif(tmp_path), "anim.gif")

    assert result.ok and result.format == "GIF"
    assert result.frames == 3
    assert result.brightness is not None and result.brightness < 5


def test_animated_gif_is_rejected_when_rules_reject_multi_frame(tmp_path: Path) -> None:
    rules = ValidationRules(multi_frame="reject")

    result = inspect_image(animated_gif(tmp_path), "anim.gif", rules)

    assert_rejected(result, "multi_frame", "anim.gif")
    assert result.frames == 3


def test_sixteen_bit_png_is_scaled_to_eight_bits_not_clipped(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0, 65535, 256), (64, 1)).astype(np.uint16)
    data = write(tmp_path, "depth.png", Image.fromarray(ramp), "PNG")

    result = inspect_image(data, "depth.png")

    assert result.ok and result.mode == "I;16"
    assert result.brightness is not None and 120 < result.brightness < 135
    assert result.issues["light"] < 0.1


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path: Path) -> None:
    red = Image.new("RGB", (96, 64), (220, 20, 20)).convert("CMYK")
    data = write(tmp_path, "print.jpg", red, "JPEG")

    result = inspect_image(data, "print.jpg")

    assert result.ok and result.mode == "CMYK"
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        r, g, b = thumbnail.convert("RGB").getpixel((10, 10))
    assert r > 180 and g < 70 and b < 70


def test_palette_png_transparency_is_composited_on_white(tmp_path: Path) -> None:
    sticker = Image.new("P", (64, 64), 0)
    sticker.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    sticker.paste(1, (24, 24, 40, 40))
    data = write(tmp_path, "sticker.png", sticker, "PNG", transparency=0)

    result = inspect_image(data, "sticker.png")

    assert result.ok and result.mode == "P"
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        corner = thumbnail.convert("RGB").getpixel((2, 2))
        centre = thumbnail.convert("RGB").getpixel((32, 32))
    assert min(corner) > 245
    assert centre[0] > 200 and centre[1] < 60


def test_png_claiming_huge_size_is_a_decompression_bomb(tmp_path: Path) -> None:
    filters_before = list(warnings.filters)
    limit_before = Image.MAX_IMAGE_PIXELS

    result = inspect_image(png_claiming(30_000, 30_000), "bomb.png")

    assert_rejected(result, "decompression_bomb", "bomb.png")
    assert limit_before == Image.MAX_IMAGE_PIXELS
    assert warnings.filters == filters_before


def test_header_above_rules_pixel_limit_is_a_decompression_bomb(tmp_path: Path) -> None:
    result = inspect_image(png_claiming(8_000, 8_000), "big.png")

    assert_rejected(result, "decompression_bomb", "big.png")
    assert result.message == (
        "big.png: 8000x8000 px = 64,000,000 pixels is above the limit 50,000,000"
    )


def test_pillows_bomb_warning_threshold_also_rejects(tmp_path: Path) -> None:
    rules = ValidationRules(max_pixels=150_000_000, max_width=50_000, max_height=50_000)

    with pytest.warns(Image.DecompressionBombWarning):
        result = inspect_image(png_claiming(10_000, 10_000), "warned.png", rules)

    assert_rejected(result, "decompression_bomb", "warned.png")
    assert f"above the limit {Image.MAX_IMAGE_PIXELS:,}" in result.message


def test_exif_orientation_six_swaps_width_and_height(tmp_path: Path) -> None:
    stored = Image.new("RGB", (300, 200), "black")
    stored.paste((255, 255, 255), (0, 0, 300, 100))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = write(tmp_path, "phone.jpg", stored, "JPEG", exif=exif.tobytes())

    result = inspect_image(data, "phone.jpg")

    assert result.ok and result.exif_rotated
    assert (result.width, result.height) == (200, 300)
    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        width, height = thumbnail.size
        left = thumbnail.convert("L").getpixel((width // 4, height // 4))
        right = thumbnail.convert("L").getpixel((3 * width // 4, height // 4))
    assert height > width
    assert left < 30 and right > 225


def test_dark_image_scores_high_for_dark(tmp_path: Path) -> None:
    dark = Image.eval(photo(320, 240, seed=2), lambda value: value // 8)
    result = inspect_image(write(tmp_path, "night.jpg", dark, "JPEG"), "night.jpg")

    assert result.issues["dark"] > 0.85 and "dark" in result.flagged
    assert "light" not in result.flagged


def test_light_image_scores_high_for_light(tmp_path: Path) -> None:
    light = Image.eval(photo(320, 240, seed=3), lambda value: 240 + value // 16)
    result = inspect_image(write(tmp_path, "snow.jpg", light, "JPEG"), "snow.jpg")

    assert result.issues["light"] > 0.9 and "light" in result.flagged
    assert "dark" not in result.flagged


def test_blurred_image_scores_high_for_blurry(tmp_path: Path) -> None:
    blurred = photo(640, 480, seed=4).filter(ImageFilter.GaussianBlur(6))
    result = inspect_image(write(tmp_path, "shake.jpg", blurred, "JPEG"), "shake.jpg")

    assert result.issues["blurry"] > 0.7 and "blurry" in result.flagged


def test_sharper_copy_has_higher_sharpness(tmp_path: Path) -> None:
    sharp = photo(640, 480, seed=5)
    soft = sharp.filter(ImageFilter.GaussianBlur(2))

    sharp_result = inspect_image(write(tmp_path, "a.png", sharp, "PNG"), "a.png")
    soft_result = inspect_image(write(tmp_path, "b.png", soft, "PNG"), "b.png")

    assert sharp_result.sharpness > 3 * soft_result.sharpness


def test_grayscale_content_in_rgb_jpeg_scores_high_for_grayscale(tmp_path: Path) -> None:
    gray = photo(320, 240, seed=6).convert("L").convert("RGB")
    result = inspect_image(write(tmp_path, "bw.jpg", gray, "JPEG"), "bw.jpg")

    assert result.issues["grayscale"] > 0.9 and "grayscale" in result.flagged


def test_flat_image_scores_high_for_low_information(tmp_path: Path) -> None:
    data = write(tmp_path, "flat.png", Image.new("RGB", (200, 200), (90, 120, 150)), "PNG")

    result = inspect_image(data, "flat.png")

    assert result.issues["low_information"] == 1.0 and "low_information" in result.flagged


def test_flags_follow_the_documented_thresholds(tmp_path: Path) -> None:
    data = write(tmp_path, "wide.png", photo(300, 40, seed=7), "PNG")

    result = inspect_image(data, "wide.png")

    assert result.ok
    expected = {name for name, score in result.issues.items() if score >= ISSUE_THRESHOLDS[name]}
    assert set(result.flagged) == expected
    assert {"odd_aspect_ratio", "odd_size"} <= expected


def test_jpeg_reencoded_at_another_quality_has_a_close_perceptual_hash(tmp_path: Path) -> None:
    image = photo(800, 600, seed=8)
    first = inspect_image(write(tmp_path, "q95.jpg", image, "JPEG", quality=95), "q95.jpg")
    second = inspect_image(write(tmp_path, "q60.jpg", image, "JPEG", quality=60), "q60.jpg")
    other = inspect_image(write(tmp_path, "o.jpg", photo(800, 600, seed=9), "JPEG"), "o.jpg")

    assert hash_distance(first.perceptual_hash, second.perceptual_hash) <= 6
    assert hash_distance(first.perceptual_hash, other.perceptual_hash) > 12
    assert first.pixel_hash != second.pixel_hash


@pytest.mark.parametrize("hash_kind", ["dhash", "whash"])
def test_other_hash_kinds_give_sixteen_hex_chars(tmp_path: Path, hash_kind: str) -> None:
    data = write(tmp_path, "a.png", photo(200, 150, seed=10), "PNG")

    result = inspect_image(data, "a.png", ValidationRules(hash_kind=hash_kind))

    assert len(result.perceptual_hash) == 16
    int(result.perceptual_hash, 16)


@pytest.mark.parametrize("hash_kind", ["phash", "dhash", "whash"])
def test_every_hash_is_what_imagehash_gives_call_by_call(hash_kind: str) -> None:
    """The eight hashes come from one grey copy and, for phash, one batched DCT: each must be
    bit for bit the hash `imagehash` gives the RGB view, its mirror and each window's crop."""
    hasher = {
        "phash": imagehash.phash,
        "dhash": imagehash.dhash,
        "whash": partial(imagehash.whash, image_scale=64),
    }[hash_kind]
    for name in PHOTOS:
        image = real_photo(name)
        for view in (image, image.resize((96, 72)), image.crop((0, 0, 300, 40))):
            width, height = view.size
            boxes = [
                (round(a * width), round(b * height), round(c * width), round(d * height))
                for a, b, c, d in WINDOWS
            ]

            hashes = image_hashes(view, hash_kind)

            assert hashes.perceptual == str(hasher(view)), name
            assert hashes.mirror == str(hasher(ImageOps.mirror(view))), name
            assert hashes.gradient == str(imagehash.dhash(view)), name
            assert hashes.windows == tuple(str(hasher(view.crop(box))) for box in boxes), name


def test_lossless_reencodes_share_the_pixel_hash(tmp_path: Path) -> None:
    image = photo(700, 500, seed=11)
    encodings = [
        ("a.png", "PNG", {}),
        ("a.bmp", "BMP", {}),
        ("a.tif", "TIFF", {}),
        ("a.webp", "WEBP", {"lossless": True}),
    ]
    hashes = {
        inspect_image(write(tmp_path, name, image, fmt, **options), name).pixel_hash
        for name, fmt, options in encodings
    }
    changed = image.copy()
    changed.paste((255, 0, 0), (0, 0, 60, 60))
    other = inspect_image(write(tmp_path, "b.png", changed, "PNG"), "b.png").pixel_hash

    assert len(hashes) == 1
    assert other not in hashes


def test_pixel_hash_follows_the_target_mode(tmp_path: Path) -> None:
    data = write(tmp_path, "a.png", photo(120, 90, seed=12), "PNG")

    hashes = {
        mode: inspect_image(data, "a.png", ValidationRules(target_mode=mode)).pixel_hash
        for mode in ("RGB", "L", "keep")
    }

    assert hashes["RGB"] == hashes["keep"]
    assert hashes["L"] != hashes["RGB"]


@pytest.mark.parametrize(("size", "thumbnail_px"), [((1600, 900), 128), ((90, 60), 128)])
def test_thumbnail_is_an_rgb_jpeg_within_the_requested_size(
    tmp_path: Path, size: tuple[int, int], thumbnail_px: int
) -> None:
    data = write(tmp_path, "a.png", photo(*size, seed=13), "PNG")

    result = inspect_image(data, "a.png", ValidationRules(thumbnail_px=thumbnail_px))

    with Image.open(io.BytesIO(result.thumbnail)) as thumbnail:
        assert thumbnail.format == "JPEG" and thumbnail.mode == "RGB"
        assert max(thumbnail.size) == min(thumbnail_px, max(size))


def test_large_jpeg_is_decoded_well_below_full_size() -> None:
    width, height = decode_scale_for(4000, 3000)

    assert min(width, height) == 256
    assert width * height * 100 < 4000 * 3000
    assert abs(width / height - 4 / 3) < 0.01


def test_decode_scale_keeps_small_images_and_serves_large_thumbnails() -> None:
    assert decode_scale_for(200, 100) == (200, 100)
    assert decode_scale_for(3000, 300, ValidationRules(thumbnail_px=512)) == (2560, 256)
    assert decode_scale_for(4000, 1000, ValidationRules(thumbnail_px=2048)) == (2048, 512)
