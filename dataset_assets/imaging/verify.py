"""Confirm a candidate near-duplicate pair with a stronger comparison than its hashes.

Hashes are cheap but blunt: a 15% crop or a 5 degree rotation moves a perceptual hash by 20 bits
and more, as far as two unrelated photos. So the dedup stage takes hash neighbours only as
candidates and confirms each pair here, on small grey copies of both images:

1. ORB keypoints (`FEATURES` per image) matched by Hamming distance with a cross check;
2. one similarity transform (rotation, uniform scale, shift) fitted to the matches with RANSAC;
   a copy has many matches that agree on it (`MIN_INLIERS`), two photos have a handful;
3. the second image is warped onto the first with that transform and the two are compared pixel
   by pixel (Pearson correlation of blurred copies, so brightness, contrast and re-compression do
   not count): different photos of one scene or object (a stereo pair, a building from two
   places) fit a transform on a few matched corners but do not line up as a whole.

A confirmed pair comes back as `Evidence` (method, inliers, correlation, rotation, scale,
overlap) that the image record keeps. Each check costs a few milliseconds, so the stage verifies
candidates only, never all pairs.
"""

import io
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image, ImageOps

from dataset_assets.imaging.inspect import flatten

METHOD = "orb-ransac"
SIDE = 320
"""Long side in pixels of the grey copy keypoints are found on; smaller images are scaled up."""

FEATURES = 500
MIN_INLIERS = 8
"""Matches that agree on one transform: edited copies of textured photos score 60 to 400, of
smooth ones (a fruit on a plain background) 6 to 20; unrelated photos 0 to 10, which the aligned
comparison then rejects."""

MIN_CORRELATION = 0.9
"""Median correlation of 8x8 blocks after alignment: edited copies score 0.94 to 1, other photos
of the same scene (stereo pairs, another viewpoint) 0.4 to 0.87."""

MIN_OVERLAP = 0.5
"""Share of the smaller image the other must cover after alignment."""

_REPROJECTION_PX = 4.0
# Below OpenCV's default (20) so that smooth photos (fruit, sky) still yield keypoints.
_FAST_THRESHOLD = 10
_COMPARE_SIDE = 64
_BLOCK = 8
_FLAT_BLOCK = 25.0

cv2.setNumThreads(1)


@dataclass(frozen=True)
class Keypoints:
    """ORB keypoints of one image, with the grey copy they were found on."""

    points: np.ndarray  # (n, 2) float32, in pixels of `gray`
    descriptors: np.ndarray | None  # (n, 32) uint8, None when nothing was found
    gray: np.ndarray  # uint8, long side SIDE
    mirrored: bool = False


@dataclass(frozen=True)
class Evidence:
    """Why two images count as the same picture: what the image record keeps."""

    method: str
    inliers: int
    matches: int
    correlation: float
    overlap: float
    rotation: float  # degrees, counter-clockwise from the first image to the second
    scale: float  # second image's size over the first's, in the grey copies
    flipped: bool

    def as_record(self) -> dict[str, object]:
        return asdict(self)


def grey_copy(image: Image.Image) -> np.ndarray:
    """`image` as 8-bit grey with its long side at `SIDE`, as keypoint matching expects."""
    grey = image.convert("L")
    scale = SIDE / max(grey.size)
    size = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    if size != grey.size:
        grey = grey.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.asarray(grey)


def keypoints(image: Image.Image, *, mirrored: bool = False) -> Keypoints:
    """Keypoints of `image`, or of its mirror image (to compare against a flipped copy)."""
    if mirrored:
        image = ImageOps.mirror(image)
    gray = grey_copy(image)
    detector = cv2.ORB_create(FEATURES, fastThreshold=_FAST_THRESHOLD)
    found, descriptors = detector.detectAndCompute(gray, None)
    points = np.array([point.pt for point in found], dtype=np.float32).reshape(-1, 2)
    return Keypoints(points=points, descriptors=descriptors, gray=gray, mirrored=mirrored)


def verify(first: Keypoints, second: Keypoints) -> Evidence | None:
    """Evidence that `second` is an edited copy of `first` (or the reverse), or None."""
    if first.descriptors is None or second.descriptors is None:
        return None
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    matches = matcher.match(first.descriptors, second.descriptors)
    if len(matches) < MIN_INLIERS:
        return None
    source = first.points[[match.queryIdx for match in matches]]
    target = second.points[[match.trainIdx for match in matches]]
    transform, inliers = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=_REPROJECTION_PX
    )
    count = int(inliers.sum()) if inliers is not None else 0
    if transform is None or count < MIN_INLIERS:
        return None
    correlation, overlap = _aligned_correlation(first.gray, second.gray, transform)
    if correlation < MIN_CORRELATION or overlap < MIN_OVERLAP:
        return None
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    return Evidence(
        method=METHOD,
        inliers=count,
        matches=len(matches),
        correlation=round(correlation, 4),
        overlap=round(overlap, 4),
        rotation=round(float(np.degrees(np.arctan2(-transform[1, 0], transform[0, 0]))), 2),
        scale=round(scale, 4),
        flipped=first.mirrored != second.mirrored,
    )


def _aligned_correlation(
    first: np.ndarray, second: np.ndarray, transform: np.ndarray
) -> tuple[float, float]:
    """Median block correlation of `second` warped onto `first`, and the share covered.

    The median over `_BLOCK`-pixel blocks of a `_COMPARE_SIDE` copy, not one correlation over
    the whole overlap: a caption bar or a watermark spoils a few blocks, while a different view
    of the scene (parallax, perspective) spoils most of them. Flat blocks carry no evidence either
    way and are skipped.
    """
    height, width = first.shape
    warped = cv2.warpAffine(
        second, transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    inside = cv2.warpAffine(
        np.full(second.shape, 255, np.uint8),
        transform,
        (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    )
    scale = _COMPARE_SIDE / max(width, height)
    size = (max(_BLOCK, round(width * scale)), max(_BLOCK, round(height * scale)))
    a = cv2.resize(first, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    b = cv2.resize(warped, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = cv2.resize(inside, size, interpolation=cv2.INTER_AREA) == 255
    area = min(first.size, second.size / abs(float(np.linalg.det(transform[:, :2]))))
    overlap = min(1.0, np.count_nonzero(mask) * (width * height) / (size[0] * size[1]) / area)
    correlations = []
    for top in range(0, size[1] - _BLOCK + 1, _BLOCK):
        for left in range(0, size[0] - _BLOCK + 1, _BLOCK):
            window = (slice(top, top + _BLOCK), slice(left, left + _BLOCK))
            inner = mask[window]
            if inner.mean() < 0.9:
                continue
            p, q = a[window][inner], b[window][inner]
            p, q = p - p.mean(), q - q.mean()
            energy = float(np.sqrt((p * p).sum() * (q * q).sum()))
            if energy > _FLAT_BLOCK * inner.sum():
                correlations.append(float((p * q).sum()) / energy)
    return (float(np.median(correlations)) if correlations else 0.0), float(overlap)


def decode_for_matching(data: bytes) -> Image.Image | None:
    """The file's pixels, upright and flattened, decoded at about twice `SIDE` (JPEG draft mode).

    None when the file cannot be decoded: such a pair is simply not confirmed.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (2 * SIDE, 2 * SIDE))
            image.load()
            return flatten(ImageOps.exif_transpose(image))
    except Exception:
        return None


class PairVerifier:
    """Verifies candidate pairs of a collection, finding each image's keypoints once.

    `read(index)` returns the file bytes of image `index`. Keypoints of the images in recent pairs
    stay in a bounded cache (`cache_size` images, ~20 kB each), so callers should pass pairs
    sorted by their first index; pairs are checked by `workers` threads (OpenCV and Pillow release
    the GIL).
    """

    def __init__(
        self, read: Callable[[int], bytes], *, cache_size: int = 2048, workers: int = 0
    ) -> None:
        self._read = read
        self._keypoints = lru_cache(maxsize=cache_size)(self._find)
        self._workers = workers or os.cpu_count() or 1

    def _find(self, index: int, mirrored: bool) -> Keypoints | None:
        image = decode_for_matching(self._read(index))
        return None if image is None else keypoints(image, mirrored=mirrored)

    def check(self, first: int, second: int, flipped: bool) -> Evidence | None:
        a = self._keypoints(first, False)
        b = self._keypoints(second, flipped)
        return None if a is None or b is None else verify(a, b)

    def __call__(self, pairs: np.ndarray, flipped: np.ndarray) -> list[Evidence | None]:
        """Evidence (or None) for each row `(i, j)` of `pairs`; `flipped` marks mirror matches."""
        if len(pairs) == 0:
            return []
        with ThreadPoolExecutor(self._workers) as pool:
            return list(
                pool.map(self.check, pairs[:, 0].tolist(), pairs[:, 1].tolist(), flipped.tolist())
            )
