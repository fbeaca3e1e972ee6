"""The per-image work of the sharded stages: plain functions a worker process can run.

Each takes an image's document, reads the image's bytes from the blob store, writes what it
produces there and returns the fields to set on the document. Nothing here imports Dagster, so a
worker process starts with only the imaging code; the stage modules bind the settings with
`functools.partial` and hand the function to `pools.run_each`.
"""

from io import BytesIO
from typing import Any

from PIL import Image, ImageOps

from dataset_assets.imaging.inspect import (
    ISSUE_THRESHOLDS,
    Inspection,
    ValidationRules,
    flatten,
    inspect_image,
)
from dataset_assets.operations import OperationPipeline, encode_image, format_extension
from dataset_assets.operations.base import derive_seed
from dataset_assets.operations.modes import working_image
from dataset_assets.storage.blobs import BlobStore

UNDECODABLE = frozenset(
    {"empty_file", "file_too_large", "not_an_image", "decompression_bomb", "truncated", "corrupt"}
)
"""Reasons that drop an image even in report-only mode: nothing downstream could read it."""

ROTATED = {5, 6, 7, 8}
"""EXIF orientations that swap width and height."""

WORKER_DIED = "the worker process died on this file twice (a crash in an image decoder)"


def validate_image(
    doc: dict[str, Any], *, rules: ValidationRules, mode: str, blobs: BlobStore, dataset: str
) -> dict[str, Any]:
    """The record fields for one image; its thumbnail goes to the blob store for the report."""
    found: Inspection = inspect_image(blobs.get_bytes(doc["blob_key"]), doc["source"], rules)
    thumbnail_key = None
    if found.thumbnail:
        thumbnail_key = blobs.put_bytes(
            f"thumbnails/{dataset}/{doc['image_id']}.jpg", found.thumbnail
        )
    fields: dict[str, Any] = {
        "validation": {
            "format": found.format,
            "width": found.width,
            "height": found.height,
            "mode": found.mode,
            "frames": found.frames,
            "exif_rotated": found.exif_rotated,
            "phash": found.perceptual_hash,
            "pixel_hash": found.pixel_hash,
            "mirror_hash": found.mirror_hash,
            "gradient_hash": found.gradient_hash,
            "window_hashes": list(found.window_hashes),
            "encoding_quality": found.encoding_quality,
            "issues": dict(found.issues),
            "flagged": list(found.flagged),
            "brightness": found.brightness,
            "sharpness": found.sharpness,
            "thumbnail_key": thumbnail_key,
            "target_mode": rules.target_mode,
        },
        "status": "valid",
    }
    if not found.ok:
        fields.update(
            reject_reason=found.reason, reject_message=found.message, reject_stage="validation"
        )
    elif dropped := [issue for issue in found.flagged if issue in rules.drop_issues]:
        fields.update(
            reject_reason="quality_issue",
            reject_message=f"{doc['source']}: "
            + ", ".join(
                f"{issue} {found.issues[issue]:.2f} >= {ISSUE_THRESHOLDS[issue]}"
                for issue in dropped
            )
            + " (validation.drop_issues)",
            reject_stage="validation",
        )
    reason = fields.get("reject_reason")
    if reason and (mode != "report-only" or reason in UNDECODABLE):
        fields["status"] = "rejected"
    return fields


def validation_crashed(doc: dict[str, Any]) -> dict[str, Any]:
    """The record of an image whose worker died twice on it: rejected as corrupt."""
    return {
        "status": "rejected",
        "reject_reason": "corrupt",
        "reject_message": f"{doc['source']}: {WORKER_DIED}",
        "reject_stage": "validation",
    }


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


def output_format(configured: str, source_format: str | None) -> str:
    if configured != "source":
        return configured
    return {"JPEG": "jpeg", "WEBP": "webp"}.get(source_format or "", "png")


def transform_image(
    doc: dict[str, Any],
    *,
    pipeline: OperationPipeline,
    seed: int,
    output: str,
    quality: int,
    blobs: BlobStore,
    dataset: str,
) -> dict[str, Any]:
    """Run the pipeline on one image and store every output; a failure is recorded, not raised."""
    found = doc.get("validation") or {}
    data = blobs.get_bytes(doc["blob_key"])
    try:
        image, source_size = decode(data, pipeline, found.get("target_mode", "RGB"))
        variants = pipeline.apply(
            image, derive_seed(seed, doc["image_id"]), source_size=source_size
        )
    except Exception as error:
        return transform_failed(doc, f"{type(error).__name__}: {error}")
    outputs = []
    for variant in variants:
        fmt = variant.format or output_format(output, found.get("format"))
        name = "_".join(part for part in (doc["image_id"], variant.suffix) if part)
        key = f"processed/{dataset}/{pipeline.fingerprint}/{name}.{format_extension(fmt)}"
        blobs.put_bytes(key, encode_image(variant.image, fmt, variant.quality or quality))
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


def transform_failed(doc: dict[str, Any], cause: str) -> dict[str, Any]:
    return {
        "status": "failed",
        "reject_reason": "transform_error",
        "reject_message": f"{doc['source']}: {cause}",
        "reject_stage": "transform",
    }


def transform_crashed(doc: dict[str, Any]) -> dict[str, Any]:
    """The record of an image whose worker died twice on it: failed, like any transform error."""
    return transform_failed(doc, WORKER_DIED)
