"""Shared fixtures: the sample dataset, stores in a temporary home, and a runner for the job."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult

from dataset_assets.definitions import build_definitions
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import DatasetRequest, parse_request
from dataset_assets.sample_data import write_sample_dataset
from dataset_assets.storage.blobs import LocalBlobStore
from dataset_assets.storage.environment import resources_from_env
from dataset_assets.storage.metadata import MetadataStore
from dataset_assets_tests.servers import start_mongodb, start_s3_server, start_tansu


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sample_dataset(tmp_path_factory.mktemp("sample") / "images")


@dataclass
class Pipeline:
    """The job bound to stores under one temporary home, plus those stores for assertions."""

    home: Path
    resources: dict[str, Any]
    instance: DagsterInstance

    @property
    def blobs(self) -> LocalBlobStore:
        return self.resources["blobs"].store

    @property
    def metadata(self) -> MetadataStore:
        return self.resources["metadata"].store

    def run(
        self,
        request: DatasetRequest | dict[str, Any],
        *,
        stages: tuple[str, ...] = (),
        **run_config: Any,
    ) -> ExecuteInProcessResult:
        """Run the request: every stage, or only `stages`."""
        if isinstance(request, dict):
            request = parse_request(request)
        if not self.instance.has_dynamic_partition(datasets_partitions.name, request.id):
            self.instance.add_dynamic_partitions(datasets_partitions.name, [request.id])
        job = build_definitions(self.resources).resolve_job_def("process_dataset")
        config = request.to_run_config().to_config_dict()
        config.update(run_config)
        return job.execute_in_process(
            run_config=config,
            instance=self.instance,
            partition_key=request.id,
            asset_selection=[AssetKey(stage) for stage in stages] or None,
            raise_on_error=False,
        )

    def outputs(self, dataset: str) -> dict[str, bytes]:
        """Every file of the finished dataset, by key relative to `datasets/<dataset>/`."""
        prefix = f"datasets/{dataset}/"
        return {key[len(prefix) :]: self.blobs.get_bytes(key) for key in self.blobs.list(prefix)}

    def images(self, dataset: str, tier: str = "hot") -> dict[str, bytes]:
        """The image files of one tier of the finished dataset, by key from the dataset root."""
        return {
            key: data
            for key, data in self.outputs(dataset).items()
            if key.startswith(f"{tier}/") and not key.endswith("/metadata.jsonl")
        }


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The job as the operator's command line runs it: any local source may be read."""
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(tmp_path / "home"))
    for name in ("DATASET_ASSETS_BLOB_ROOT", "DATASET_ASSETS_METADATA_URI"):
        monkeypatch.delenv(name, raising=False)
    resources = resources_from_env(operator=True)
    return Pipeline(tmp_path / "home", resources, DagsterInstance.ephemeral())


@pytest.fixture
def make_images(tmp_path: Path) -> Callable[..., Path]:
    """Write small distinct images (`name -> (width, height)`) into a fresh folder."""
    from dataset_assets_tests.images import write_images

    def make(spec: dict[str, tuple[int, int]], folder: str = "src") -> Path:
        return write_images(tmp_path / folder, spec)

    return make


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MongoDB wire-protocol server for the whole session."""
    with start_mongodb(tmp_path_factory.mktemp("mongodb")) as uri:
        yield uri


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A real S3 API server for the whole session."""
    with start_s3_server() as url:
        yield url


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Tansu broker for the session; each test uses its own topics."""
    with start_tansu(log_file=tmp_path_factory.mktemp("tansu") / "broker.log") as bootstrap:
        yield bootstrap
