"""What every stage does when it starts and finishes: a manifest, UI metadata and workflow
tracking, with each stage's images done / total for `dataset-assets status`."""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dagster import MetadataValue, OpExecutionContext

from dataset_assets.manifest import Manifest, checksum
from dataset_assets.stages.progress import report_progress
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
    total: int | None = None,
) -> float:
    """Record that `stage` is running, with `total` images to do (None: not known yet), so
    `dataset-assets status` shows where a request is.

    Sharded stages keep their settings and start time in the stage document, where the op that
    merges the shards (possibly in another process or pod) finds them.
    """
    started = time.time()
    store.track_request(dataset, status="running", current_stage=stage, run_id=run_id)
    store.save_stage(
        dataset, stage, {"run_id": run_id, "started_at": started, "settings": dict(settings or {})}
    )
    report_progress(store, dataset, stage, run_id, 0, total, duration_s=None)
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
    report_progress(store, dataset, stage, context.run.run_id, count, count, duration_s=duration)
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


@dataclass(frozen=True)
class Progress:
    """A stage of one run: images done / total (None until known); once finished, `done` is the
    images it kept and `duration_s` is set."""

    stage: str
    done: int
    total: int | None
    duration_s: float | None = None

    @property
    def finished(self) -> bool:
        return self.duration_s is not None


def run_progress(store: MetadataStore, dataset: str, run_id: str | None) -> list[Progress]:
    """The stages run `run_id` has started, in pipeline order; a running sharded stage's done
    count is its images that left the status they wait in."""
    docs = {
        doc["stage"]: doc for doc in store.load_progress(dataset) if doc.get("run_id") == run_id
    }
    found = []
    for stage in (stage for stage in STAGES if stage in docs):
        doc = docs[stage]
        done, total, duration = doc.get("done") or 0, doc.get("total"), doc.get("duration_s")
        if duration is None and stage in WAITING_STATUS and total is not None:
            waiting = store.count_images(dataset, status=WAITING_STATUS[stage])
            done = min(total, max(0, total - waiting))
        found.append(Progress(stage, done, total, duration))
    return found


def summary_table(summary: Mapping[str, Any]) -> str:
    rows = "\n".join(f"| {key} | {value} |" for key, value in summary.items())
    return f"| figure | value |\n| --- | --- |\n{rows}"
