"""Each file read once: validation transforms in the same pass when the run goes on to the
transform (from its own pixels where they are the transform's), and the dataset is byte for byte
the one the transform stage makes on its own."""

import shutil
from io import BytesIO
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance
from PIL import Image, ImageOps

from dataset_assets.definitions import build_definitions
from dataset_assets.imaging.inspect import inspect_image
from dataset_assets.operations import OperationPipeline
from dataset_assets.registration import register_request
from dataset_assets.request import TransformConfig, parse_request
from dataset_assets.stages import per_image
from dataset_assets.stages.per_image import ROTATED, decode, pipeline_input
from dataset_assets.storage.environment import resources_from_env
from dataset_assets_tests.conftest import Pipeline
from dataset_assets_tests.photos import photo, write_photos
from dataset_assets_tests.test_pipeline import SEED_OPERATIONS

STAGES = ("raw_images", "validated_images", "deduplicated_images", "processed_images")
LATER = ("labels", "tiered_storage", "quality_report")


def build(root: Path, source: Path, monkeypatch, steps: list[tuple[str, ...]]) -> Pipeline:
    """The registered request built in its own home, one run per group of stages in `steps`."""
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(root))
    pipeline = Pipeline(root, resources_from_env(operator=True), DagsterInstance.ephemeral())
    request = parse_request(
        {"request_id": "once", "dataset_key": str(source), "operations": SEED_OPERATIONS}
    )
    register_request(
        pipeline.instance, pipeline.resources["blobs"], pipeline.resources["metadata"], request
    )
    job = build_definitions(pipeline.resources).resolve_job_def("process_dataset")
    for stages in steps:
        result = job.execute_in_process(
            instance=pipeline.instance,
            partition_key="once",
            asset_selection=[AssetKey(stage) for stage in stages],
            raise_on_error=False,
        )
        assert result.success
    return pipeline


def test_images_are_transformed_in_validation_and_the_dataset_is_the_same(
    tmp_path, sample_dir, monkeypatch
):
    source = tmp_path / "source"
    shutil.copytree(sample_dir, source)
    write_photos(source, {"photos/chelsea.jpg": "chelsea", "photos/coffee.jpg": "coffee"})
    once = build(tmp_path / "once", source, monkeypatch, [STAGES + LATER])
    twice = build(tmp_path / "twice", source, monkeypatch, [STAGES[:2], STAGES[2:] + LATER])

    summaries = {
        name: pipeline.metadata.get_request("once")["stages"]["processed_images"]
        for name, pipeline in (("once", once), ("twice", twice))
    }
    processed = summaries["once"]["processed"]
    assert summaries["twice"]["processed"] == processed > 20
    assert summaries["twice"]["made_in_validation"] == 0
    # Every image is transformed in validation's pass: from validation's own pixels where it
    # decoded at the transform's JPEG draft scale, else decoded again from the bytes in hand (a
    # 640x480 JPEG is checked at full scale but halved by the draft; the EXIF-rotated one).
    assert summaries["once"]["made_in_validation"] == processed
    assert summaries["once"]["outputs_dropped"] >= 1  # the near duplicate's outputs

    files, expected = once.outputs("once"), twice.outputs("once")
    assert files.keys() == expected.keys()
    assert all(files[key] == expected[key] for key in expected if not key.endswith(".html"))
    kept = {
        output["key"]
        for doc in once.metadata.iter_images("once", status="processed")
        for output in doc["outputs"]
    }
    assert set(once.blobs.list("processed/once")) == kept
    assert not any(
        doc.get("transform_key") or (doc["status"] != "processed" and doc.get("outputs"))
        for doc in once.metadata.iter_images("once")
    )


@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 6, 8])
@pytest.mark.parametrize("operations", [SEED_OPERATIONS, ["GrayScale"]])
def test_the_transform_decodes_the_pixels_exif_transpose_gives(orientation, operations):
    """An upright JPEG skips `exif_transpose` (it would only copy it); every orientation still
    decodes to what `exif_transpose` gives, at the same draft scale and source size."""
    image = photo("chelsea")
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = BytesIO()
    image.save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    data = buffer.getvalue()
    pipeline = OperationPipeline.parse(operations)

    decoded, source_size = decode(data, pipeline, "RGB")

    reference = Image.open(BytesIO(data))
    rotated = orientation in ROTATED
    oriented = reference.size[::-1] if rotated else reference.size
    draft = pipeline.draft_size(*oriented)
    if draft:
        reference.draft(reference.mode, draft[::-1] if rotated else draft)
    expected = pipeline_input(ImageOps.exif_transpose(reference), "RGB")
    assert source_size == (oriented if draft else None)
    assert (decoded.mode, decoded.size) == (expected.mode, expected.size)
    assert decoded.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("size", "orientation", "reuses"),
    [((1024, 768), None, True), ((640, 480), None, False), ((1024, 768), 6, False)],
)
def test_validation_hands_the_transform_what_decode_gives(monkeypatch, size, orientation, reuses):
    """Validation's own pixels go to the transform only where they are the ones `decode` gives
    (the same JPEG draft scale, upright); otherwise the bytes in hand are decoded again."""
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    buffer = BytesIO()
    photo("chelsea").resize(size).save(buffer, "JPEG", quality=92, exif=exif.tobytes())
    data = buffer.getvalue()
    plan = TransformConfig(operations=SEED_OPERATIONS).plan
    expected, expected_size = decode(data, plan.pipeline, "RGB")
    found = inspect_image(data, "chelsea.jpg")
    decoded = []
    monkeypatch.setattr(per_image, "decode", lambda *args: decoded.append(args) or decode(*args))

    image, source_size = per_image.transform_input(data, found, plan, "RGB")

    assert (not decoded) == reuses
    assert source_size == expected_size
    assert (image.mode, image.size) == (expected.mode, expected.size)
    assert image.tobytes() == expected.tobytes()


def test_an_image_the_transform_cannot_decode_is_failed_by_the_transform_stage(
    pipeline, make_images, monkeypatch
):
    """Validation accepts the files, then its second decode for the transform fails: nothing is
    written ahead, and the transform stage decodes again and records why, naming each file. No
    real file did this on cue (Pillow reads what it validated), so `decode` is made to raise."""

    def broken(data, pipeline, target_mode):
        raise OSError("decoder gave up")

    monkeypatch.setattr(per_image, "decode", broken)
    # JPEGs that validation checks at full scale but the transform drafts: decoded again.
    source = make_images({f"c/img_{i}.jpg": (640 + i, 480) for i in range(3)})
    request = {"request_id": "nodecode", "dataset_key": str(source), "operations": SEED_OPERATIONS}

    result = pipeline.run(request)

    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert failure.step_key.startswith("processed_images.")
    store = pipeline.metadata
    assert store.get_request("nodecode")["stages"]["validated_images"]["count"] == 3
    failed = list(store.iter_images("nodecode", status="failed"))
    assert len(failed) == 3
    for doc in failed:
        assert doc["reject_reason"] == "transform_error"
        assert doc["reject_message"] == f"{doc['source']}: OSError: decoder gave up"
        assert not doc.get("outputs") and doc.get("transform_key") is None
    assert not list(pipeline.blobs.list("processed/nodecode/"))
