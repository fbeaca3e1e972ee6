"""Labels: one class per image, from folder names, a manifest file or a file-name pattern."""

import csv
import json
import re
from collections import Counter
from pathlib import PurePosixPath
from typing import Any

from dagster import AssetExecutionContext, Failure, asset

from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import LabelConfig, compile_label_pattern
from dataset_assets.stages.policies import METADATA_RETRY
from dataset_assets.stages.progress import StageProgress
from dataset_assets.stages.request_settings import stage_config
from dataset_assets.stages.tracking import finish_stage, start_stage
from dataset_assets.storage.blobs import BlobStore
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource

UNLABELLED = "unlabelled"
SAFE_LABEL = re.compile(r"[^\w.-]+")


class LabelSource:
    """Turns an image's source path into its label, as the request's `labels` settings say."""

    def __init__(self, config: LabelConfig, blobs: BlobStore, dataset: str):
        self.config = config
        self.pattern = compile_label_pattern(config.pattern) if config.pattern else None
        self.table = self._read_manifest(blobs, dataset) if config.source == "manifest" else {}

    def _read_manifest(self, blobs: BlobStore, dataset: str) -> dict[str, str]:
        key = f"sidecars/{dataset}/{self.config.manifest}"
        if not blobs.exists(key):
            raise Failure(
                description=f"labels.manifest {self.config.manifest!r} is not in the dataset: "
                "put the CSV or JSON file inside the source folder or archive",
                allow_retries=False,
            )
        text = blobs.get_bytes(key).decode("utf-8-sig")
        if self.config.manifest.lower().endswith(".json"):
            data = json.loads(text)
            if isinstance(data, list):
                return {str(item["image"]): str(item["label"]) for item in data}
            return {str(name): str(label) for name, label in data.items()}
        rows = [row for row in csv.reader(text.splitlines()) if len(row) >= 2]
        if rows and [cell.strip().lower() for cell in rows[0][:2]] == ["image", "label"]:
            rows = rows[1:]
        return {row[0].strip(): row[1].strip() for row in rows}

    def label(self, source: str) -> str:
        path = PurePosixPath(source)
        if self.config.source == "folder":
            found = path.parent.name
        elif self.config.source == "manifest":
            found = self.table.get(source) or self.table.get(path.name, "")
        elif self.config.source == "pattern" and self.pattern:
            match = self.pattern.search(path.name)
            found = match.group("label") if match else ""
        else:
            found = ""
        return SAFE_LABEL.sub("_", found).strip("._") or UNLABELLED


def output_name(label: str, source: str, output: dict[str, Any]) -> str:
    """The image's path in the finished dataset: `<label>/<stem>_<id>[_<variant>].<ext>`."""
    stem = SAFE_LABEL.sub("_", PurePosixPath(source).stem).strip("._")[:60] or "image"
    image_id = output["key"].rsplit("/", 1)[-1].split("_", 1)[0].split(".", 1)[0]
    suffix = f"_{output['suffix']}" if output["suffix"] else ""
    extension = output["key"].rsplit(".", 1)[-1]
    return f"{label}/{stem}_{image_id[:8]}{suffix}.{extension}"


@asset(
    partitions_def=datasets_partitions,
    io_manager_key="manifest_io_manager",
    retry_policy=METADATA_RETRY,
    group_name="dataset",
    kinds={"python"},
)
def labels(
    context: AssetExecutionContext,
    config: LabelConfig,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
    processed_images: Manifest,
) -> Manifest:
    """A label per output image, and each output's path in the dataset (`<label>/<name>`).

    Labels are recorded on the image records; the label files (`labels.csv`, `labels.json`, one
    `.txt` per image, as `labels.formats` asks) are written with the dataset by `tiered_storage`,
    which knows each image's final path. Class counts and the imbalance (largest class / smallest
    class) show in the UI and in the report.
    """
    dataset = context.partition_key
    store = metadata.store
    config = stage_config(context, "labels", config, store)
    total = store.count_images(dataset, status="processed")
    started = start_stage(store, dataset, "labels", context.run.run_id, total=total)
    progress = StageProgress(store, dataset, "labels", context.run.run_id, total)
    source = LabelSource(config, blobs.store, dataset)
    counts: Counter[str] = Counter()
    changes = []
    for doc in progress.counted(
        store.iter_images(dataset, status="processed", fields=("image_id", "source", "outputs"))
    ):
        label = source.label(doc["source"])
        counts[label] += 1
        outputs = [
            {**output, "name": output_name(label, doc["source"], output)}
            for output in doc.get("outputs") or []
        ]
        changes.append((doc["image_id"], {"label": label, "outputs": outputs}))
        if len(changes) >= 500:
            store.update_images(dataset, changes)
            changes = []
    store.update_images(dataset, changes)
    labelled = sum(n for label, n in counts.items() if label != UNLABELLED)
    imbalance = round(max(counts.values()) / min(counts.values()), 3) if counts else None
    return finish_stage(
        context,
        store,
        dataset=dataset,
        stage="labels",
        count=labelled,
        summary={
            "labelled": labelled,
            "unlabelled": counts.get(UNLABELLED, 0),
            "classes": dict(sorted(counts.items())),
            "imbalance": imbalance,
            "formats": config.formats,
        },
        started=started,
        status="processed",
    )
