"""Transform: the request's operations, in order, on every kept image, sharded across workers."""

from io import BytesIO
from typing import Any

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
from PIL import Image, ImageOps

from dataset_assets.deployment import COORDINATION_STEP_TAGS, SHARD_STEP_TAGS
from dataset_assets.imaging.inspect import flatten
from dataset_assets.manifest import Manifest
from dataset_assets.operations import OperationPipeline, encode_image, format_extension
from dataset_assets.operations.base import derive_seed
from dataset_assets.operations.modes import working_image
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import TransformConfig
from dataset_assets.stages.policies import CPU_RETRY, METADATA_RETRY
from dataset_assets.stages.quality_report import stop_with_report
from dataset_assets.stages.request_settings import stage_config
from dataset_assets.stages.sharding import Shard, process_shard, start_sharded_stage
from dataset_assets.stages.tracking import finish_stage
from dataset_assets.storage.blobs import BlobStore
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource

ROTATED = {5, 6, 7, 8}
"""EXIF orientations that swap width and height."""


def decode(
    data: bytes, pipeline: OperationPipeline, target_mode: str
) -> tuple[Image.Image, tuple[int, int] | None]:
    """Decode for the pipeline: JPEGs straight at a reduced scale when it starts by downscaling.

    Modes are normalised exactly as validation did (16-bit scaled, transparency on white), so
    the hashes and the outputs describe the same pixels. Returns the oriented image and, when
    draft mode shrank it, the full size it came from.
    """
    image = Image.open(BytesIO(data))
    source_size = None
    if image.format == "JPEG":
        width, height = image.size
        rotated = image.getexif().get(0x0112) in ROTATED
        oriented = (height, width) if rotated else (width, height)
        size = pipeline.draft_size(*oriented)
        if size:
            image.draft(image.mode, size[::-1] if rotated else size)
            source_size = oriented
    image = ImageOps.exif_transpose(image)
    if target_mode == "keep":
        return working_image(image), source_size
    image = flatten(image)
    return (image if image.mode == target_mode else image.convert(target_mode)), source_size


def output_format(config: TransformConfig, source_format: str | None) -> str:
    if config.output_format != "source":
        return config.output_format
    return {"JPEG": "jpeg", "WEBP": "webp"}.get(source_format or "", "png")


def transform_image(
    doc: dict[str, Any],
    data: bytes,
    pipeline: OperationPipeline,
    config: TransformConfig,
    blobs: BlobStore,
    dataset: str,
) -> dict[str, Any]:
    """Run the pipeline on one image and store every output; a failure is recorded, not raised."""
    found = doc.get("validation") or {}
    try:
        image, source_size = decode(data, pipeline, found.get("target_mode", "RGB"))
        seed = derive_seed(config.seed, doc["image_id"])
        variants = pipeline.apply(image, seed, source_size=source_size)
    except Exception as error:
        return {
            "status": "failed",
            "reject_reason": "transform_error",
            "reject_message": f"{doc['source']}: {type(error).__name__}: {error}",
            "reject_stage": "transform",
        }
    outputs = []
    for variant in variants:
        fmt = variant.format or output_format(config, found.get("format"))
        name = "_".join(part for part in (doc["image_id"], variant.suffix) if part)
        key = f"processed/{dataset}/{pipeline.fingerprint}/{name}.{format_extension(fmt)}"
        blobs.put_bytes(key, encode_image(variant.image, fmt, variant.quality or config.quality))
        outputs.append(
            {
                "key": key,
                "suffix": variant.suffix,
                "width": variant.image.width,
                "height": variant.image.height,
                "mode": variant.image.mode,
                "format": fmt,
                "seed": variant.seed,
            }
        )
    return {"status": "processed", "outputs": outputs, "ops_fingerprint": pipeline.fingerprint}


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
    dataset = context.partition_key
    config = TransformConfig(**shard.settings)
    pipeline = config.pipeline
    blob_store = blobs.store

    def work(doc: dict[str, Any]) -> dict[str, Any]:
        data = blob_store.get_bytes(doc["blob_key"])
        return transform_image(doc, data, pipeline, config, blob_store, dataset)

    return process_shard(
        context,
        metadata.store,
        shard,
        stage="processed_images",
        fields=("source", "blob_key", "validation"),
        work=work,
        workers=config.workers,
    )


@op(
    out=Out(io_manager_key="manifest_io_manager"),
    retry_policy=METADATA_RETRY,
    tags=COORDINATION_STEP_TAGS,
)
def merge_transform(
    context: OpExecutionContext,
    metadata: MetadataStoreResource,
    shard_counts: list[dict[str, int]],
) -> Manifest:
    """Count the outputs; a run where every image failed to transform fails with the first cause."""
    dataset = context.partition_key
    store = metadata.store
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
