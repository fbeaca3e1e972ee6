"""Which stores a deployment uses, chosen by environment variables alone."""

import os
from pathlib import Path

from dagster import ConfigurableResource, EnvVar
from dagster_aws.s3 import S3Resource

from dataset_assets.messaging.kafka import KafkaResource
from dataset_assets.policy import policy_from_env
from dataset_assets.storage.io_manager import ManifestIOManager, StepOutputIOManager
from dataset_assets.storage.resources import (
    BlobStoreResource,
    MetadataStoreResource,
    WorkspaceResource,
)


def home() -> Path:
    """Where the embedded default keeps its files: `$DATASET_ASSETS_HOME` or `./.dataset_assets`."""
    return Path(os.environ.get("DATASET_ASSETS_HOME", ".dataset_assets")).resolve()


def from_env(name: str, default: Path | str) -> str:
    """The variable as an `EnvVar` when set, so the UI and run config show its name, never its
    value (a MongoDB URI may hold a password); else the embedded default's path."""
    return EnvVar(name) if os.environ.get(name) else str(default)


def optional_env(name: str) -> str | None:
    return EnvVar(name) if os.environ.get(name) else None


def resources_from_env(*, operator: bool = False) -> dict[str, ConfigurableResource]:
    """The resources for this deployment, chosen by environment variables alone.

    Embedded default: files under `DATASET_ASSETS_HOME`. `DATASET_ASSETS_METADATA_URI`
    (`mongodb://...`) moves metadata to MongoDB, `DATASET_ASSETS_BLOB_ROOT` (`s3://bucket/prefix`)
    moves blobs to S3 or MinIO (`DATASET_ASSETS_S3_ENDPOINT_URL`; credentials from the standard
    AWS variables), `DATASET_ASSETS_KAFKA_BOOTSTRAP` names the Kafka brokers for the sensors.
    `DATASET_ASSETS_KEEP_WORKSPACE=1` keeps each step's scratch files. The deployment policy
    (`dataset_assets.policy`) comes from its own variables; `operator` is for the command line,
    whose user may read any source.
    """
    base = home()
    metadata = MetadataStoreResource(
        uri=from_env("DATASET_ASSETS_METADATA_URI", base / "metadata.db")
    )
    s3 = S3Resource(
        endpoint_url=optional_env("DATASET_ASSETS_S3_ENDPOINT_URL"),
        region_name=os.environ.get("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION", "us-east-1")),
    )
    blobs = BlobStoreResource(root=from_env("DATASET_ASSETS_BLOB_ROOT", base / "blobs"), s3=s3)
    return {
        "blobs": blobs,
        "metadata": metadata,
        "workspace": WorkspaceResource(
            root=str(base / "work"),
            keep=os.environ.get("DATASET_ASSETS_KEEP_WORKSPACE", "") in {"1", "true", "yes"},
        ),
        "manifest_io_manager": ManifestIOManager(metadata=metadata),
        "io_manager": StepOutputIOManager(blobs=blobs),
        "policy": policy_from_env(operator=operator),
        "kafka": KafkaResource(
            bootstrap_servers=from_env("DATASET_ASSETS_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
            sasl_username=optional_env("DATASET_ASSETS_KAFKA_USERNAME"),
            sasl_password=optional_env("DATASET_ASSETS_KAFKA_PASSWORD"),
        ),
    }
