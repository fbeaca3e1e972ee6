"""Transform: the request's operations, in order, on every kept image, sharded across workers."""

from functools import partial

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    DynamicOut,
    Failure,
    OpExecutionContext,
    Out,
    asset_check,
    graph_asset,
    op,
)

from dataset_assets.deployment import COORDINATION_STEP_TAGS, SHARD_STEP_TAGS
from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import TransformConfig
from dataset_assets.stages.per_image import TransformPlan, transform_crashed, transform_image
from dataset_assets.stages.policies import CPU_RETRY, METADATA_RETRY
from dataset_assets.stages.quality_report import drop_outputs_made_ahead, stop_with_report
from dataset_assets.stages.request_settings import stage_config
from dataset_assets.stages.sharding import Shard, process_shard, start_sharded_stage
from dataset_assets.stages.tracking import WAITING_STATUS, finish_stage
from dataset_assets.storage.metadata import MetadataStore, eq
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource


@op(out=DynamicOut(Shard), retry_policy=METADATA_RETRY, tags=COORDINATION_STEP_TAGS)
def plan_transform_shards(
    context: OpExecutionContext,
    config: TransformConfig,
    metadata: MetadataStoreResource,
    deduplicated_images: Manifest,
):
    """Split the kept images into shards of about `images_per_shard`."""
    store = metadata.store
    config = stage_config(context, "processed_images", config, store)
    yield from start_sharded_stage(
        context,
        store,
        "processed_images",
        config.model_dump(),
        deduplicated_images.count,
        config.images_per_shard,
    )


@op(retry_policy=CPU_RETRY, tags=SHARD_STEP_TAGS)
def transform_shard(
    context: OpExecutionContext,
    shard: Shard,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
) -> dict[str, int]:
    """Transform the shard's images not done yet: a retried shard resumes where it stopped."""
    config = TransformConfig(**shard.settings)
    plan = config.plan
    work = partial(transform_image, plan=plan, blobs=blobs.store, dataset=context.partition_key)
    done_in_validation = keep_validation_outputs(context, metadata.store, shard, plan)
    counts = process_shard(
        context,
        metadata.store,
        shard,
        stage="processed_images",
        fields=("source", "blob_key", "validation"),
        work=work,
        on_crash=transform_crashed,
        workers=config.workers,
        pool=config.pool,
    )
    return {
        **counts,
        "processed": counts.get("processed", 0) + done_in_validation,
        "made_in_validation": done_in_validation,
    }


def keep_validation_outputs(
    context: OpExecutionContext, store: MetadataStore, shard: Shard, plan: TransformPlan
) -> int:
    """Mark processed the shard's images that validation already transformed with this very
    plan; returns how many."""
    reused = store.iter_images(
        context.partition_key,
        status=WAITING_STATUS["processed_images"],
        bucket_range=(shard.low, shard.high),
        fields=("image_id",),
        extra={"transform_key": eq(plan.key)},
    )
    changes = (
        (
            doc["image_id"],
            {
                "status": "processed",
                "ops_fingerprint": plan.pipeline.fingerprint,
                "transform_key": None,
            },
        )
        for doc in reused
    )
    return store.update_images(context.partition_key, changes)


@op(
    out=Out(io_manager_key="manifest_io_manager"),
    retry_policy=METADATA_RETRY,
    tags=COORDINATION_STEP_TAGS,
)
def merge_transform(
    context: OpExecutionContext,
    metadata: MetadataStoreResource,
    blobs: BlobStoreResource,
    shard_counts: list[dict[str, int]],
) -> Manifest:
    """Count the outputs; a run where every image failed to transform fails with the first cause.

    Outputs that validation made ahead for images the run did not keep (duplicates) are deleted.
    """
    dataset = context.partition_key
    store = metadata.store
    dropped = drop_outputs_made_ahead(store, blobs.store, dataset)
    stage = store.load_stage(dataset, "processed_images") or {}
    config = TransformConfig(**stage.get("settings", {}))
    processed = store.count_images(dataset, status="processed")
    failed = store.count_images(dataset, status="failed")
    if failed and not processed:
        first = next(store.iter_images(dataset, status="failed", fields=("reject_message",)))
        raise Failure(
            description=f"every image of {dataset!r} failed to transform, e.g. "
            f"{first['reject_message']}",
            allow_retries=False,
        )
    outputs = sum(
        len(doc.get("outputs") or [])
        for doc in store.iter_images(dataset, status="processed", fields=("outputs",))
    )
    return finish_stage(
        context,
        store,
        dataset=dataset,
        stage="processed_images",
        count=processed,
        summary={
            "processed": processed,
            "failed": failed,
            "outputs": outputs,
            "made_in_validation": sum(
                counts.get("made_in_validation", 0) for counts in shard_counts
            ),
            "outputs_dropped": dropped,
            "operations": config.pipeline.to_spec(),
            "fingerprint": config.pipeline.fingerprint,
            "shards": len(shard_counts),
        },
        started=stage.get("started_at", 0.0),
        status="processed",
    )


@graph_asset(partitions_def=datasets_partitions, group_name="dataset")
def processed_images(deduplicated_images: Manifest) -> Manifest:
    """Every kept image after the request's operations, stored under the operations' fingerprint.

    Work fans out over coarse shards (one Dagster step each: a pod on Kubernetes) with a thread
    pool inside each shard. JPEGs are decoded at reduced scale when the first operation downscales.
    """
    shard_counts = plan_transform_shards(deduplicated_images).map(transform_shard).collect()
    return merge_transform(shard_counts)


@asset_check(asset=processed_images, partitions_def=datasets_partitions, blocking=True)
def processed_images_not_empty(
    processed_images: Manifest, metadata: MetadataStoreResource, blobs: BlobStoreResource
) -> AssetCheckResult:
    """A dataset with no output image must not flow on to labels and storage; its report is
    written on the way out."""
    result = AssetCheckResult(
        passed=processed_images.count > 0,
        severity=AssetCheckSeverity.ERROR,
        description=f"{processed_images.count} images processed",
        metadata={"processed": processed_images.count},
    )
    if not result.passed:
        decision = {"gate": "processed_images_not_empty", "field": "operations"}
        stop_with_report(metadata.store, blobs.store, processed_images.dataset, decision, result)
    return result
