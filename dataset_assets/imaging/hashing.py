"""Fingerprints of a decoded image for duplicate detection.

A perceptual hash is close for near-duplicates (re-encodes, resizes, light edits); the pixel hash is
equal only for the same pixels, so a PNG and a BMP of one picture match while their file hashes
differ.
"""

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Literal

import imagehash
import numpy as np
import scipy.fftpack
from PIL import Image, ImageOps

HashKind = Literal["phash", "dhash", "whash"]

_HASHERS: dict[str, Callable[[Image.Image], imagehash.ImageHash]] = {
    "dhash": imagehash.dhash,
    "whash": partial(imagehash.whash, image_scale=64),
}
"""`imagehash` for the other kinds; the default, phash, is computed in one batch by `_phashes`."""

WINDOWS = (
    (0.0, 0.0, 0.9, 0.9),
    (0.1, 0.0, 1.0, 0.9),
    (0.0, 0.1, 0.9, 1.0),
    (0.1, 0.1, 1.0, 1.0),
    (0.05, 0.05, 0.95, 0.95),
)
"""Windows (left, top, right, bottom as shares of the side) hashed for crop matching: the four
corners and the centre, each 90% of the width and height."""

CENTRE = WINDOWS.index((0.05, 0.05, 0.95, 0.95))
"""The centre window: it leaves out the corners a rotation fills, so the centre hashes of a photo
and of its rotated copy stay close where their whole-image hashes drift apart."""

_PHASH_SIDE = 32
_HASH_SIDE = 8


@dataclass(frozen=True)
class ImageHashes:
    """The fingerprints the dedup stage searches for near-duplicate candidates, as 16 hex digits.

    Attributes:
        perceptual: The hash of the chosen kind of the whole image.
        mirror: The same hash of its left-right mirror. Searching an image's hash against the
            others' mirror hashes finds flipped copies, which no hash of the image alone can: a
            flip moves a perceptual hash by about half its bits.
        gradient: The difference hash (dhash), a second opinion. It compares neighbouring pixels
            rather than frequencies, so a caption bar or a watermark, which moves a DCT hash by
            10 bits and more, moves it by a few.
        windows: The hash of each of the `WINDOWS`. A crop keeps most of a picture but moves its
            hash as far as an unrelated photo's (a 15% crop moves a phash by 20 to 28 bits); the
            crop's own hash lands a few bits from the window of the original it most resembles.
            Small rotations, whose filled corners the windows leave out, come closer the same way.
    """

    perceptual: str
    mirror: str
    gradient: str
    windows: tuple[str, ...]


def image_hashes(image: Image.Image, kind: HashKind = "phash") -> ImageHashes:
    """Every hash of `image` from one grey copy of it, bit for bit what `imagehash` gives.

    Each `imagehash` call converts its image to grey first; converting once and cropping and
    mirroring the grey copy gives the same pixels. The eight perceptual hashes of the default
    kind share one batched DCT. Like the others, the wavelet hash works on a fixed 64 px square,
    so no hash depends on the size it is given and the decode scale of a file does not change it.
    """
    grey = image.convert("L")
    width, height = grey.size
    boxes = (
        (round(left * width), round(top * height), round(right * width), round(bottom * height))
        for left, top, right, bottom in WINDOWS
    )
    views = [grey, ImageOps.mirror(grey), *(grey.crop(box) for box in boxes)]
    if kind == "phash":
        perceptual, mirror, *windows = _phashes(views)
    else:
        perceptual, mirror, *windows = (str(_HASHERS[kind](view)) for view in views)
    return ImageHashes(perceptual, mirror, _dhash(grey), tuple(windows))


def _phashes(greys: list[Image.Image]) -> list[str]:
    """`imagehash.phash` of each grey image: the DCT of its 32 px square, each low frequency
    against their median."""
    size = (_PHASH_SIDE, _PHASH_SIDE)
    pixels = np.stack([np.asarray(grey.resize(size, Image.Resampling.LANCZOS)) for grey in greys])
    low = scipy.fftpack.dct(scipy.fftpack.dct(pixels, axis=1), axis=2)[:, :_HASH_SIDE, :_HASH_SIDE]
    flat = low.reshape(len(greys), -1)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return [row.tobytes().hex() for row in np.packbits(bits, axis=1)]


def _dhash(grey: Image.Image) -> str:
    """`imagehash.dhash` of a grey image: each pixel of its 9 x 8 copy against its left one."""
    small = grey.resize((_HASH_SIDE + 1, _HASH_SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small)
    return np.packbits(pixels[:, 1:] > pixels[:, :-1]).tobytes().hex()


def hash_distance(first: str, second: str) -> int:
    """Hamming distance between two hex hashes of equal length: 0 is identical, 64 is opposite."""
    return (int(first, 16) ^ int(second, 16)).bit_count()


def pixel_hash(image: Image.Image, source_size: tuple[int, int]) -> str:
    """SHA-256 of the pixels, mode and size of `image` and the size of the file it came from.

    The source size keeps two different-resolution files apart when their downscales coincide.
    """
    digest = hashlib.sha256()
    header = f"{image.mode};{image.width}x{image.height};{source_size[0]}x{source_size[1]};"
    digest.update(header.encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
