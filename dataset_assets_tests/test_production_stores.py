"""The whole job on MongoDB + S3 servers, configured by environment variables alone."""

import json
import shutil
import uuid

import boto3
import pytest
from dagster import DagsterInstance

from dataset_assets.cli import main
from dataset_assets.sample_data import SAMPLE_EXPECTATIONS
from dataset_assets.storage.environment import resources_from_env
from dataset_assets_tests.conftest import Pipeline
from dataset_assets_tests.test_training_formats import resolve_every_named_path


@pytest.fixture
def remote_pipeline(tmp_path, monkeypatch, mongodb_uri, s3_endpoint, sample_dir) -> Pipeline:
    """MongoDB metadata, S3 blobs, and the sample uploaded as a zip to a source bucket."""
    name = uuid.uuid4().hex[:8]
    blobs_bucket, source_bucket = f"blobs-{name}", f"sources-{name}"
    environment = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "DATASET_ASSETS_HOME": str(tmp_path / "home"),
        "DATASET_ASSETS_S3_ENDPOINT_URL": s3_endpoint,
        "DATASET_ASSETS_BLOB_ROOT": f"s3://{blobs_bucket}/v1",
        "DATASET_ASSETS_METADATA_URI": mongodb_uri.replace("/?", f"/db_{name}?"),
        "DATASET_ASSETS_SOURCE_BUCKET": source_bucket,
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for bucket in (blobs_bucket, source_bucket):
        s3.create_bucket(Bucket=bucket)
    archive = shutil.make_archive(str(tmp_path / "kanagawa"), "zip", sample_dir)
    s3.upload_file(archive, source_bucket, "images/kanagawa.zip")
    resources = resources_from_env(operator=True)
    return Pipeline(tmp_path / "home", resources, DagsterInstance.ephemeral())


SEED = {
    "request_id": "kanagawa",
    "dataset_key": "images/kanagawa.zip",
    "operations": [
        {"Resize": {"scaling_factor": 0.5}},
        "GrayScale",
        {"Noise": {"noise_level": 0.1}},
    ],
    "tiering": {"hot_storage_threshold": 20},
}


def test_seed_request_runs_on_mongodb_and_s3_and_a_rerun_duplicates_nothing(
    remote_pipeline, tmp_path
):
    assert remote_pipeline.run(SEED).success
    blobs, store = remote_pipeline.blobs, remote_pipeline.metadata
    assert blobs.location("reports/kanagawa/report.html").startswith("s3://blobs-")
    fetched = tmp_path / "fetched" / "kanagawa.html"
    fetched.parent.mkdir()
    assert main(["report", "kanagawa", "-o", str(fetched)]) == 0
    assert fetched.read_bytes() == blobs.get_bytes("reports/kanagawa/report.html")
    metrics = json.loads(fetched.with_suffix(".json").read_text())
    assert metrics == json.loads(blobs.get_bytes("reports/kanagawa/report.json"))
    assert store.count_images("kanagawa") == SAMPLE_EXPECTATIONS["files"]
    assert store.count_by("kanagawa", "status") == {"rejected": 3, "duplicate": 2, "processed": 23}
    outputs = remote_pipeline.outputs("kanagawa")
    assert len(remote_pipeline.images("kanagawa")) == 20
    cold_key, *others = remote_pipeline.images("kanagawa", "cold")
    assert len(others) == 2
    assert resolve_every_named_path(outputs)["manifest.jsonl"] == 23
    head = blobs.client.head_object(
        Bucket=blobs.bucket, Key=blobs.object_key(f"datasets/kanagawa/{cold_key}")
    )
    assert head["StorageClass"] == "STANDARD_IA"
    originals = sorted(blobs.list("originals/"))
    rejected = {doc["blob_key"] for doc in store.iter_images("kanagawa", status="rejected")}
    assert len(rejected) == 3 and not rejected & set(originals), "rejected files are not kept"
    kept = SAMPLE_EXPECTATIONS["files"] - SAMPLE_EXPECTATIONS["exact_duplicates"] - len(rejected)
    assert len(originals) == kept

    assert remote_pipeline.run(SEED).success
    assert remote_pipeline.outputs("kanagawa") == outputs
    assert sorted(blobs.list("originals/")) == originals
    assert store.images.count_documents({}) == SAMPLE_EXPECTATIONS["files"]
    assert store.requests.count_documents({}) == 1
    source = store.get_request("kanagawa")["stages"]["raw_images"]["source"]
    assert source.startswith("s3://sources-") and source.endswith("/images/kanagawa.zip")


def test_a_missing_source_object_fails_before_anything_is_written(remote_pipeline):
    result = remote_pipeline.run({"request_id": "missing", "dataset_key": "images/nope.zip"})
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "images/nope.zip" in message and "no such object" in message
    assert list(remote_pipeline.blobs.list("originals/")) == []
    assert remote_pipeline.metadata.count_images("missing") == 0


def test_transient_mongodb_and_s3_faults_are_retried_without_duplicates(
    remote_pipeline, monkeypatch
):
    """A MongoDB fault while ingest writes records, an S3 fault while a shard writes outputs
    (validation's shard: it transforms the images it decodes at the transform's scale).

    The servers are real; the faults are injected at the clients, once each, because a server
    cannot be made to drop exactly one request mid-step on cue.
    """
    import botocore.exceptions
    import pymongo.errors

    from dataset_assets.storage.metadata import MetadataStore
    from dataset_assets.storage.s3 import S3BlobStore

    faults = {"mongodb": 1, "s3": 1}
    flush, put_bytes = MetadataStore._flush, S3BlobStore.put_bytes

    def flaky_flush(store, dataset, batch, upsert):
        if faults["mongodb"] and any("ingest_run" in values for _, values, _ in batch):
            faults["mongodb"] -= 1
            raise pymongo.errors.AutoReconnect("connection reset by MongoDB")
        return flush(store, dataset, batch, upsert)

    def flaky_put(store, key, data):
        if faults["s3"] and key.startswith("processed/"):
            faults["s3"] -= 1
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="http://s3")
        return put_bytes(store, key, data)

    monkeypatch.setattr(MetadataStore, "_flush", flaky_flush)
    monkeypatch.setattr(S3BlobStore, "put_bytes", flaky_put)
    result = remote_pipeline.run(SEED)
    assert result.success
    assert faults == {"mongodb": 0, "s3": 0}
    retried = [e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert retried == ["raw_images", "validated_images.validate_shard[shard_000]"]
    store = remote_pipeline.metadata
    assert store.images.count_documents({}) == SAMPLE_EXPECTATIONS["files"]
    assert store.count_by("kanagawa", "status")["processed"] == SAMPLE_EXPECTATIONS["kept"]
    processed = list(remote_pipeline.blobs.list("processed/kanagawa/"))
    assert len(processed) == SAMPLE_EXPECTATIONS["kept"]
