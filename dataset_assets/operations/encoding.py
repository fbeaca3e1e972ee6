"""Choosing and writing the file format of processed images."""

from dataclasses import replace
from io import BytesIO
from typing import Literal

import numpy as np
from PIL import Image
from pydantic import Field

from dataset_assets.operations.base import Operation, OperationError, Variant
from dataset_assets.operations.modes import split_alpha, working_image

_PILLOW_FORMATS = {"jpeg": "JPEG", "png": "PNG", "webp": "WEBP"}
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_ALIASES = {"jpg": "jpeg"}
_WEBP_MODES = {"L": "RGB", "LA": "RGBA"}
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"})


def _format_name(format: str) -> str:
    name = _ALIASES.get(format.lower(), format.lower())
    if name not in _PILLOW_FORMATS:
        raise OperationError(
            f"unsupported output format {format!r}; use one of {', '.join(_PILLOW_FORMATS)}"
        )
    return name


def format_extension(format: str) -> str:
    """The file extension for an output format: "jpeg" -> "jpg"; "png" and "webp" keep theirs."""
    return _EXTENSIONS[_format_name(format)]


def image_for_format(image: Image.Image, format: str) -> Image.Image:
    """`image` in a mode `format` can store; JPEG has no alpha, so transparency becomes white."""
    name = _format_name(format)
    if name == "png":
        return image if image.mode in _PNG_MODES else working_image(image)
    working = working_image(image)
    if name == "webp":
        widened = _WEBP_MODES.get(working.mode)
        return working.convert(widened) if widened else working
    color, alpha = split_alpha(working)
    if alpha is None:
        return color
    background = Image.new(color.mode, color.size, "white")
    background.paste(color, mask=alpha)
    return background


def encode_image(image: Image.Image, format: str, quality: int = 90) -> bytes:
    """Encode `image` as `format` ("jpeg", "png" or "webp") for storage, favouring speed.

    The mode is converted where the format needs it: JPEG flattens transparency onto white, JPEG
    and WebP scale 16-bit images to 8 bits, PNG keeps them. `quality` applies to JPEG and WebP.
    """
    name = _format_name(format)
    buffer = BytesIO()
    options: dict[str, object] = {"optimize": False}
    if name != "png":
        options["quality"] = quality
    image_for_format(image, name).save(buffer, _PILLOW_FORMATS[name], **options)
    return buffer.getvalue()


class Convert(Operation):
    """Store the output as jpeg, png or webp (quality 1..100 for jpeg and webp)."""

    format: Literal["jpeg", "png", "webp"]
    quality: int = Field(default=90, ge=1, le=100)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        return [image_for_format(image, self.format)]

    def apply_variant(self, variant: Variant, seed: int) -> list[Variant]:
        return [
            replace(
                variant,
                image=image_for_format(variant.image, self.format),
                format=self.format,
                quality=None if self.format == "png" else self.quality,
            )
        ]
