"""The sample dataset holds exactly the cases its docstring and `SAMPLE_EXPECTATIONS` promise."""

import hashlib
import itertools
from pathlib import Path

import imagehash
import pytest
from PIL import Image, UnidentifiedImageError

from dataset_assets.sample_data import SAMPLE_EXPECTATIONS, write_sample_dataset

EXACT_COPY = "waves/copy_of_ridge_02.jpg"
EXACT_ORIGINAL = "mountains/ridge_02.jpg"
NEAR_COPY = "forest/pines_03_resized.jpg"
NEAR_ORIGINAL = "forest/pines_03.jpg"
TRUNCATED = "waves/truncated.jpg"
NOT_AN_IMAGE = "forest/notes.jpg"
TINY = "mountains/tiny.png"
CMYK = "mountains/ridge_cmyk.jpg"
PNG_AS_JPG = "waves/swell_png_inside.jpg"
_SUFFIX_FORMATS = {".jpg": "JPEG", ".png": "PNG"}


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("sample") / "raw")


def _contents(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _phash(path: Path) -> imagehash.ImageHash:
    with Image.open(path) as image:
        return imagehash.phash(image)


def _photos(sample: Path) -> list[str]:
    """Every distinct picture: the files validation accepts, minus the two planted copies."""
    planted = {EXACT_COPY, NEAR_COPY, TRUNCATED, NOT_AN_IMAGE, TINY}
    return sorted(name for name in _contents(sample) if name not in planted)


def test_same_seed_writes_identical_bytes(sample: Path, tmp_path: Path) -> None:
    again = write_sample_dataset(tmp_path / "again")

    assert _contents(again) == _contents(sample)


def test_another_seed_paints_other_pictures(sample: Path, tmp_path: Path) -> None:
    other = _contents(write_sample_dataset(tmp_path / "other", seed=8))
    original = _contents(sample)

    assert other.keys() == original.keys()
    assert all(other[name] != original[name] for name in _photos(sample))


def test_files_are_sorted_into_three_class_folders(sample: Path) -> None:
    files = [p for p in sample.rglob("*") if p.is_file()]
    folders = sorted(p.name for p in sample.iterdir())

    assert folders == ["forest", "mountains", "waves"]
    assert len(folders) == SAMPLE_EXPECTATIONS["classes"]
    assert len(files) == SAMPLE_EXPECTATIONS["files"]
    assert all(p.parent.parent == sample for p in files)
    for folder in folders:
        photos = [name for name in _photos(sample) if name.startswith(f"{folder}/")]
        assert 7 <= len(photos) <= 8, folder


def test_total_size_stays_under_5_mb(sample: Path) -> None:
    assert sum(len(data) for data in _contents(sample).values()) < 5 * 1024 * 1024


def test_photos_are_between_480x360_and_1280x960_in_varied_sizes(sample: Path) -> None:
    sizes = []
    for name in _photos(sample):
        with Image.open(sample / name) as image:
            sizes.append(image.size)
    assert all(480 <= width <= 1280 and 360 <= height <= 960 for width, height in sizes)
    assert len(set(sizes)) >= 6
    assert any(width < height for width, height in sizes)


def test_photos_are_mostly_jpeg_with_a_couple_of_pngs(sample: Path) -> None:
    formats = []
    for name in _photos(sample):
        with Image.open(sample / name) as image:
            formats.append(image.format)
    assert formats.count("PNG") in (2, 3)
    assert formats.count("JPEG") == len(formats) - formats.count("PNG")


def test_distinct_photos_are_more_than_10_bits_apart(sample: Path) -> None:
    hashes = {name: _phash(sample / name) for name in _photos(sample)}

    closest = min(
        (hashes[a] - hashes[b], a, b) for a, b in itertools.combinations(sorted(hashes), 2)
    )

    assert closest[0] > 10, closest


def test_exact_duplicate_is_the_same_bytes_under_another_class(sample: Path) -> None:
    assert (sample / EXACT_COPY).read_bytes() == (sample / EXACT_ORIGINAL).read_bytes()
    assert EXACT_COPY.split("/")[0] != EXACT_ORIGINAL.split("/")[0]
    assert Path(EXACT_COPY).name != Path(EXACT_ORIGINAL).name


def test_near_duplicate_is_a_90_percent_reencode_within_4_bits(sample: Path) -> None:
    with Image.open(sample / NEAR_ORIGINAL) as original, Image.open(sample / NEAR_COPY) as copy:
        assert copy.format == "JPEG"
        assert copy.size == (round(original.width * 0.9), round(original.height * 0.9))
        copy_luma_table = copy.quantization[0]
        original_luma_table = original.quantization[0]
    assert copy_luma_table[0] > original_luma_table[0]
    assert (sample / NEAR_COPY).read_bytes() != (sample / NEAR_ORIGINAL).read_bytes()
    assert _phash(sample / NEAR_COPY) - _phash(sample / NEAR_ORIGINAL) <= 4


def test_truncated_jpeg_opens_but_fails_to_decode(sample: Path) -> None:
    data = (sample / TRUNCATED).read_bytes()

    assert data.startswith(b"\xff\xd8")
    assert not data.endswith(b"\xff\xd9")
    with Image.open(sample / TRUNCATED) as image, pytest.raises(OSError, match="truncated"):
        image.load()


def test_notes_file_is_text_behind_a_jpg_name(sample: Path) -> None:
    assert (sample / NOT_AN_IMAGE).read_bytes().decode("utf-8").startswith("Field notes")
    with pytest.raises(UnidentifiedImageError):
        Image.open(sample / NOT_AN_IMAGE)


def test_tiny_image_is_below_the_32x32_minimum(sample: Path) -> None:
    with Image.open(sample / TINY) as image:
        image.load()
        assert image.size == (16, 16)


def test_cmyk_jpeg_decodes_and_converts_to_rgb(sample: Path) -> None:
    with Image.open(sample / CMYK) as image:
        assert (image.format, image.mode) == ("JPEG", "CMYK")
        rgb = image.convert("RGB")
    assert rgb.getextrema() != ((0, 0), (0, 0), (0, 0))


def test_png_behind_a_jpg_name_is_a_valid_png(sample: Path) -> None:
    with Image.open(sample / PNG_AS_JPG) as image:
        image.load()
        assert image.format == "PNG"
    assert Path(PNG_AS_JPG).suffix == ".jpg"


def test_expectations_match_what_the_files_hold(sample: Path) -> None:
    counts = dict.fromkeys(SAMPLE_EXPECTATIONS, 0)
    counts["files"] = len(_contents(sample))
    counts["classes"] = sum(1 for p in sample.iterdir() if p.is_dir())
    valid: dict[str, Path] = {}
    for path in sorted(p for p in sample.rglob("*") if p.is_file()):
        try:
            with Image.open(path) as image:
                image.load()
                if min(image.size) < 32:
                    counts["too_small"] += 1
                    continue
                counts["cmyk"] += image.mode == "CMYK"
                counts["extension_mismatch"] += image.format != _SUFFIX_FORMATS[path.suffix]
                valid[path.relative_to(sample).as_posix()] = path
        except UnidentifiedImageError:
            counts["not_an_image"] += 1
        except OSError:
            counts["corrupt"] += 1
    counts["rejected"] = counts["corrupt"] + counts["not_an_image"] + counts["too_small"]
    counts["valid"] = len(valid)

    by_digest: dict[str, str] = {}
    for name, path in valid.items():
        by_digest.setdefault(hashlib.sha256(path.read_bytes()).hexdigest(), name)
    counts["exact_duplicates"] = len(valid) - len(by_digest)
    unique = sorted(by_digest.values())
    hashes = {name: _phash(valid[name]) for name in unique}
    near_pairs = [
        (a, b) for a, b in itertools.combinations(unique, 2) if hashes[a] - hashes[b] <= 10
    ]
    counts["near_duplicates"] = len(near_pairs)
    counts["kept"] = len(unique) - len(near_pairs)

    assert near_pairs == [(NEAR_ORIGINAL, NEAR_COPY)]
    assert counts == dict(SAMPLE_EXPECTATIONS)


def test_refuses_a_folder_that_already_holds_files(tmp_path: Path) -> None:
    precious = tmp_path / "mine" / "holiday.jpg"
    precious.parent.mkdir()
    precious.write_bytes(b"not ours to overwrite")

    with pytest.raises(FileExistsError, match="not empty"):
        write_sample_dataset(precious.parent)

    assert [p.name for p in precious.parent.iterdir()] == ["holiday.jpg"]
    assert precious.read_bytes() == b"not ours to overwrite"


def test_writing_the_sample_again_leaves_it_as_it_is_and_the_cli_says_why_it_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataset_assets.cli import main

    dest = tmp_path / "sample_images"
    assert main(["sample", str(dest)]) == 0
    written = {path: path.stat().st_mtime_ns for path in dest.rglob("*") if path.is_file()}
    assert main(["sample", str(dest)]) == 0
    assert {path: path.stat().st_mtime_ns for path in dest.rglob("*") if path.is_file()} == written

    (dest / "forest" / "extra.jpg").write_bytes(b"a user's own file")
    assert main(["sample", str(dest)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"error: {dest} is not empty and is not the sample dataset: pick an empty folder\n"
    )
