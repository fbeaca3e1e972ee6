"""Quality report: the run's figures as JSON and as a self-contained HTML page."""

import base64
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from itertools import islice
from typing import Any

import numpy as np
from dagster import AssetCheckResult, AssetExecutionContext, MetadataValue, asset

from dataset_assets.imaging.inspect import ISSUE_THRESHOLDS, REJECT_REASONS
from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.report.html import render_report_html
from dataset_assets.report.metrics import dataset_metrics, stage_summary, stages_by_name
from dataset_assets.report.score import QUALITY_SCORE_FORMULA, histogram
from dataset_assets.request import ReportConfig
from dataset_assets.stages.policies import METADATA_RETRY
from dataset_assets.stages.request_settings import stage_config
from dataset_assets.stages.tracking import STAGES, finish_stage, start_stage, summary_table
from dataset_assets.storage.blobs import BlobStore
from dataset_assets.storage.metadata import MetadataStore, eq
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource

REASONS = {
    **REJECT_REASONS,
    "unsafe_path": "The file name would escape the dataset (absolute, '..', backslash, not UTF-8).",
    "unreadable": "The file could not be read from its source (bad CRC, lying size, I/O error).",
    "symlink": "A symbolic or hard link; links are never followed.",
    "not_a_file": "A device, fifo or other special file.",
    "duplicate_name": "Another archive member has the same name; the first one is kept.",
    "bad_url": "A line of the URL list that is not an http(s) URL.",
    "blocked_host": "The URL, or a redirect, points at a loopback, private or link-local address.",
    "download_failed": "The URL could not be fetched (HTTP error or network failure, retried).",
    "transform_error": "An operation failed on this image.",
    "quality_issue": "Flagged with a quality issue the request drops (validation.drop_issues).",
}
DECODED = ("valid", "unique", "duplicate", "processed", "failed")
"""Statuses of images that were decoded, whose sizes and scores the histograms describe."""


def collect_report(
    store: MetadataStore,
    blobs: BlobStore,
    dataset: str,
    config: ReportConfig,
    stopped_by: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Every figure of the report, read from the metadata store with bounded memory.

    `stopped_by` names the gate (or strict validation) that stopped the run, for a report written
    on the way out of a stopped run: the figures are then those of the stages that ran.
    """
    stages = stages_by_name(store, dataset)
    summary = partial(stage_summary, stages)

    label_summary = summary("labels")
    metrics = dataset_metrics(store, dataset, stages)
    figures = _image_figures(store, blobs, dataset, config.max_thumbnails_per_reason)
    transform = summary("processed_images")
    return {
        "dataset": dataset,
        "request_id": dataset,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "metrics": metrics,
        "quality_score_formula": QUALITY_SCORE_FORMULA,
        "stages": [
            {
                "stage": stage,
                "count": stages[stage].get("count", 0),
                "duration_s": summary(stage).get("duration_s"),
            }
            for stage in STAGES
            if stage in stages and "count" in stages[stage]
        ],
        "reject_reasons": store.count_by(dataset, "reject_reason"),
        "reason_descriptions": REASONS,
        "quality_issues": figures["issues"],
        "flagged_images": figures["flagged"],
        "issue_thresholds": dict(ISSUE_THRESHOLDS),
        "histograms": figures["histograms"],
        "labels": label_summary.get("classes", {}),
        "label_imbalance": label_summary.get("imbalance"),
        "rejects": _rejects(store, blobs, dataset, config.max_thumbnails_per_reason),
        "duplicate_clusters": _clusters(store, blobs, dataset, config.max_duplicate_clusters),
        "operations": transform.get("operations", []),
        "operations_fingerprint": transform.get("fingerprint", ""),
        "gates": [
            summary(stage)["gate"]
            for stage in ("validated_images", "deduplicated_images")
            if summary(stage).get("gate")
        ],
        "stopped_by": stopped_by,
    }


def publish_report(
    store: MetadataStore,
    blobs: BlobStore,
    dataset: str,
    config: ReportConfig,
    stopped_by: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str, str]:
    """Write `report.json` and `report.html`; return the report and both keys."""
    report = collect_report(store, blobs, dataset, config, stopped_by)
    json_key = blobs.put_bytes(
        f"reports/{dataset}/report.json", json.dumps(report, indent=2).encode()
    )
    html_key = blobs.put_bytes(
        f"reports/{dataset}/report.html", render_report_html(report).encode()
    )
    if stopped_by is not None:
        store.track_request(dataset, report=blobs.location(html_key))
    return report, json_key, html_key


def _image_figures(
    store: MetadataStore, blobs: BlobStore, dataset: str, per_issue: int
) -> dict[str, Any]:
    """Histograms, issue counts and up to `per_issue` flagged images of each issue, in one pass."""
    columns: dict[str, list[float]] = {"width": [], "height": [], "aspect": [], "brightness": []}
    issues: Counter[str] = Counter()
    flagged: list[dict[str, Any]] = []
    for doc in store.iter_images(dataset, status=DECODED, fields=("source", "validation")):
        found = doc.get("validation") or {}
        width, height = found.get("width"), found.get("height")
        if width and height:
            columns["width"].append(width)
            columns["height"].append(height)
            columns["aspect"].append(width / height)
        if found.get("brightness") is not None:
            columns["brightness"].append(found["brightness"])
        for issue in found.get("flagged") or []:
            issues[issue] += 1
            if issues[issue] <= per_issue:
                score = (found.get("issues") or {}).get(issue, 0.0)
                flagged.append(
                    {
                        "source": doc["source"],
                        "issue": issue,
                        "score": score,
                        "message": f"{issue} {score:.2f} (threshold {ISSUE_THRESHOLDS[issue]})",
                        "thumbnail": _thumbnail(blobs, doc),
                    }
                )
    ranges = {"brightness": (0.0, 255.0)}
    return {
        "issues": dict(sorted(issues.items())),
        "flagged": flagged,
        "histograms": {
            name: histogram(np.asarray(values, dtype=np.float32), value_range=ranges.get(name))
            for name, values in columns.items()
        },
    }


def _thumbnail(blobs: BlobStore, doc: dict[str, Any]) -> str | None:
    key = (doc.get("validation") or {}).get("thumbnail_key")
    if not key or not blobs.exists(key):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(blobs.get_bytes(key)).decode()


def _rejects(store: MetadataStore, blobs: BlobStore, dataset: str, limit: int) -> list[dict]:
    rejects = []
    for reason in store.count_by(dataset, "reject_reason"):
        docs = store.iter_images(
            dataset,
            fields=("source", "reject_message", "validation"),
            extra={"reject_reason": eq(reason)},
        )
        rejects.extend(
            {
                "source": doc["source"],
                "reason": reason,
                "message": doc.get("reject_message") or "",
                "thumbnail": _thumbnail(blobs, doc),
            }
            for doc in islice(docs, limit)
        )
    return rejects


def _clusters(store: MetadataStore, blobs: BlobStore, dataset: str, limit: int) -> list[dict]:
    keepers: list[str] = []
    for doc in store.iter_images(dataset, status="duplicate", fields=("cluster",)):
        if doc["cluster"] not in keepers:
            keepers.append(doc["cluster"])
        if len(keepers) >= limit:
            break
    clusters = []
    for keeper in keepers:
        members = list(
            store.iter_images(
                dataset,
                fields=(
                    "image_id",
                    "source",
                    "validation",
                    "distance",
                    "cluster_kind",
                    "evidence",
                ),
                extra={"cluster": eq(keeper)},
            )
        )
        clusters.append(
            {
                "cluster": keeper,
                "kind": "near"
                if any(m.get("cluster_kind") == "near" for m in members)
                else "exact",
                "members": [
                    {
                        "source": member["source"],
                        "kept": member["image_id"] == keeper,
                        "distance": member.get("distance") or 0,
                        "kind": member.get("cluster_kind"),
                        "evidence": member.get("evidence"),
                        "width": (member.get("validation") or {}).get("width"),
                        "height": (member.get("validation") or {}).get("height"),
                        "thumbnail": _thumbnail(blobs, member),
                    }
                    for member in sorted(members, key=lambda m: m["image_id"] != keeper)
                ],
            }
        )
    return clusters


def stop_with_report(
    store: MetadataStore,
    blobs: BlobStore,
    dataset: str,
    decision: dict[str, Any],
    result: AssetCheckResult | None = None,
) -> str:
    """Write the report of a run that a gate or strict validation is stopping; return its location.

    The report shows what the stages that ran saw, and `stopped_by` names the gate, the request
    field and the message, so the clusters or rejects that tripped it are there to look at.
    """
    stopped_by = {
        "gate": decision["gate"],
        "field": decision["field"],
        "message": result.description if result is not None else decision.get("message", ""),
    }
    drop_outputs_made_ahead(store, blobs, dataset)
    _, _, html_key = publish_report(store, blobs, dataset, ReportConfig(), stopped_by)
    return blobs.location(html_key)


def drop_outputs_made_ahead(store: MetadataStore, blobs: BlobStore, dataset: str) -> int:
    """Delete the outputs validation made ahead for images the transform did not keep (a
    duplicate, or every image of a run a gate stopped); returns how many images had some."""
    unkept = store.iter_images(
        dataset,
        fields=("image_id", "outputs"),
        extra={"status": {"$ne": "processed"}, "transform_key": {"$ne": None}},
    )

    def cleared() -> Iterator[tuple[str, dict[str, Any]]]:
        for doc in unkept:
            for output in doc.get("outputs") or []:
                blobs.delete(output["key"])
            yield doc["image_id"], {"outputs": None, "transform_key": None}

    return store.update_images(dataset, cleared())


@asset(
    partitions_def=datasets_partitions,
    io_manager_key="manifest_io_manager",
    retry_policy=METADATA_RETRY,
    group_name="dataset",
    kinds={"python", "html"},
)
def quality_report(
    context: AssetExecutionContext,
    config: ReportConfig,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
    tiered_storage: Manifest,
) -> Manifest:
    """The quality score, counts per stage and reason, histograms, rejects and duplicate clusters.

    Written as `reports/<request_id>/report.html` (one self-contained page, thumbnails inline) and
    `report.json` (the same figures, the field names of `PipelineMetrics`).
    """
    dataset = context.partition_key
    store, blob_store = metadata.store, blobs.store
    config = stage_config(context, "quality_report", config, store)
    started = start_stage(
        store, dataset, "quality_report", context.run.run_id, total=tiered_storage.count
    )
    report, json_key, html_key = publish_report(store, blob_store, dataset, config)
    location = blob_store.location(html_key)
    metrics = report["metrics"]
    context.add_output_metadata(
        {
            "report": MetadataValue.path(location),
            "report_json": MetadataValue.path(blob_store.location(json_key)),
            "quality_score": metrics["quality_score"],
            "metrics": MetadataValue.md(summary_table(metrics)),
        }
    )
    manifest = finish_stage(
        context,
        store,
        dataset=dataset,
        stage="quality_report",
        count=metrics["processed_images"],
        summary={"quality_score": metrics["quality_score"], "report": location},
        started=started,
        status="processed",
    )
    store.track_request(
        dataset,
        status="succeeded",
        report=location,
        output_dir=tiered_storage.summary.get("output_dir"),
        metrics=metrics,
    )
    return manifest
