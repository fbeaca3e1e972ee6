"""Bring any decoded image into the few 8-bit modes the operations work in.

Decoders hand over palette, bilevel, CMYK, 16-bit and float images; the operations work on L, LA,
RGB and RGBA so that fills, noise levels and colour factors mean the same thing for every source.
"""

import numpy as np
from PIL import Image

from dataset_assets.operations.base import OperationError

WORKING_MODES = frozenset({"L", "LA", "RGB", "RGBA"})

_CONVERSIONS = {
    "1": "L",
    "La": "LA",
    "PA": "RGBA",
    "RGBa": "RGBA",
    "RGBX": "RGB",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "HSV": "RGB",
}


def working_image(image: Image.Image) -> Image.Image:
    """`image` in L, LA, RGB or RGBA; high bit depths are scaled down, not clipped."""
    mode = image.mode
    if mode in WORKING_MODES:
        return image
    if mode == "P":
        return image.convert("RGBA" if "transparency" in image.info else "RGB")
    if mode in _CONVERSIONS:
        return image.convert(_CONVERSIONS[mode])
    if mode in {"I", "F"} or mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        if values.size and values.max() > 255:
            values = values / 257
        return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))
    raise OperationError(f"images in mode {mode} are not supported")


def split_alpha(image: Image.Image) -> tuple[Image.Image, Image.Image | None]:
    """The colour bands of a working-mode image and its alpha band, if it has one."""
    if image.mode in {"LA", "RGBA"}:
        return image.convert(image.mode[:-1]), image.getchannel("A")
    return image, None


def with_alpha(color: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """Reattach an alpha band taken off with `split_alpha`."""
    if alpha is None:
        return color
    result = color.convert(f"{color.mode}A")
    result.putalpha(alpha)
    return result
