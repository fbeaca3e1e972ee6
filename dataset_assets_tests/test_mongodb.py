"""The metadata store on a real MongoDB wire-protocol server: same code path as the embedded one."""

import uuid

import pytest
from dagster import DagsterInstance

from dataset_assets.sample_data import SAMPLE_EXPECTATIONS
from dataset_assets.storage.environment import resources_from_env
from dataset_assets.storage.io_manager import ManifestIOManager
from dataset_assets.storage.metadata import MetadataStore, connect
from dataset_assets.storage.resources import MetadataStoreResource
from dataset_assets_tests.conftest import Pipeline
from dataset_assets_tests.servers import free_port


@pytest.fixture
def mongo_pipeline(tmp_path, monkeypatch, mongodb_uri) -> Pipeline:
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASET_ASSETS_METADATA_URI", mongodb_uri)
    monkeypatch.delenv("DATASET_ASSETS_BLOB_ROOT", raising=False)
    resources = resources_from_env(operator=True)
    resources["metadata"] = MetadataStoreResource(
        uri=mongodb_uri, database=f"test_{uuid.uuid4().hex[:8]}"
    )
    resources["manifest_io_manager"] = ManifestIOManager(metadata=resources["metadata"])
    return Pipeline(tmp_path / "home", resources, DagsterInstance.ephemeral())


def test_sample_dataset_runs_on_mongodb_and_a_rerun_duplicates_nothing(mongo_pipeline, sample_dir):
    request = {"request_id": "mongo", "dataset_key": str(sample_dir), "operations": ["GrayScale"]}
    assert mongo_pipeline.run(request).success
    store = mongo_pipeline.metadata
    assert store.count_images("mongo") == SAMPLE_EXPECTATIONS["files"]
    assert store.count_by("mongo", "status") == {"rejected": 3, "duplicate": 2, "processed": 23}
    first = mongo_pipeline.outputs("mongo")
    assert mongo_pipeline.run(request).success
    assert store.count_images("mongo") == SAMPLE_EXPECTATIONS["files"]
    assert store.images.count_documents({}) == SAMPLE_EXPECTATIONS["files"]
    assert store.stages.count_documents({"dataset": "mongo"}) == 7
    assert store.requests.count_documents({"request_id": "mongo"}) == 1
    assert mongo_pipeline.outputs("mongo") == first
    tracked = store.get_request("mongo")
    assert tracked["status"] == "succeeded" and tracked["progress"] == 100


def test_unique_index_keeps_one_document_per_image(mongodb_uri):
    store = MetadataStore(connect(mongodb_uri, f"test_{uuid.uuid4().hex[:8]}"))
    store.ensure_indexes()
    docs = [
        {"image_id": f"{i:024x}", "source": f"a/{i}.jpg", "status": "ingested"} for i in range(1200)
    ]
    assert store.upsert_images("d", docs) == 1200
    assert store.upsert_images("d", docs) == 1200
    assert store.count_images("d") == 1200
    assert [doc["source"] for doc in store.iter_images("d", page_size=250)] == sorted(
        doc["source"] for doc in docs
    )


def test_dataset_names_never_act_as_query_operators(mongodb_uri):
    store = MetadataStore(connect(mongodb_uri, f"test_{uuid.uuid4().hex[:8]}"))
    store.upsert_images("real", [{"image_id": "a" * 24, "source": "x.jpg", "status": "valid"}])
    assert store.count_images({"$gt": ""}) == 0
    assert store.count_images('{"$gt": ""}') == 0
    assert list(store.iter_images({"$ne": None})) == []
    assert store.get_request({"$gt": ""}) is None


def test_unreachable_mongodb_fails_naming_the_endpoint_but_not_the_password():
    port = free_port()
    with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}"):
        try:
            connect(f"mongodb://user:secret@127.0.0.1:{port}/?serverSelectionTimeoutMS=1000")
        except ConnectionError as error:
            assert "secret" not in str(error)
            raise


def test_cli_run_against_mongodb_keeps_the_uri_out_of_run_config_and_metadata(
    tmp_path, monkeypatch, mongodb_uri, sample_dir, capsys
):
    from dataset_assets.cli import main

    database_uri = mongodb_uri.replace("127.0.0.1", "localhost")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATASET_ASSETS_METADATA_URI", database_uri)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.delenv("DATASET_ASSETS_HOME", raising=False)
    assert main(["run", str(sample_dir), "--request-id", "cli-mongo", "--json"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert '"processed": 23' in summary
    store = MetadataStore(connect(database_uri))
    assert store.get_request("cli-mongo")["status"] == "succeeded"
    from dagster import DagsterInstance

    instance = DagsterInstance.get()
    (run,) = instance.get_runs()
    assert database_uri not in str(run.run_config)
    for entry in instance.all_logs(run.run_id):
        assert database_uri not in str(entry)
