"""A partition carries its request: runs with no config read it, run config overrides it."""

import io

from dagster import AssetKey
from PIL import Image

from dataset_assets.definitions import build_definitions
from dataset_assets.partitions import datasets_partitions
from dataset_assets.registration import register_request
from dataset_assets.request import parse_request


def _register(pipeline, payload):
    request = parse_request(payload)
    register_request(
        pipeline.instance, pipeline.resources["blobs"], pipeline.resources["metadata"], request
    )
    return request


def _job(pipeline, name="process_dataset"):
    return build_definitions(pipeline.resources).resolve_job_def(name)


def _images(pipeline, dataset: str) -> list[Image.Image]:
    return [Image.open(io.BytesIO(data)) for data in pipeline.images(dataset).values()]


def _materialized(result) -> set[str]:
    return {event.asset_key.path[-1] for event in result.get_asset_materialization_events()}


def test_a_registered_partition_builds_with_no_run_config_and_one_stage_rebuilds_alone(
    pipeline, sample_dir
):
    request = _register(
        pipeline,
        {"request_id": "stored", "dataset_key": str(sample_dir), "operations": ["GrayScale"]},
    )
    result = _job(pipeline).execute_in_process(
        instance=pipeline.instance, partition_key=request.id, raise_on_error=False
    )
    assert result.success
    images = _images(pipeline, "stored")
    assert len(images) == 23
    assert {image.mode for image in images} == {"L"}

    labels = pipeline.outputs("stored")["labels.csv"]
    pipeline.blobs.path("datasets/stored/labels.csv").unlink()
    rebuilt = _job(pipeline).execute_in_process(
        instance=pipeline.instance,
        partition_key=request.id,
        asset_selection=[AssetKey("tiered_storage")],
        raise_on_error=False,
    )
    assert rebuilt.success
    assert _materialized(rebuilt) == {"tiered_storage"}
    assert pipeline.outputs("stored")["labels.csv"] == labels


def test_run_config_overrides_the_stored_request_and_is_stored_for_the_next_run(
    pipeline, sample_dir
):
    _register(pipeline, {"request_id": "override", "dataset_key": str(sample_dir)})
    operations = ["GrayScale", {"Resize": {"max_side": 20}}]
    config = {
        "ops": {
            "processed_images": {
                "ops": {"plan_transform_shards": {"config": {"operations": operations}}}
            }
        }
    }
    result = _job(pipeline).execute_in_process(
        run_config=config,
        instance=pipeline.instance,
        partition_key="override",
        raise_on_error=False,
    )
    assert result.success
    stored = pipeline.metadata.get_request("override")["request"]
    assert (
        stored["operations"]
        == parse_request({"dataset_key": "x", "operations": operations}).operations
    )
    assert stored["dataset_key"] == str(sample_dir)
    images = _images(pipeline, "override")
    assert len(images) == 23
    assert max(max(image.size) for image in images) <= 20
    assert {image.mode for image in images} == {"L"}


def test_a_partition_with_no_stored_request_fails_saying_how_to_register_it(pipeline):
    pipeline.instance.add_dynamic_partitions(datasets_partitions.name, ["bare"])
    result = _job(pipeline).execute_in_process(
        instance=pipeline.instance, partition_key="bare", raise_on_error=False
    )
    assert not result.success
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "no request is stored with this partition" in message
    assert "dataset-assets prepare" in message
    assert failure.step_key == "raw_images"


def test_the_add_dataset_job_registers_a_request_from_run_config(pipeline, sample_dir):
    config = {"dataset_key": str(sample_dir), "request_id": "added", "operations": ["GrayScale"]}
    result = _job(pipeline, "add_dataset").execute_in_process(
        run_config={"ops": {"register_dataset": {"config": config}}}, instance=pipeline.instance
    )
    assert result.success
    assert pipeline.instance.has_dynamic_partition(datasets_partitions.name, "added")
    stored = pipeline.metadata.get_request("added")["request"]
    assert stored["operations"] == ["GrayScale"] and stored["dataset_key"] == str(sample_dir)

    bad = {"dataset_key": str(sample_dir), "request_id": "bad", "operations": ["Sepia"]}
    refused = _job(pipeline, "add_dataset").execute_in_process(
        run_config={"ops": {"register_dataset": {"config": bad}}},
        instance=pipeline.instance,
        raise_on_error=False,
    )
    assert not refused.success
    assert not pipeline.instance.has_dynamic_partition(datasets_partitions.name, "bad")
    assert pipeline.metadata.get_request("bad") is None
