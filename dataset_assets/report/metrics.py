"""A run's counts and quality score from the metadata store (the seed's `PipelineMetrics`)."""

from collections.abc import Mapping
from functools import partial
from typing import Any

from dataset_assets.report.score import quality_score
from dataset_assets.storage.metadata import MetadataStore


def stages_by_name(store: MetadataStore, dataset: str) -> dict[str, dict[str, Any]]:
    """Each finished stage's document (its count and summary), read once per report or card."""
    return {doc["stage"]: doc for doc in store.stage_docs(dataset)}


def stage_summary(stages: Mapping[str, dict[str, Any]], stage: str) -> dict[str, Any]:
    return (stages.get(stage) or {}).get("summary") or {}


def dataset_metrics(
    store: MetadataStore, dataset: str, stages: Mapping[str, dict[str, Any]]
) -> dict[str, Any]:
    """Counts per stage and the quality score; the report and the dataset card show the same."""
    summary = partial(stage_summary, stages)

    statuses = store.count_by(dataset, "status")
    ingested = sum(statuses.values())
    invalid = summary("validated_images").get("invalid", statuses.get("rejected", 0))
    valid = ingested - invalid
    duplicates = summary("deduplicated_images").get("duplicates", statuses.get("duplicate", 0))
    metrics = {
        "images_ingested": ingested,
        "images_validated": ingested,
        "valid_images": valid,
        "invalid_images": invalid,
        "duplicates_found": duplicates,
        "duplicates_removed": statuses.get("duplicate", 0),
        "unique_images": valid - duplicates,
        "processed_images": statuses.get("processed", 0),
        "output_files": summary("processed_images").get("outputs", 0),
        "labelled_images": summary("labels").get("labelled", 0),
        "hot": summary("tiered_storage").get("hot", 0),
        "cold": summary("tiered_storage").get("cold", 0),
    }
    metrics["quality_score"] = round(quality_score(metrics), 2)
    return metrics
