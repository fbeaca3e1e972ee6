"""Real photographs for tests: the ones scikit-image ships, so no test downloads anything."""

from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "coins",
    "moon",
    "clock",
    "cell",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)


def photo(name: str) -> Image.Image:
    """One of `PHOTOS` as an 8-bit RGB or grayscale image."""
    pixels = np.asarray(getattr(skimage.data, name)())
    return Image.fromarray(pixels.astype(np.uint8))


def write_photos(folder: Path, layout: dict[str, str]) -> Path:
    """Files named by their relative path (`label/name.jpg`), each the photo `layout` names."""
    for path, name in layout.items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        photo(name).save(target, quality=92)
    return folder
