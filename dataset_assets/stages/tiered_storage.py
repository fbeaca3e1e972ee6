"""Storage tiering: the finished dataset, its first images hot and the rest cold."""

import json

from dagster import AssetExecutionContext, asset

from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import TieringConfig
from dataset_assets.stages.policies import IO_RETRY
from dataset_assets.stages.tracking import finish_stage, start_stage
from dataset_assets.storage.resources import (
    BlobStoreResource,
    MetadataStoreResource,
    WorkspaceResource,
)
from dataset_assets.webdataset import WebDatasetWriter


@asset(
    partitions_def=datasets_partitions,
    io_manager_key="manifest_io_manager",
    retry_policy=IO_RETRY,
    group_name="dataset",
    kinds={"python"},
)
def tiered_storage(
    context: AssetExecutionContext,
    config: TieringConfig,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
    workspace: WorkspaceResource,
    labels: Manifest,
) -> Manifest:
    """The dataset in ImageFolder layout under `datasets/<request_id>/hot|cold/<label>/`.

    Images are taken in source-path order: the first `hot_storage_threshold` go to the hot tier,
    the rest to the cold tier (a colder storage class on S3). `manifest.jsonl` lists every output
    with its label, size, hashes and tier. With `webdataset_shard_size` the same images are also
    written as WebDataset tar shards under `webdataset/`. The layout is rebuilt on each run, so a
    re-run with another threshold leaves no stale copies.
    """
    dataset = context.partition_key
    store, blob_store = metadata.store, blobs.store
    started = start_stage(store, dataset, "tiered_storage", context.run.run_id)
    prefix = f"datasets/{dataset}"
    for folder in ("hot", "cold", "webdataset"):
        blob_store.delete_prefix(f"{prefix}/{folder}/")
    counts = {"hot": 0, "cold": 0, "files": 0}
    with workspace.step_dir(context.run.run_id, "tiered_storage") as scratch:
        shards = WebDatasetWriter(
            blob_store, f"{prefix}/webdataset", scratch, config.webdataset_shard_size
        )
        manifest_path = scratch / "manifest.jsonl"
        with open(manifest_path, "w") as manifest_file:
            changes = []
            for index, doc in enumerate(
                store.iter_images(
                    dataset,
                    status="processed",
                    fields=(
                        "image_id",
                        "source",
                        "origin",
                        "sha256",
                        "validation",
                        "outputs",
                        "label",
                    ),
                )
            ):
                tier = "hot" if index < config.hot_storage_threshold else "cold"
                counts[tier] += 1
                keys = []
                for output in doc.get("outputs") or []:
                    key = blob_store.copy(output["key"], f"{prefix}/{tier}/{output['name']}", tier)
                    keys.append(key)
                    line = {
                        "key": f"{tier}/{output['name']}",
                        "label": doc.get("label"),
                        "source": doc["source"],
                        **({"url": doc["origin"]} if doc.get("origin") else {}),
                        "width": output["width"],
                        "height": output["height"],
                        "format": output["format"],
                        "sha256": doc.get("sha256"),
                        "phash": (doc.get("validation") or {}).get("phash"),
                        "tier": tier,
                    }
                    manifest_file.write(json.dumps(line) + "\n")
                    if config.webdataset_shard_size:
                        stem, extension = output["name"].rsplit(".", 1)
                        shards.add(
                            stem.replace("/", "__").replace(".", "_"),
                            blob_store.get_bytes(key),
                            extension,
                            line["label"] or "",
                            line,
                        )
                counts["files"] += len(keys)
                changes.append((doc["image_id"], {"tier": tier, "final_keys": keys}))
                if len(changes) >= 500:
                    store.update_images(dataset, changes)
                    changes = []
            store.update_images(dataset, changes)
        blob_store.put_file(f"{prefix}/manifest.jsonl", manifest_path)
        counts["webdataset_shards"] = len(shards.close())
    return finish_stage(
        context,
        store,
        dataset=dataset,
        stage="tiered_storage",
        count=counts["hot"] + counts["cold"],
        summary={
            **counts,
            "hot_storage_threshold": config.hot_storage_threshold,
            "output_dir": blob_store.location(prefix),
        },
        started=started,
        status="processed",
    )
