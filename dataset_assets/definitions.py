"""Everything Dagster loads from this project: `dagster dev`, `dagster job execute` and the CLI."""

from collections.abc import Mapping
from typing import Any

from dagster import Definitions

from dataset_assets.deployment import deployment_executor
from dataset_assets.jobs import add_dataset, process_dataset
from dataset_assets.sensors import SENSORS
from dataset_assets.stages.deduplicated_images import deduplicated_images, duplicate_ratio
from dataset_assets.stages.labels import labels
from dataset_assets.stages.processed_images import processed_images, processed_images_not_empty
from dataset_assets.stages.quality_report import quality_report
from dataset_assets.stages.raw_images import raw_images
from dataset_assets.stages.tiered_storage import tiered_storage
from dataset_assets.stages.validated_images import invalid_ratio, validated_images
from dataset_assets.storage.environment import resources_from_env

STAGE_ASSETS = [
    raw_images,
    validated_images,
    deduplicated_images,
    processed_images,
    labels,
    tiered_storage,
    quality_report,
]
QUALITY_CHECKS = [invalid_ratio, duplicate_ratio, processed_images_not_empty]


def build_definitions(resources: Mapping[str, Any]) -> Definitions:
    """The project's definitions bound to `resources`; tests bind their own stores."""
    return Definitions(
        assets=STAGE_ASSETS,
        asset_checks=QUALITY_CHECKS,
        jobs=[process_dataset, add_dataset],
        sensors=SENSORS,
        resources=dict(resources),
        executor=deployment_executor(),
    )


defs = build_definitions(resources_from_env())
