"""Which stores a deployment uses, chosen by environment variables alone."""

import os
from pathlib import Path

from dagster import ConfigurableResource, EnvVar

from dataset_assets.storage.io_manager import ManifestIOManager
from dataset_assets.storage.resources import (
    BlobStoreResource,
    MetadataStoreResource,
    WorkspaceResource,
)


def home() -> Path:
    """Where the embedded default keeps its files: `$DATASET_ASSETS_HOME` or `./.dataset_assets`."""
    return Path(os.environ.get("DATASET_ASSETS_HOME", ".dataset_assets")).resolve()


def from_env(name: str, default: Path) -> str:
    """The variable as an `EnvVar` when set, so the UI and run config show its name, never its
    value (a MongoDB URI may hold a password); else the embedded default's path."""
    return EnvVar(name) if os.environ.get(name) else str(default)


def resources_from_env() -> dict[str, ConfigurableResource]:
    """The resources for this deployment, chosen by environment variables alone.

    `DATASET_ASSETS_BLOB_ROOT` and `DATASET_ASSETS_METADATA_URI` override the embedded default
    (files under `DATASET_ASSETS_HOME`); `DATASET_ASSETS_KEEP_WORKSPACE=1` keeps scratch files.
    """
    base = home()
    metadata = MetadataStoreResource(
        uri=from_env("DATASET_ASSETS_METADATA_URI", base / "metadata.db")
    )
    return {
        "blobs": BlobStoreResource(
            root=os.environ.get("DATASET_ASSETS_BLOB_ROOT", str(base / "blobs"))
        ),
        "metadata": metadata,
        "workspace": WorkspaceResource(
            root=str(base / "work"),
            keep=os.environ.get("DATASET_ASSETS_KEEP_WORKSPACE", "") in {"1", "true", "yes"},
        ),
        "manifest_io_manager": ManifestIOManager(metadata=metadata),
    }
