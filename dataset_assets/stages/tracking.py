"""What every stage does when it finishes: a manifest, UI metadata and workflow tracking."""

import time
from collections.abc import Mapping
from typing import Any

from dagster import MetadataValue, OpExecutionContext

from dataset_assets.manifest import Manifest, checksum
from dataset_assets.storage.metadata import MetadataStore, utcnow

STAGES = (
    "raw_images",
    "validated_images",
    "deduplicated_images",
    "processed_images",
    "labels",
    "tiered_storage",
    "quality_report",
)
WAITING_STATUS = {"validated_images": "ingested", "processed_images": "unique"}
"""The status an image keeps until a sharded stage has done it: a running stage's countdown."""


def start_stage(
    store: MetadataStore,
    dataset: str,
    stage: str,
    run_id: str,
    settings: Mapping[str, Any] | None = None,
) -> float:
    """Record that `stage` is running, so `dataset-assets status` shows where a request is.

    Sharded stages keep their settings and start time in the stage document, where the op that
    merges the shards (possibly in another process or pod) finds them.
    """
    started = time.time()
    store.track_request(dataset, status="running", current_stage=stage, run_id=run_id)
    store.save_stage(
        dataset, stage, {"run_id": run_id, "started_at": started, "settings": dict(settings or {})}
    )
    return started


def finish_stage(
    context: OpExecutionContext,
    store: MetadataStore,
    *,
    dataset: str,
    stage: str,
    count: int,
    summary: Mapping[str, Any],
    started: float,
    status: str | tuple[str, ...],
) -> Manifest:
    """Checksum the stage's records, track progress, show figures in the UI, return the manifest."""
    duration = round(time.time() - started, 3)
    lines = (
        f"{doc['image_id']}:{doc.get('sha256', '')}:{doc.get('status', '')}"
        for doc in store.iter_images(
            dataset, status=status, fields=("image_id", "sha256", "status"), sort="image_id"
        )
    )
    manifest = Manifest(
        dataset=dataset,
        stage=stage,
        count=count,
        checksum=checksum(lines),
        summary={**summary, "duration_s": duration, "finished_at": utcnow()},
    )
    done = STAGES.index(stage) + 1
    store.track_request(
        dataset,
        current_stage=stage,
        progress=round(100 * done / len(STAGES)),
        **{f"stages.{stage}": {"count": count, "duration_s": duration, **summary}},
    )
    context.add_output_metadata(
        {
            "dataset": dataset,
            "count": count,
            "checksum": manifest.checksum,
            "duration_s": duration,
            "summary": MetadataValue.md(summary_table(summary)),
        }
    )
    return manifest


def summary_table(summary: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in summary.items())
    return f"| figure | value |\n| --- | --- |\n{rows}"
