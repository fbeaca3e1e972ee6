"""Validation: decode every image once, reject the unusable, score the rest, hash for dedup."""

from functools import partial

from dagster import (
    AssetCheckResult,
    DynamicOut,
    Failure,
    OpExecutionContext,
    Out,
    asset_check,
    graph_asset,
    op,
)

from dataset_assets.deployment import COORDINATION_STEP_TAGS, SHARD_STEP_TAGS
from dataset_assets.imaging.inspect import ValidationRules
from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import TransformConfig, ValidationConfig
from dataset_assets.stages.gates import gate, gate_result
from dataset_assets.stages.per_image import validate_image, validation_crashed
from dataset_assets.stages.policies import CPU_RETRY, METADATA_RETRY
from dataset_assets.stages.quality_report import stop_with_report
from dataset_assets.stages.raw_images import purge_rejected_originals
from dataset_assets.stages.request_settings import later_stage_config, stage_config
from dataset_assets.stages.sharding import Shard, process_shard, start_sharded_stage
from dataset_assets.stages.tracking import finish_stage
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource


def rules_from_config(config: ValidationConfig) -> ValidationRules:
    return ValidationRules(
        allowed_formats=frozenset(f.upper() for f in config.allowed_formats),
        min_width=config.min_width,
        min_height=config.min_height,
        max_width=config.max_width,
        max_height=config.max_height,
        max_pixels=config.max_pixels,
        min_aspect=config.min_aspect,
        max_aspect=config.max_aspect,
        multi_frame=config.multi_frame,
        target_mode=config.target_mode,
        hash_kind=config.hash_kind,
        drop_issues=frozenset(config.drop_issues),
    )


@op(out=DynamicOut(Shard), retry_policy=METADATA_RETRY, tags=COORDINATION_STEP_TAGS)
def plan_validation_shards(
    context: OpExecutionContext,
    config: ValidationConfig,
    metadata: MetadataStoreResource,
    raw_images: Manifest,
):
    """Split the ingested images into shards of about `images_per_shard`; when the run goes on
    to the transform, its settings travel with each shard so each file is read once."""
    store = metadata.store
    config = stage_config(context, "validated_images", config, store)
    transform = later_stage_config(context, "processed_images", store)
    yield from start_sharded_stage(
        context,
        store,
        "validated_images",
        config.model_dump(),
        raw_images.count,
        config.images_per_shard,
        ahead=transform.model_dump() if transform else None,
    )


@op(retry_policy=CPU_RETRY, tags=SHARD_STEP_TAGS)
def validate_shard(
    context: OpExecutionContext,
    shard: Shard,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
) -> dict[str, int]:
    """Validate the shard's images not validated yet: a retried shard resumes where it stopped."""
    config = ValidationConfig(**shard.settings)
    work = partial(
        validate_image,
        rules=rules_from_config(config),
        mode=config.mode,
        blobs=blobs.store,
        dataset=context.partition_key,
        transform=TransformConfig(**shard.ahead).plan if shard.ahead else None,
    )
    return process_shard(
        context,
        metadata.store,
        shard,
        stage="validated_images",
        fields=("source", "blob_key"),
        work=work,
        on_crash=validation_crashed,
        workers=config.workers,
        pool=config.pool,
    )


@op(
    out=Out(io_manager_key="manifest_io_manager"),
    retry_policy=METADATA_RETRY,
    tags=COORDINATION_STEP_TAGS,
)
def merge_validation(
    context: OpExecutionContext,
    metadata: MetadataStoreResource,
    blobs: BlobStoreResource,
    shard_counts: list[dict[str, int]],
) -> Manifest:
    """Count what validation decided and delete the originals of rejected files no image uses;
    in strict mode any reject fails the run, naming the files."""
    dataset = context.partition_key
    store = metadata.store
    stage = store.load_stage(dataset, "validated_images") or {}
    config = ValidationConfig(**stage.get("settings", {}))
    rejected = store.count_images(dataset, status="rejected")
    valid = store.count_images(dataset, status="valid")
    purged = purge_rejected_originals(store, blobs.store, dataset)
    if config.mode == "strict" and rejected:
        examples = [
            doc.get("reject_message") or doc["source"]
            for _, doc in zip(
                range(5),
                store.iter_images(dataset, status="rejected", fields=("source", "reject_message")),
                strict=False,
            )
        ]
        description = f"strict validation: {rejected} rejected image(s) in {dataset!r}: " + (
            "; ".join(examples)
        )
        decision = {"gate": "strict validation", "field": "validation_mode", "message": description}
        stop_with_report(store, blobs.store, dataset, decision)
        raise Failure(description=description, allow_retries=False)
    reasons = store.count_by(dataset, "reject_reason")
    total = valid + rejected
    ratio = round(rejected / total, 4) if total else 0.0
    summary = {
        "valid": valid,
        "invalid": rejected,
        "originals_purged": purged,
        "reported_only": store.count_images(
            dataset, status="valid", extra={"reject_reason": {"$ne": None}}
        )
        if config.mode == "report-only"
        else 0,
        "invalid_ratio": ratio,
        "gate": gate(
            "invalid_ratio",
            "validation.max_invalid_ratio",
            ratio,
            config.max_invalid_ratio,
            config.mode,
            nothing_left=valid == 0,
        ),
        "mode": config.mode,
        "reasons": reasons,
        "shards": len(shard_counts),
    }
    return finish_stage(
        context,
        store,
        dataset=dataset,
        stage="validated_images",
        count=valid,
        summary=summary,
        started=stage.get("started_at", 0.0),
        status="valid",
    )


@graph_asset(partitions_def=datasets_partitions, group_name="dataset")
def validated_images(raw_images: Manifest) -> Manifest:
    """Images that decode and meet the rules, each with quality scores, hashes and a thumbnail.

    Each image is decoded once, at the smallest scale that serves the checks, the perceptual hash
    and the thumbnail. Rejects keep their reason code and message in the metadata store.
    """
    shard_counts = plan_validation_shards(raw_images).map(validate_shard).collect()
    return merge_validation(shard_counts)


@asset_check(asset=validated_images, partitions_def=datasets_partitions, blocking=True)
def invalid_ratio(
    validated_images: Manifest, metadata: MetadataStoreResource, blobs: BlobStoreResource
) -> AssetCheckResult:
    """Warns, or in strict mode (or when `validation.max_invalid_ratio` is set) stops, a dataset
    whose share of rejected images is too high; a stopped run still writes its report."""
    summary = validated_images.summary
    decision = summary["gate"]
    reasons = sorted(
        ((count, reason) for reason, count in (summary.get("reasons") or {}).items() if reason),
        reverse=True,
    )
    total = summary["valid"] + summary["invalid"]
    result = gate_result(
        decision,
        f"{summary['invalid']} of {total} images rejected"
        + (": " + ", ".join(f"{reason} {count}" for count, reason in reasons) if reasons else ""),
    )
    if not decision["passed"] and decision["blocking"]:
        stop_with_report(metadata.store, blobs.store, validated_images.dataset, decision, result)
    return result
