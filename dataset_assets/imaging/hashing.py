"""Fingerprints of a decoded image for duplicate detection.

A perceptual hash is close for near-duplicates (re-encodes, resizes, light edits); the pixel hash is
equal only for the same pixels, so a PNG and a BMP of one picture match while their file hashes
differ.
"""

import hashlib
from collections.abc import Callable
from functools import partial
from typing import Literal

import imagehash
from PIL import Image, ImageOps

HashKind = Literal["phash", "dhash", "whash"]

_HASHERS: dict[str, Callable[[Image.Image], imagehash.ImageHash]] = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": partial(imagehash.whash, image_scale=64),
}


def perceptual_hash(image: Image.Image, kind: HashKind = "phash") -> str:
    """64-bit perceptual hash of `image` as 16 hex characters.

    The wavelet hash works on a fixed 64 px square, so like the others it does not depend on the
    size it is given and the decode scale of a file does not change it.
    """
    return str(_HASHERS[kind](image))


def mirror_hash(image: Image.Image, kind: HashKind = "phash") -> str:
    """`perceptual_hash` of the left-right mirror of `image`.

    Searching an image's hash against the others' mirror hashes finds flipped copies, which no
    hash of the image alone can: a flip moves a perceptual hash by about half its bits.
    """
    return perceptual_hash(ImageOps.mirror(image), kind)


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


def window_hashes(image: Image.Image, kind: HashKind = "phash") -> list[str]:
    """`perceptual_hash` of each of the `WINDOWS` of `image`.

    A crop keeps most of a picture but moves its hash as far as an unrelated photo's (a 15% crop
    moves a phash by 20 to 28 bits). The crop's own hash lands a few bits from the window of the
    original it most resembles, so the dedup stage also searches each image's hash against the
    others' window hashes. Small rotations, whose filled corners the windows leave out, come
    closer the same way.
    """
    width, height = image.size
    boxes = (
        (round(left * width), round(top * height), round(right * width), round(bottom * height))
        for left, top, right, bottom in WINDOWS
    )
    return [perceptual_hash(image.crop(box), kind) for box in boxes]


def gradient_hash(image: Image.Image) -> str:
    """The difference hash (dhash): a second opinion for near-duplicate candidates.

    It compares neighbouring pixels rather than frequencies, so a caption bar or a watermark,
    which moves a DCT hash by 10 bits and more, moves it by a few.
    """
    return perceptual_hash(image, "dhash")


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
