"""Labels: one class per image, from folder names, a manifest file or a file-name pattern."""

import csv
import json
import re
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any

from dagster import AssetExecutionContext, Failure, asset

from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import LabelConfig
from dataset_assets.stages.policies import METADATA_RETRY
from dataset_assets.stages.tracking import finish_stage, start_stage
from dataset_assets.storage.blobs import BlobStore
from dataset_assets.storage.resources import (
    BlobStoreResource,
    MetadataStoreResource,
    WorkspaceResource,
)

UNLABELLED = "unlabelled"
SAFE_LABEL = re.compile(r"[^\w.-]+")


class LabelSource:
    """Turns an image's source path into its label, as the request's `labels` settings say."""

    def __init__(self, config: LabelConfig, blobs: BlobStore, dataset: str):
        self.config = config
        self.pattern = re.compile(config.pattern) if config.pattern else None
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
    kinds={"python", "json", "csv"},
)
def labels(
    context: AssetExecutionContext,
    config: LabelConfig,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
    workspace: WorkspaceResource,
    processed_images: Manifest,
) -> Manifest:
    """A label per output image, written as labels.json, labels.csv and one .txt per image.

    The label files sit beside the dataset under `datasets/<request_id>/`; class counts and the
    imbalance (largest class / smallest class) show in the UI and in the report.
    """
    dataset = context.partition_key
    store, blob_store = metadata.store, blobs.store
    started = start_stage(store, dataset, "labels", context.run.run_id)
    source = LabelSource(config, blob_store, dataset)
    counts: Counter[str] = Counter()
    prefix = f"datasets/{dataset}"
    blob_store.delete_prefix(f"{prefix}/labels/")
    with workspace.step_dir(context.run.run_id, "labels") as scratch:
        json_path, csv_path = scratch / "labels.json", scratch / "labels.csv"
        with open(json_path, "w") as json_file, open(csv_path, "w", newline="") as csv_file:
            writer = csv.writer(csv_file)
            writer.writerow(["image", "label", "source"])
            json_file.write("{")
            first = True
            changes = []
            for doc in store.iter_images(
                dataset, status="processed", fields=("image_id", "source", "outputs")
            ):
                label = source.label(doc["source"])
                counts[label] += 1
                outputs = []
                for output in doc.get("outputs") or []:
                    name = output_name(label, doc["source"], output)
                    outputs.append({**output, "name": name})
                    writer.writerow([name, label, doc["source"]])
                    json_file.write(
                        ("" if first else ",") + f"\n{json.dumps(name)}: {json.dumps(label)}"
                    )
                    first = False
                    if "txt" in config.formats:
                        blob_store.put_bytes(
                            f"{prefix}/labels/{name.rsplit('.', 1)[0]}.txt", f"{label}\n".encode()
                        )
                changes.append((doc["image_id"], {"label": label, "outputs": outputs}))
                if len(changes) >= 500:
                    store.update_images(dataset, changes)
                    changes = []
            store.update_images(dataset, changes)
            json_file.write("\n}\n")
        written = _publish(blob_store, prefix, config.formats, json_path, csv_path)
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
            "files": written,
        },
        started=started,
        status="processed",
    )


def _publish(
    blobs: BlobStore, prefix: str, formats: list[str], json_path: Path, csv_path: Path
) -> list[str]:
    written = []
    if "json" in formats:
        written.append(blobs.put_file(f"{prefix}/labels.json", json_path))
    if "csv" in formats:
        written.append(blobs.put_file(f"{prefix}/labels.csv", csv_path))
    return written
