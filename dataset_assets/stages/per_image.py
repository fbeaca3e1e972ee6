"""The per-image work of the sharded stages: plain functions a worker process can run.

Each takes an image's document, reads the image's bytes from the blob store, writes what it
produces there and returns the fields to set on the document. Nothing here imports Dagster, so a
worker process starts with only the imaging code; the stage modules bind the settings with
`functools.partial` and hand the function to `pools.run_each`.
"""

import hashlib
import json
from dataclasses import dataclass
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


@dataclass(frozen=True)
class TransformPlan:
    """What the transform does to each image: the operations and how outputs are encoded."""

    pipeline: OperationPipeline
    seed: int
    output_format: str
    quality: int

    @property
    def key(self) -> str:
        """Names the outputs of this plan. An image's `transform_key` marks outputs validation
        made ahead with this plan, until the transform stage takes or replaces them."""
        spec = [self.pipeline.to_spec(), self.seed, self.output_format, self.quality]
        return hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:16]


WORKER_DIED = "the worker process died on this file twice (a crash in an image decoder)"


def validate_image(
    doc: dict[str, Any],
    *,
    rules: ValidationRules,
    mode: str,
    blobs: BlobStore,
    dataset: str,
    transform: TransformPlan | None = None,
) -> dict[str, Any]:
    """The record fields for one image; its thumbnail goes to the blob store for the report.

    With `transform` (the run's transform plan, when the run goes on to the transform), every
    accepted image is transformed in the same pass, from the bytes already read (see
    `transform_input`); the transform stage then keeps those outputs instead of reading the file
    again.
    """
    data = blobs.get_bytes(doc["blob_key"])
    found: Inspection = inspect_image(data, doc["source"], rules)
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
        "transform_key": None,
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
    if transform and not reason:
        try:
            image, source = transform_input(data, found, transform, rules.target_mode)
        except Exception:
            return fields  # the transform stage decodes it again and records why it fails
        done = transform_pixels(doc, image, source, found.format, transform, blobs, dataset)
        if done["status"] == "processed":
            fields.update(outputs=done["outputs"], transform_key=transform.key)
    return fields


def transform_input(
    data: bytes, found: Inspection, plan: TransformPlan, target_mode: str
) -> tuple[Image.Image, tuple[int, int] | None]:
    """What `decode` gives the transform, from validation's pixels when they are the very ones it
    would decode (decoded once), else decoded again from `data` (read once either way)."""
    if not _same_decode(data, found, plan):
        return decode(data, plan.pipeline, target_mode)
    source_size = (found.width, found.height)
    drafted = plan.pipeline.draft_size(*source_size) is not None
    return pipeline_input(found.decoded, target_mode), source_size if drafted else None


def _same_decode(data: bytes, found: Inspection, transform: TransformPlan) -> bool:
    """Whether the transform would decode the file to the very pixels validation holds: an
    upright image (no EXIF rotation) at the same JPEG draft scale, or any other format."""
    if found.exif_rotated or found.decoded is None:
        return False
    if found.format != "JPEG":
        return found.decoded.size == (found.width, found.height)
    size = transform.pipeline.draft_size(found.width, found.height)
    with Image.open(BytesIO(data)) as probe:
        if size:
            probe.draft(probe.mode, size)
        return probe.size == found.decoded.size


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
    draft mode shrank it, the full size it came from. An upright JPEG is used as decoded:
    `exif_transpose` would only copy it.
    """
    image = Image.open(BytesIO(data))
    source_size = None
    if image.format == "JPEG":
        width, height = image.size
        orientation = image.getexif().get(0x0112)
        rotated = orientation in ROTATED
        oriented = (height, width) if rotated else (width, height)
        size = pipeline.draft_size(*oriented)
        if size:
            image.draft(image.mode, size[::-1] if rotated else size)
            source_size = oriented
        if orientation in (None, 1):
            image.load()
            return pipeline_input(image, target_mode), source_size
    return pipeline_input(ImageOps.exif_transpose(image), target_mode), source_size


def pipeline_input(image: Image.Image, target_mode: str) -> Image.Image:
    """The decoded, oriented image in the mode validation normalised to."""
    if target_mode == "keep":
        return working_image(image)
    image = flatten(image)
    return image if image.mode == target_mode else image.convert(target_mode)


def output_format(configured: str, source_format: str | None) -> str:
    if configured != "source":
        return configured
    return {"JPEG": "jpeg", "WEBP": "webp"}.get(source_format or "", "png")


def transform_image(
    doc: dict[str, Any], *, plan: TransformPlan, blobs: BlobStore, dataset: str
) -> dict[str, Any]:
    """Run the plan on one image and store every output; a failure is recorded, not raised."""
    found = doc.get("validation") or {}
    data = blobs.get_bytes(doc["blob_key"])
    try:
        image, source_size = decode(data, plan.pipeline, found.get("target_mode", "RGB"))
    except Exception as error:
        return transform_failed(doc, f"{type(error).__name__}: {error}")
    return transform_pixels(doc, image, source_size, found.get("format"), plan, blobs, dataset)


def transform_pixels(
    doc: dict[str, Any],
    image: Image.Image,
    source_size: tuple[int, int] | None,
    source_format: str | None,
    plan: TransformPlan,
    blobs: BlobStore,
    dataset: str,
) -> dict[str, Any]:
    """The plan's outputs of one decoded image, stored under the operations' fingerprint."""
    pipeline = plan.pipeline
    try:
        variants = pipeline.apply(
            image, derive_seed(plan.seed, doc["image_id"]), source_size=source_size
        )
    except Exception as error:
        return transform_failed(doc, f"{type(error).__name__}: {error}")
    outputs = []
    for variant in variants:
        fmt = variant.format or output_format(plan.output_format, source_format)
        name = "_".join(part for part in (doc["image_id"], variant.suffix) if part)
        key = f"processed/{dataset}/{pipeline.fingerprint}/{name}.{format_extension(fmt)}"
        blobs.put_bytes(key, encode_image(variant.image, fmt, variant.quality or plan.quality))
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
    return {
        "status": "processed",
        "outputs": outputs,
        "ops_fingerprint": pipeline.fingerprint,
        "transform_key": None,
    }


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
