"""Transient and permanent storage faults during a run.

A blob store that refuses writes on demand stands in for an S3 or disk outage: a fault that
cannot be provoked on cue from a real server mid-step. Everything else here is real.
"""

import pytest

from dataset_assets.storage.blobs import LocalBlobStore

OPS = [{"Resize": {"max_side": 40}}]


class Outage:
    """Makes `put_bytes` of processed images fail `remaining` times, then recover.

    In a run that goes on to the transform, validation writes the outputs; in a run of the later
    stages after one of validation alone (`validated_first`), the transform stage writes them.
    """

    def __init__(self, remaining: int):
        self.remaining = remaining
        self.failures = 0

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = LocalBlobStore.put_bytes

        def flaky(store: LocalBlobStore, key: str, data: bytes) -> str:
            if key.startswith("processed/") and self.remaining:
                self.remaining -= 1
                self.failures += 1
                raise ConnectionError(f"blob store unavailable while writing {key}")
            return original(store, key, data)

        monkeypatch.setattr(LocalBlobStore, "put_bytes", flaky)


LATER = ("deduplicated_images", "processed_images", "labels", "tiered_storage", "quality_report")


def validated_first(pipeline, request: dict[str, object]) -> tuple[str, ...]:
    """Ingest and validate in a run of their own; the stages left, whose transform writes."""
    assert pipeline.run(request, stages=("raw_images", "validated_images")).success
    return LATER


@pytest.mark.parametrize(
    ("size", "extension", "split", "writer"),
    [
        # Small PNGs: validation decodes them as the transform would and writes the outputs.
        ((60, 50), "png", False, "validated_images.validate_shard[shard_000]"),
        # JPEGs checked at full scale but drafted to 1/8: validation decodes them again.
        ((600, 400), "jpg", False, "validated_images.validate_shard[shard_000]"),
        ((600, 400), "jpg", True, "processed_images.transform_shard[shard_000]"),
    ],
)
def test_a_transient_blob_fault_is_retried_and_the_run_succeeds_without_duplicates(
    pipeline, make_images, monkeypatch, size, extension, split, writer
):
    width, height = size
    source = make_images({f"c/img_{i}.{extension}": (width + i, height) for i in range(6)})
    request = {"request_id": "flaky", "dataset_key": str(source), "operations": OPS}
    stages = validated_first(pipeline, request) if split else ()
    outage = Outage(remaining=1)
    outage.install(monkeypatch)
    result = pipeline.run(request, stages=stages)
    assert result.success
    assert outage.failures == 1
    retried = [
        event for event in result.all_events if event.event_type_value == "STEP_UP_FOR_RETRY"
    ]
    assert [event.step_key for event in retried] == [writer]
    assert pipeline.metadata.count_by("flaky", "status") == {"processed": 6}
    assert pipeline.metadata.count_images("flaky") == 6
    assert len(list(pipeline.blobs.list("processed/flaky/"))) == 6
    assert len(pipeline.images("flaky")) == 6


def test_a_permanent_blob_fault_fails_the_step_with_its_cause(
    pipeline, make_images, monkeypatch, capsys
):
    from dataset_assets.cli import main

    source = make_images({"c/a.jpg": (640, 640), "c/b.jpg": (720, 640)})
    request = {"request_id": "down", "dataset_key": str(source), "operations": OPS}
    stages = validated_first(pipeline, request)
    Outage(remaining=10_000).install(monkeypatch)
    result = pipeline.run(request, stages=stages)
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert failure.step_key.startswith("processed_images.transform_shard")
    error = failure.step_failure_data.error
    assert "blob store unavailable" in error.to_string()
    assert pipeline.metadata.get_request("down")["current_stage"] == "processed_images"
    # Where the run stopped, as `dataset-assets status` shows it: both images still to transform.
    assert main(["status", "down"]) == 0
    assert "current stage: processed_images (0/2 images)" in capsys.readouterr().out


def test_the_root_cause_of_a_step_that_ran_out_of_retries_is_named(
    pipeline, make_images, monkeypatch
):
    from dataset_assets.failures import failure_cause

    source = make_images({"c/a.jpg": (640, 640)})
    request = {"request_id": "cause", "dataset_key": str(source), "operations": OPS}
    stages = validated_first(pipeline, request)
    Outage(remaining=10_000).install(monkeypatch)
    result = pipeline.run(request, stages=stages)
    stage, cause = failure_cause(result.all_events)
    assert stage == "processed_images"
    assert cause.startswith("ConnectionError: ")
    assert "blob store unavailable while writing processed/cause/" in cause
