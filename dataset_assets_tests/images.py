"""Distinct photo-like test images: smooth random fields that hash far apart from each other."""

import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth random colour field; different seeds give visibly different pictures."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((6, 8, 3)) * 255
    small = Image.fromarray(coarse.astype(np.uint8), "RGB")
    return small.resize((width, height), Image.Resampling.BICUBIC)


def write_images(folder: Path, spec: dict[str, tuple[int, int]]) -> Path:
    """Files named by their relative path; the extension picks the format."""
    for name, (width, height) in spec.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        photo(width, height, zlib.crc32(name.encode())).save(path)
    return folder
