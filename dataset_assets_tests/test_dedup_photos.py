"""Near duplicates of real photographs (scikit-image's bundled photos) survive real edits, and
the unedited original is the copy kept."""

import io
import json
from functools import partial
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from dataset_assets.imaging.encoding import LOSSLESS, encoding_quality
from dataset_assets.imaging.inspect import inspect_image
from dataset_assets.imaging.verify import (
    ALIGNED_METHOD,
    FEW_KEYPOINTS,
    MIN_INLIERS,
    PairVerifier,
    keypoints,
    verify,
)
from dataset_assets.request import DedupConfig
from dataset_assets.stages.deduplicated_images import HashTable, find_clusters, verify_pairs
from dataset_assets_tests.photos import photo as skimage_photo

PHOTOS = ("astronaut", "coffee", "rocket", "chelsea")
DISTINCT = ("camera", "retina")


def photo(name: str) -> Image.Image:
    return skimage_photo(name).convert("RGB")


def jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def crop(image: Image.Image) -> Image.Image:
    width, height = image.size
    return image.crop((int(width * 0.08), int(height * 0.1), width - int(width * 0.05), height))


def caption(image: Image.Image) -> Image.Image:
    copy = image.copy()
    draw = ImageDraw.Draw(copy)
    draw.rectangle((0, copy.height - 30, copy.width, copy.height), fill="black")
    draw.text((10, copy.height - 24), "(c) stock photo 2026", fill="white")
    return copy


EDITS = {
    "crop": lambda image: jpeg(crop(image), 85),
    "rotate": lambda image: jpeg(image.rotate(4, Image.Resampling.BICUBIC), 85),
    "flip": lambda image: jpeg(ImageOps.mirror(image), 85),
    "brightened": lambda image: jpeg(ImageEnhance.Brightness(image).enhance(1.3), 60),
    "recompressed": lambda image: jpeg(image, 40),
    "resized": lambda image: jpeg(image.resize((image.width // 4, image.height // 4)), 85),
    "caption": lambda image: jpeg(caption(image), 85),
}


@pytest.fixture(scope="module")
def edited_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each photo as a quality-92 original and one copy per edit kind, plus unrelated photos."""
    folder = tmp_path_factory.mktemp("photos")
    for index, name in enumerate(PHOTOS):
        image = photo(name)
        (folder / f"{name}.jpg").write_bytes(jpeg(image, 92))
        for edit, make in EDITS.items():
            if (index + list(EDITS).index(edit)) % 2 == 0:
                (folder / f"{name}_{edit}.jpg").write_bytes(make(image))
    for name in DISTINCT:
        (folder / f"{name}.jpg").write_bytes(jpeg(photo(name), 92))
    (folder / "camera_bytecopy.jpg").write_bytes((folder / "camera.jpg").read_bytes())
    return folder


def test_every_edited_copy_is_found_and_the_unedited_original_is_kept(pipeline, edited_photos):
    result = pipeline.run({"request_id": "edits", "dataset_key": str(edited_photos)})
    assert result.success
    docs = {doc["source"]: doc for doc in pipeline.metadata.iter_images("edits")}
    by_id = {doc["image_id"]: doc["source"] for doc in docs.values()}
    copies = {source for source in docs if "_" in Path(source).stem} - {"camera_bytecopy.jpg"}
    assert {Path(source).stem.split("_", 1)[1] for source in copies} == set(EDITS)
    for source in copies:
        doc = docs[source]
        original = source.split("_", 1)[0] + ".jpg"
        assert doc["status"] == "duplicate", source
        assert by_id[doc["duplicate_of"]] == original, source
        assert doc["cluster_kind"] == "near"
        assert doc["evidence"]["method"] in ("orb-ransac", "ecc-aligned"), source
    for name in (*PHOTOS, *DISTINCT):
        assert docs[f"{name}.jpg"]["status"] == "processed", name
    flipped = [docs[source]["evidence"] for source in copies if source.endswith("_flip.jpg")]
    assert flipped and all(evidence["flipped"] for evidence in flipped)
    exact = docs["camera_bytecopy.jpg"]
    assert (exact["status"], exact["cluster_kind"]) == ("duplicate", "exact")
    assert exact["evidence"] == {"method": "same file"}
    report = json.loads(pipeline.blobs.get_bytes("reports/edits/report.json"))
    kinds = {
        next(m["source"] for m in cluster["members"] if m["kept"]): cluster["kind"]
        for cluster in report["duplicate_clusters"]
    }
    assert kinds == {"camera.jpg": "exact", **{f"{name}.jpg": "near" for name in PHOTOS}}


def test_verification_records_its_evidence_and_rejects_other_photos():
    original = photo("coffee")
    rotated = Image.open(io.BytesIO(EDITS["rotate"](original)))
    evidence = verify(keypoints(original), keypoints(rotated))
    assert evidence is not None
    assert evidence.inliers >= MIN_INLIERS and evidence.correlation >= 0.9
    assert evidence.rotation == pytest.approx(4, abs=1)
    assert not evidence.flipped
    for other in ("astronaut", "rocket", "chelsea", "camera"):
        assert verify(keypoints(original), keypoints(photo(other))) is None, other


def defocused(name: str) -> Image.Image:
    """An out-of-focus shot of `name`: too smooth for keypoints to find corners on."""
    return photo(name).filter(ImageFilter.GaussianBlur(6))


def test_smooth_pictures_are_confirmed_by_intensity_alignment():
    original = defocused("rocket")
    first = keypoints(original)
    assert len(first.points) < FEW_KEYPOINTS
    for edit in ("crop", "rotate", "brightened", "resized"):
        copy = Image.open(io.BytesIO(EDITS[edit](original)))
        evidence = verify(first, keypoints(copy))
        assert evidence is not None, edit
        assert evidence.method == ALIGNED_METHOD and evidence.correlation >= 0.9, edit
    for other in ("cell", "clock", "chelsea", "moon"):
        assert verify(first, keypoints(defocused(other))) is None, other
        assert verify(first, keypoints(photo(other))) is None, other


def band(image: Image.Image, where: float) -> Image.Image:
    """A band eight times as wide as it is tall, `where` down `image`: a thin picture, like a
    syringe or a pen photographed lengthwise."""
    width, height = image.size
    top = int((height - width // 8) * where)
    return image.crop((0, top, width, top + width // 8))


@pytest.mark.parametrize("name", ["rocket", "coffee", "camera"])
def test_thin_smooth_pictures_are_aligned_on_enough_rows(name):
    original = band(defocused(name), 0.5)
    first = keypoints(original)
    assert len(first.points) < FEW_KEYPOINTS
    copy = Image.open(io.BytesIO(EDITS["crop"](original)))
    evidence = verify(first, keypoints(copy))
    assert evidence is not None
    assert evidence.method == ALIGNED_METHOD and evidence.overlap > 0.9
    others = [band(defocused(name), 0.1), band(defocused(name), 0.9)]
    others.append(band(defocused("chelsea"), 0.5))
    for other in others:
        assert verify(first, keypoints(other)) is None


def test_pair_verifier_matches_a_flip_only_against_the_mirror_image():
    files = [jpeg(photo("rocket"), 92), EDITS["flip"](photo("rocket"))]
    verifier = PairVerifier(files.__getitem__)
    assert verifier.check(0, 1, True) is not None
    assert verifier.check(0, 1, False) is None


@pytest.mark.parametrize("quality", [40, 60, 85, 92])
def test_jpeg_quality_is_read_back_from_the_quantisation_tables(quality):
    image = Image.open(io.BytesIO(jpeg(photo("chelsea"), quality)))
    assert abs(encoding_quality(image) - quality) <= 1


def test_lossless_files_rank_above_any_jpeg():
    buffer = io.BytesIO()
    photo("chelsea").save(buffer, "PNG")
    assert encoding_quality(Image.open(buffer)) == LOSSLESS


GEOMETRIC_EDITS = {
    "rotate": lambda image: image.rotate(3, Image.Resampling.BICUBIC),
    "rotate back": lambda image: image.rotate(-2, Image.Resampling.BICUBIC),
    "crop": crop,
    "crop resized back": lambda image: crop(image).resize(image.size, Image.Resampling.LANCZOS),
}


def table_of(files: list[bytes]) -> HashTable:
    """The dedup stage's table for `files`, from validation's own inspection of each."""
    rows = []
    for index, data in enumerate(files):
        found = inspect_image(data, f"{index}.jpg")
        validation = {
            "phash": found.perceptual_hash,
            "mirror_hash": found.mirror_hash,
            "gradient_hash": found.gradient_hash,
            "window_hashes": found.window_hashes,
            "pixel_hash": found.pixel_hash,
            "encoding_quality": found.encoding_quality,
            "width": found.width,
            "height": found.height,
            "sharpness": found.sharpness,
        }
        row = {"image_id": f"{index}", "size_bytes": len(data), "validation": validation}
        rows.append((0, row))
    return HashTable.from_rows(rows)


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_the_rotated_or_cropped_copy_loses_even_at_the_same_encoding(name):
    """Copies saved at the original's own quality: pixels and encoding cannot tell them apart,
    the frames can (a rotation's filled corners, a crop's missing margins)."""
    original = photo(name)
    for edit, make in GEOMETRIC_EDITS.items():
        files = [jpeg(make(original), 92), jpeg(original, 92)]
        verifier = partial(verify_pairs, files.__getitem__, range(len(files)))
        (cluster,) = find_clusters(table_of(files), DedupConfig(), verifier)
        assert cluster["keeper"] == 1, edit
        (member,) = cluster["members"]
        assert member["evidence"]["edited"] is True, edit
    for edit in ("flip", "brightened"):
        copy = Image.open(io.BytesIO(EDITS[edit](original)))
        evidence = verify(keypoints(original), keypoints(copy, mirrored=edit == "flip"))
        assert evidence is not None and evidence.edited is None, edit
