"""Validate one image from its file bytes, decoding it once, and return all later stages need.

The validation stage calls `inspect_image` for every file. It reads the header first, so empty,
oversized, unsupported, bomb-sized and out-of-bounds files are rejected before any pixel is
decoded. Accepted files are decoded once, at the smallest scale that serves every check (JPEG
decodes straight to that scale through libjpeg's DCT scaling), and that one small image yields the
perceptual and pixel hashes, the quality scores and the thumbnail. Bad data never raises: it comes
back as an `Inspection` with `ok=False`, a reason code from `REJECT_REASONS` and a message that
names the file.
"""

import io
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from dataset_assets.imaging.encoding import encoding_quality
from dataset_assets.imaging.hashing import HashKind, image_hashes, pixel_hash
from dataset_assets.imaging.quality import ISSUE_THRESHOLDS, flag_issues, measure_quality

__all__ = [
    "ISSUE_THRESHOLDS",
    "REJECT_REASONS",
    "Inspection",
    "ValidationRules",
    "decode_scale_for",
    "flatten",
    "inspect_image",
]

REJECT_REASONS: Mapping[str, str] = MappingProxyType(
    {
        "empty_file": "The file has 0 bytes.",
        "file_too_large": "The file is larger than the allowed number of bytes.",
        "not_an_image": "Pillow cannot identify the file as an image.",
        "unsupported_format": "An image, but in a format the rules do not allow.",
        "decompression_bomb": "The header claims more pixels than allowed; it was not decoded.",
        "truncated": "The image data ends before the image is complete.",
        "corrupt": "The image data cannot be decoded.",
        "too_small": "Width or height is below the minimum.",
        "too_large": "Width or height is above the maximum.",
        "bad_aspect_ratio": "Width / height is outside the allowed range.",
        "multi_frame": "An animation or multi-page file, and the rules reject those.",
    }
)

ANALYSIS_SHORT_SIDE = 256
"""Short side in pixels of the image every check works on; smaller images keep their size."""

_FORMAT_FAMILY = {"MPO": "JPEG"}
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_WHITE = (255, 255, 255, 255)


@dataclass(frozen=True)
class ValidationRules:
    """What the validation stage accepts, and how accepted images are normalised and hashed.

    Attributes:
        allowed_formats: Pillow format names; an MPO file (a phone's multi-picture JPEG) counts
            as JPEG.
        min_width, min_height, max_width, max_height: Bounds on the size after EXIF orientation.
        max_pixels: Decompression-bomb guard, checked from the header before decoding.
        min_aspect, max_aspect: Bounds on width / height.
        max_file_bytes: Bound on the file size, checked before the file is opened.
        multi_frame: "first" inspects the first frame of an animation or multi-page file,
            "reject" rejects it.
        target_mode: Mode the pixel hash (and later stages) normalise to: 16-bit data is scaled
            to 8 bits, palettes are expanded and transparency is put on white; "keep" keeps the
            file's mode.
        hash_kind: Perceptual hash used for near-duplicate search.
        drop_issues: Flagged quality issues that make the validation stage reject an image
            (`inspect_image` only scores them).
        thumbnail_px: Longest side of the thumbnail.
    """

    allowed_formats: frozenset[str] = frozenset({"JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"})
    min_width: int = 32
    min_height: int = 32
    max_width: int = 20000
    max_height: int = 20000
    max_pixels: int = 50_000_000
    min_aspect: float = 0.1
    max_aspect: float = 10.0
    max_file_bytes: int = 100 * 1024 * 1024
    multi_frame: Literal["first", "reject"] = "first"
    target_mode: Literal["RGB", "L", "keep"] = "RGB"
    hash_kind: HashKind = "phash"
    thumbnail_px: int = 128
    drop_issues: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Inspection:
    """The outcome for one file.

    Hashes, quality figures and the thumbnail are only set for accepted files; a rejected file
    has `issues == {}` and as much of the header as was read.

    Attributes:
        ok: Whether the file passed every check.
        reason: A key of `REJECT_REASONS` when not ok, else None.
        message: When not ok, what failed, naming the file and the numbers.
        format, mode: As found in the file header.
        width, height: From the header, after EXIF orientation.
        frames: Frames or pages in the file; 0 when the file could not be opened.
        exif_rotated: Whether an EXIF orientation other than 1 was applied.
        perceptual_hash: 16 hex characters of `rules.hash_kind` on the decoded, oriented image.
        mirror_hash: The same hash of the image's left-right mirror, to find flipped copies.
        gradient_hash: The difference hash, a second kind of near-duplicate candidate.
        window_hashes: The hash of five 90% windows of the image, to find crops of it.
        encoding_quality: 100 for lossless files, the JPEG quality estimated from the file's
            quantisation tables, None when unknown: ranks copies to keep the likely original.
        pixel_hash: SHA-256 of the normalised pixels at decode scale with their mode and size:
            equal for lossless re-encodes of the same pixels.
        issues: Every quality issue score in 0..1, 1 the worst (see `ISSUE_THRESHOLDS`).
        flagged: Issues whose score reaches its threshold.
        brightness: Mean luma, 0..255.
        sharpness: Variance of the Laplacian of the decode-scale luma; ranks copies of one
            picture to keep the sharpest.
        thumbnail: RGB JPEG bytes, longest side `rules.thumbnail_px` (or less for small images).
        decoded: The oriented image as decoded (at JPEG draft scale, before any mode change),
            for a caller that can use the same pixels for more work.
    """

    ok: bool
    reason: str | None
    message: str | None
    format: str | None
    width: int | None
    height: int | None
    mode: str | None
    frames: int
    exif_rotated: bool
    perceptual_hash: str | None
    pixel_hash: str | None
    mirror_hash: str | None = None
    gradient_hash: str | None = None
    window_hashes: tuple[str, ...] = ()
    encoding_quality: int | None = None
    issues: dict[str, float] = field(default_factory=dict)
    flagged: tuple[str, ...] = ()
    brightness: float | None = None
    sharpness: float | None = None
    thumbnail: bytes | None = None
    decoded: Image.Image | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class _Header:
    format: str
    width: int
    height: int
    mode: str
    frames: int
    orientation: int


@dataclass(frozen=True)
class _Decoded:
    image: Image.Image
    view: Image.Image
    normalised: Image.Image
    width: int
    height: int
    orientation: int
    encoding_quality: int | None


class _Rejected(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def decode_scale_for(
    width: int, height: int, rules: ValidationRules = ValidationRules()
) -> tuple[int, int]:
    """Size at which a `width` x `height` image is decoded and checked.

    The short side becomes `ANALYSIS_SHORT_SIDE`, or more when the thumbnail needs a longer long
    side; images already that small keep their size.
    """
    short, long = min(width, height), max(width, height)
    target_short = max(ANALYSIS_SHORT_SIDE, math.ceil(rules.thumbnail_px * short / max(long, 1)))
    if short <= target_short:
        return width, height
    scale = target_short / short
    return max(1, round(width * scale)), max(1, round(height * scale))


def inspect_image(data: bytes, name: str, rules: ValidationRules = ValidationRules()) -> Inspection:
    """Check `data`, the bytes of the file `name`, against `rules` and describe the image.

    Never raises for bad data. Pillow's own decompression-bomb warning threshold
    (`Image.MAX_IMAGE_PIXELS`, read, never changed) also counts as a reject, so an image Pillow
    would warn about is not decoded.
    """
    if not data:
        return _rejected("empty_file", f"{name}: the file is empty (0 bytes)")
    if len(data) > rules.max_file_bytes:
        return _rejected(
            "file_too_large",
            f"{name}: {len(data):,} bytes is above the maximum {rules.max_file_bytes:,}",
        )
    header: _Header | None = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            header = _read_header(image)
            _check_header(header, name, rules)
            decoded = _decode(image, header, rules)
    except _Rejected as rejection:
        return _rejected(rejection.reason, rejection.message, header)
    except UnidentifiedImageError:
        return _rejected("not_an_image", f"{name}: not an image file Pillow can identify")
    except Image.DecompressionBombError as error:
        return _rejected("decompression_bomb", f"{name}: {error}", header)
    except Exception as error:
        return _decode_failure(error, name, header)
    return _accepted(decoded, header, name, rules)


def _read_header(image: ImageFile.ImageFile) -> _Header:
    return _Header(
        format=image.format or "",
        width=image.width,
        height=image.height,
        mode=image.mode,
        frames=getattr(image, "n_frames", 1),
        orientation=_orientation(image, header_only=True),
    )


def _orientation(image: Image.Image, *, header_only: bool = False) -> int:
    """EXIF orientation 1..8; unreadable or odd EXIF counts as upright, as in browsers.

    With `header_only`, a PNG whose EXIF did not come before its pixels counts as upright for now:
    Pillow would decode the whole file to look for EXIF after them.
    """
    if header_only and image.format == "PNG" and "exif" not in image.info:
        return 1
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _oriented_size(header: _Header, orientation: int) -> tuple[int, int]:
    if orientation in _SWAPPING_ORIENTATIONS:
        return header.height, header.width
    return header.width, header.height


def _check_header(header: _Header, name: str, rules: ValidationRules) -> None:
    family = _FORMAT_FAMILY.get(header.format, header.format)
    if family not in rules.allowed_formats:
        allowed = ", ".join(sorted(rules.allowed_formats))
        raise _Rejected(
            "unsupported_format",
            f"{name}: format {header.format} is not allowed (allowed: {allowed})",
        )
    width, height = _oriented_size(header, header.orientation)
    pixels = width * height
    limit = rules.max_pixels
    if Image.MAX_IMAGE_PIXELS is not None:
        limit = min(limit, Image.MAX_IMAGE_PIXELS)
    if pixels > limit:
        raise _Rejected(
            "decompression_bomb",
            f"{name}: {width}x{height} px = {pixels:,} pixels is above the limit {limit:,}",
        )
    if width > rules.max_width or height > rules.max_height:
        raise _Rejected(
            "too_large",
            f"{name}: {width}x{height} px is above the maximum "
            f"{rules.max_width}x{rules.max_height}",
        )
    if width < rules.min_width or height < rules.min_height:
        raise _Rejected(
            "too_small",
            f"{name}: {width}x{height} px is below the minimum "
            f"{rules.min_width}x{rules.min_height}",
        )
    aspect = width / height if height else math.inf
    if not rules.min_aspect <= aspect <= rules.max_aspect:
        raise _Rejected(
            "bad_aspect_ratio",
            f"{name}: aspect ratio {aspect:.3g} ({width}x{height} px) is outside "
            f"{rules.min_aspect:g}..{rules.max_aspect:g}",
        )
    if header.frames > 1 and rules.multi_frame == "reject":
        raise _Rejected(
            "multi_frame", f"{name}: {header.frames} frames, and multi-frame files are rejected"
        )


def _decode(image: ImageFile.ImageFile, header: _Header, rules: ValidationRules) -> _Decoded:
    width, height = _oriented_size(header, header.orientation)
    target = decode_scale_for(width, height, rules)
    stored = target[::-1] if header.orientation in _SWAPPING_ORIENTATIONS else target
    quality = encoding_quality(image)
    image.draft(None, stored)
    image.load()
    orientation = _orientation(image)
    if orientation != 1:
        ImageOps.exif_transpose(image, in_place=True)
    width, height = _oriented_size(header, orientation)
    view = _fit(flatten(image), decode_scale_for(width, height, rules))
    return _Decoded(
        image=image,
        view=view,
        normalised=_normalised(image, view, rules.target_mode),
        width=width,
        height=height,
        orientation=orientation,
        encoding_quality=quality,
    )


def _accepted(decoded: _Decoded, header: _Header, name: str, rules: ValidationRules) -> Inspection:
    quality = measure_quality(decoded.view, decoded.width, decoded.height)
    hashes = image_hashes(decoded.view, rules.hash_kind)
    issues = {**quality.issues, "extension_mismatch": _extension_mismatch(name, header.format)}
    return Inspection(
        ok=True,
        reason=None,
        message=None,
        format=header.format,
        width=decoded.width,
        height=decoded.height,
        mode=header.mode,
        frames=header.frames,
        exif_rotated=decoded.orientation != 1,
        perceptual_hash=hashes.perceptual,
        pixel_hash=pixel_hash(decoded.normalised, (decoded.width, decoded.height)),
        mirror_hash=hashes.mirror,
        gradient_hash=hashes.gradient,
        window_hashes=hashes.windows,
        encoding_quality=decoded.encoding_quality,
        issues=issues,
        flagged=flag_issues(issues),
        brightness=quality.brightness,
        sharpness=quality.sharpness,
        thumbnail=_thumbnail(decoded.view, rules.thumbnail_px),
        decoded=decoded.image,
    )


def flatten(image: Image.Image) -> Image.Image:
    """8-bit L or RGB: 16-bit and float scaled, palettes expanded, transparency put on white."""
    if image.mode in _SIXTEEN_BIT_MODES or image.mode in ("I", "F"):
        return _to_eight_bit(image)
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        background = Image.new("RGBA", image.size, _WHITE)
        flat = Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
        return flat.convert("L") if image.mode in ("LA", "La") else flat
    if image.mode in ("L", "RGB"):
        return image
    return image.convert("RGB")


def _to_eight_bit(image: Image.Image) -> Image.Image:
    """Scale, never clip: 16-bit by 1/257, other integer or float data by its own range."""
    values = np.nan_to_num(np.asarray(image, dtype=np.float32))
    low, high = float(values.min()), float(values.max())
    if image.mode in _SIXTEEN_BIT_MODES or (low >= 0 and 255 < high <= 65535):
        scaled = values / 257.0
    elif image.mode == "F" and low >= 0 and high <= 1:
        scaled = values * 255.0
    elif low >= 0 and high <= 255:
        scaled = values
    else:
        scaled = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.size == size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def _normalised(
    decoded: Image.Image, view: Image.Image, target_mode: Literal["RGB", "L", "keep"]
) -> Image.Image:
    """The decode-scale pixels in the rules' target mode; "keep" keeps the file's own mode."""
    if target_mode != "keep":
        return view if view.mode == target_mode else view.convert(target_mode)
    if decoded.mode == view.mode:
        return view
    if decoded.mode in ("P", "PA"):
        has_alpha = decoded.mode == "PA" or "transparency" in decoded.info
        decoded = decoded.convert("RGBA" if has_alpha else "RGB")
    elif decoded.mode == "1":
        decoded = decoded.convert("L")
    return _fit(decoded, view.size)


def _thumbnail(view: Image.Image, longest_side: int) -> bytes:
    thumbnail = view.convert("RGB")
    thumbnail.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumbnail.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def _extension_mismatch(name: str, image_format: str) -> float:
    extension = os.path.splitext(name)[1].lower()
    if not extension:
        return 0.0
    named = Image.registered_extensions().get(extension)
    family = _FORMAT_FAMILY.get(image_format, image_format)
    return 0.0 if named is not None and _FORMAT_FAMILY.get(named, named) == family else 1.0


def _decode_failure(error: Exception, name: str, header: _Header | None) -> Inspection:
    text = str(error) or type(error).__name__
    if isinstance(error, EOFError) or "truncated" in text.lower():
        return _rejected("truncated", f"{name}: the image data ends early ({text})", header)
    what = header.format if header else "the image"
    return _rejected(
        "corrupt", f"{name}: cannot decode {what}: {type(error).__name__}: {text}", header
    )


def _rejected(reason: str, message: str, header: _Header | None = None) -> Inspection:
    width, height = _oriented_size(header, header.orientation) if header else (None, None)
    return Inspection(
        ok=False,
        reason=reason,
        message=message,
        format=header.format if header else None,
        width=width,
        height=height,
        mode=header.mode if header else None,
        frames=header.frames if header else 0,
        exif_rotated=bool(header and header.orientation != 1),
        perceptual_hash=None,
        pixel_hash=None,
    )
