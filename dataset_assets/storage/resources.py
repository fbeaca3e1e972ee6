"""Dagster resources for the blob store, the metadata store and a run's scratch space."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any

import pydantic
from botocore.client import BaseClient
from dagster import ConfigurableResource, EnvVar, ResourceDependency
from dagster_aws.s3 import S3Resource

from dataset_assets.storage.blobs import BlobStore, LocalBlobStore
from dataset_assets.storage.metadata import MetadataStore, connect
from dataset_assets.storage.s3 import S3BlobStore, s3_client, s3_client_settings


def setting(value: str | None) -> str | None:
    """A config value, read from the environment when it is an `EnvVar`.

    Inside a run Dagster has already resolved `EnvVar` fields; the CLI and tests use resources
    outside runs, where the field still holds the variable's name.
    """
    return value.get_value() if isinstance(value, EnvVar) else value


class BlobStoreResource(ConfigurableResource):
    """Image bytes in a local directory (the embedded default) or under an S3 prefix."""

    root: str = pydantic.Field(description="A directory, or s3://bucket/prefix for S3 / MinIO.")
    s3: ResourceDependency[S3Resource]
    cold_storage_class: str = pydantic.Field(
        default="STANDARD_IA", description="S3 storage class of the cold tier."
    )

    @cached_property
    def store(self) -> BlobStore:
        root = setting(self.root)
        if not root.startswith("s3://"):
            return LocalBlobStore(root)
        bucket, _, prefix = root.removeprefix("s3://").partition("/")
        settings = self.s3_client_settings()
        store = S3BlobStore(
            s3_client(**settings),
            bucket,
            prefix.strip("/"),
            cold_storage_class=self.cold_storage_class,
            client_settings=settings,
        )
        store.check_reachable()
        return store

    def s3_client(self) -> BaseClient:
        """A client with the `s3` resource's settings and a short connect timeout."""
        return s3_client(**self.s3_client_settings())

    def s3_client_settings(self) -> dict[str, Any]:
        """The `s3` resource's settings, with `EnvVar`s read, as `s3_client` arguments."""
        fields = ("endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key")
        resolved = {name: setting(getattr(self.s3, name)) for name in fields}
        return s3_client_settings(self.s3.model_copy(update=resolved))


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
