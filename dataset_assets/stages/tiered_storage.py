"""Storage tiering: the finished dataset, first images hot and the rest cold, in every format."""

from functools import partial
from pathlib import Path

from dagster import AssetExecutionContext, asset

from dataset_assets.formats.card import dataset_card
from dataset_assets.formats.jsonlines import ManifestWriter
from dataset_assets.formats.label_files import LabelFilesWriter
from dataset_assets.formats.samples import FormatWriter, Sample, image_record
from dataset_assets.formats.webdataset import WebDatasetWriter
from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.report.metrics import dataset_metrics, stages_by_name
from dataset_assets.request import TieringConfig
from dataset_assets.stages.policies import IO_RETRY
from dataset_assets.stages.progress import StageProgress
from dataset_assets.stages.request_settings import stage_config
from dataset_assets.stages.tracking import finish_stage, start_stage
from dataset_assets.storage.blobs import BlobStore
from dataset_assets.storage.resources import (
    BlobStoreResource,
    MetadataStoreResource,
    WorkspaceResource,
)

IMAGE_FIELDS = (
    "image_id",
    "source",
    "origin",
    "caption",
    "sha256",
    "validation",
    "outputs",
    "label",
    "cluster",
)


def _writers(
    blobs: BlobStore, prefix: str, scratch: Path, config: TieringConfig, labels: Manifest
) -> list[FormatWriter]:
    """One writer per output format the request asks for; the manifests are always written."""
    writers: list[FormatWriter] = [
        ManifestWriter(blobs, prefix, scratch),
        LabelFilesWriter(blobs, prefix, scratch, labels.summary.get("formats", [])),
    ]
    if config.webdataset_shard_size:
        classes = list(labels.summary.get("classes", {}))
        writers.append(
            WebDatasetWriter(
                blobs, f"{prefix}/webdataset", scratch, config.webdataset_shard_size, classes
            )
        )
    if config.parquet_shard_rows:
        from dataset_assets.formats.parquet import ParquetWriter  # pyarrow only when asked for

        rows = config.parquet_shard_rows
        writers.append(ParquetWriter(blobs, f"{prefix}/parquet", scratch, rows))
    return writers


@asset(
    partitions_def=datasets_partitions,
    io_manager_key="manifest_io_manager",
    retry_policy=IO_RETRY,
    group_name="dataset",
    kinds={"python", "json", "csv"},
)
def tiered_storage(
    context: AssetExecutionContext,
    config: TieringConfig,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
    workspace: WorkspaceResource,
    labels: Manifest,
) -> Manifest:
    """The dataset under `datasets/<request_id>/`, in the layouts training libraries load as is.

    Images are taken in source-path order: the first `hot_storage_threshold` go to `hot/<label>/`,
    the rest to `cold/<label>/` (a colder storage class on S3), so each tier is a torchvision
    ImageFolder tree with a Hugging Face `metadata.jsonl`. Beside them: `manifest.jsonl` (every
    image with its label, size, hashes, quality scores and tier), the label files
    (`labels.csv`, `labels.json`, `labels/<image path>.txt`), WebDataset shards with
    `webdataset_shard_size`, Parquet shards with `parquet_shard_rows`, and a dataset card
    (`README.md`). Every path in them resolves from the dataset root. The layout is rebuilt on
    each run, so a re-run with another threshold leaves no stale copies.
    """
    dataset = context.partition_key
    store, blob_store = metadata.store, blobs.store
    config = stage_config(context, "tiered_storage", config, store)
    total = store.count_images(dataset, status="processed")
    started = start_stage(store, dataset, "tiered_storage", context.run.run_id, total=total)
    progress = StageProgress(store, dataset, "tiered_storage", context.run.run_id, total)
    prefix = f"datasets/{dataset}"
    blob_store.delete_prefix(f"{prefix}/")
    tiers = {"hot": 0, "cold": 0}
    files = 0
    with workspace.step_dir(context.run.run_id, "tiered_storage") as scratch:
        writers = _writers(blob_store, prefix, scratch, config, labels)
        changes = []
        for index, doc in enumerate(
            progress.counted(store.iter_images(dataset, status="processed", fields=IMAGE_FIELDS))
        ):
            tier = "hot" if index < config.hot_storage_threshold else "cold"
            tiers[tier] += 1
            keys = []
            for output in doc.get("outputs") or []:
                record = image_record(doc, output, tier)
                key = blob_store.copy(output["key"], f"{prefix}/{record['file_name']}", tier)
                keys.append(key)
                sample = Sample(record, partial(blob_store.get_bytes, key))
                for writer in writers:
                    writer.add(sample)
            files += len(keys)
            changes.append((doc["image_id"], {"tier": tier, "final_keys": keys}))
            if len(changes) >= 500:
                store.update_images(dataset, changes)
                changes = []
        store.update_images(dataset, changes)
        written = [key[len(prefix) + 1 :] for writer in writers for key in writer.close()]
    card = dataset_card(
        dataset,
        {**dataset_metrics(store, dataset, stages_by_name(store, dataset)), **tiers},
        labels.summary.get("classes", {}),
        (store.get_request(dataset) or {}).get("request") or {},
        tiers,
        [*written, *(f"{tier}/" for tier, count in tiers.items() if count)],
    )
    blob_store.put_bytes(f"{prefix}/README.md", card.encode())
    return finish_stage(
        context,
        store,
        dataset=dataset,
        stage="tiered_storage",
        count=tiers["hot"] + tiers["cold"],
        summary={
            **tiers,
            "files": files,
            "written": sorted({name.split("/", 1)[0] for name in written}),
            "hot_storage_threshold": config.hot_storage_threshold,
            "output_dir": blob_store.location(prefix),
        },
        started=started,
        status="processed",
    )
