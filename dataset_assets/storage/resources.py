"""Dagster resources for the blob store, the metadata store and a run's scratch space."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path

import pydantic
from dagster import ConfigurableResource, EnvVar

from dataset_assets.storage.blobs import BlobStore, LocalBlobStore
from dataset_assets.storage.metadata import MetadataStore, connect


def setting(value: str) -> str:
    """A config value, read from the environment when it is an `EnvVar`.

    Inside a run Dagster has already resolved `EnvVar` fields; the CLI and tests use resources
    outside runs, where the field still holds the variable's name.
    """
    return value.get_value() if isinstance(value, EnvVar) else value


class BlobStoreResource(ConfigurableResource):
    """Image bytes in a local directory: the embedded default."""

    root: str = pydantic.Field(description="Directory that holds every blob.")

    @cached_property
    def store(self) -> BlobStore:
        return LocalBlobStore(setting(self.root))


class MetadataStoreResource(ConfigurableResource):
    """Image records and workflow tracking: MongoDB for a mongodb:// URI, else an embedded file."""

    uri: str = pydantic.Field(description="mongodb://... or a file path for the embedded store.")
    database: str = "dataset_assets"

    @cached_property
    def store(self) -> MetadataStore:
        store = MetadataStore(connect(setting(self.uri), self.database))
        store.ensure_indexes()
        return store


class WorkspaceResource(ConfigurableResource):
    """Scratch files of a step (spooled archive members, report drafts), removed when it ends."""

    root: str = pydantic.Field(description="Parent directory of per-step scratch folders.")
    keep: bool = pydantic.Field(
        default=False, description="Keep scratch folders after the step, for debugging."
    )

    @contextmanager
    def step_dir(self, run_id: str, step: str) -> Iterator[Path]:
        path = Path(self.root, run_id, step)
        path.mkdir(parents=True, exist_ok=True)
        try:
            yield path
        finally:
            if not self.keep:
                shutil.rmtree(path, ignore_errors=True)
                run_dir = path.parent
                if run_dir.is_dir() and not any(run_dir.iterdir()):
                    run_dir.rmdir()
