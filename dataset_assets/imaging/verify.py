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
   places) fit a transform on a few matched corners but do not line up as a whole;
4. smooth pictures (a fruit on white, a depth map, a defocused shot) have too few corners for
   step 1, so when either side has fewer than `FEW_KEYPOINTS` the copies are aligned by their
   intensities instead (OpenCV's ECC, started from the crop windows the candidates came from),
   and step 3 decides under the same threshold if the fitted map is a near-similarity.

A confirmed pair comes back as `Evidence` (method, inliers, correlation, rotation, scale,
overlap) that the image record keeps. Each check costs a few milliseconds, so the stage verifies
candidates only, never all pairs.
"""

import io
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from functools import cached_property, lru_cache

import cv2
import numpy as np
from PIL import Image, ImageOps

from dataset_assets.imaging.hashing import WINDOWS
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
of the same scene (stereo pairs, another viewpoint) 0.4 to 0.87. After intensity alignment of
smooth pictures (bench/README.md: chosen on one half of the benchmark, checked on the other)
copies scored 0.95 to 1 and other pictures at most 0.8."""

MIN_OVERLAP = 0.8
"""Share of the smaller image the other must cover after alignment. The edits matched (crops up to
15% of a side, rotations up to 5 degrees) cover 0.94 and more on the benchmark; two bands of one
picture that repeats along them (a fence, towers out of focus) align shifted by half a band."""

ALIGNED_METHOD = "ecc-aligned"
FEW_KEYPOINTS = 100
"""Below this many keypoints on either side, a pair the keypoints do not confirm is aligned by
intensity instead: smooth pictures have too few corners to agree on a transform."""

MIN_BLOCKS = 2
"""Textured blocks the aligned comparison needs: a caption bar alone must not decide it."""

_ALIGN_SIDE = 96
_ACROSS = 32
"""Short side in pixels the small copies that are aligned and compared keep at least (their long
side at most three times what it would be): at 96 px long, a syringe photographed lengthwise is
19 px across, too few rows to fit a vertical scale or to hold two rows of blocks."""
_ECC_CRITERIA = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 50, 1e-4)
_ECC_FIRST = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 4, 1e-4)
_ECC_KEEP = 2
_ECC_FIRST_MIN = 0.75
"""ECC score a start needs after the first, half-size pass to be worth converging: copies on the
benchmark score 0.85 and more there, pairs that are not copies 0.63 at the median."""
_MAX_ANISOTROPY = 0.05
# Area beyond the other frame that counts (a 2 degree rotation leaves 0.5%), its distance from
# that frame, and the spread of grey levels that separates picture from a flat fill.
_MIN_BEYOND = 0.002
_BEYOND_MARGIN = 3
_PICTURE_SPREAD = 4.0
_MIN_SCALE = 0.5

_REPROJECTION_PX = 4.0
# Below OpenCV's default (20) so that smooth photos (fruit, sky) still yield keypoints.
_FAST_THRESHOLD = 10
_COMPARE_SIDE = 96
_MIN_COMPARE_SIDE = 64
_BLOCK = 8
_FLAT_BLOCK = 25.0  # grey-level variance under which a block is flat

cv2.setNumThreads(1)


@dataclass(frozen=True)
class Keypoints:
    """ORB keypoints of one image, with the grey copy they were found on."""

    points: np.ndarray  # (n, 2) float32, in pixels of `gray`
    descriptors: np.ndarray | None  # (n, 32) uint8, None when nothing was found
    gray: np.ndarray  # uint8, long side SIDE
    mirrored: bool = False
    detail: int = SIDE  # long side of the decoded image: `gray` holds no finer detail

    @cached_property
    def smooth(self) -> np.ndarray:
        """The blurred float copy intensity alignment works on, made once per image however
        many pairs it is in."""
        small = cv2.resize(
            self.gray, _reduced_size(self.gray.shape, _ALIGN_SIDE), interpolation=cv2.INTER_AREA
        )
        return cv2.GaussianBlur(small, (0, 0), 1.0).astype(np.float32)

    @cached_property
    def smooth_half(self) -> np.ndarray:
        """`smooth` at half size, for the first pass over the starting maps (`_promising`)."""
        size = _reduced_size(self.smooth.shape, _ALIGN_SIDE // 2)
        return cv2.resize(self.smooth, size, interpolation=cv2.INTER_AREA)


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
    edited: int | None = None
    """Which image is the rotated or cropped one (0 the first, 1 the second), when the frames
    tell: see `edited_side`."""

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
    return Keypoints(
        points=points,
        descriptors=descriptors,
        gray=gray,
        mirrored=mirrored,
        detail=max(image.size),
    )


def verify(first: Keypoints, second: Keypoints) -> Evidence | None:
    """Evidence that `second` is an edited copy of `first` (or the reverse), or None.

    Keypoints first; when either image has fewer than `FEW_KEYPOINTS` (smooth pictures: a fruit
    on white, a sky, a depth map) and they do not settle it, intensity alignment decides.
    """
    evidence = _match_keypoints(first, second)
    if evidence is None and min(len(first.points), len(second.points)) < FEW_KEYPOINTS:
        evidence = _match_intensities(first, second)
    return evidence


def _match_keypoints(first: Keypoints, second: Keypoints) -> Evidence | None:
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
    correlation, overlap, _ = _aligned_correlation(first, second, transform)
    if correlation < MIN_CORRELATION or overlap < MIN_OVERLAP:
        return None
    return _evidence(METHOD, first, second, transform, correlation, overlap, count, len(matches))


def _match_intensities(first: Keypoints, second: Keypoints) -> Evidence | None:
    """Align the grey copies directly (ECC, affine) from each way one could be a crop of the
    other, and accept a near-similarity transform under which they agree block by block.

    The starting points are the hypotheses that made the pair a candidate: the whole pictures,
    or one picture against a window (`WINDOWS`) of the other, ranked by a short first pass
    (`_promising`): on the benchmark and on synthetic fields every decision stayed the same at a
    third of the cost, most of it spent on pairs that are not copies.
    """
    a, b = first.smooth, second.smooth
    best = max(
        (_align(a, b, start) for start in _promising(first, second)),
        key=lambda found: found[0] if found else -1.0,
        default=None,
    )
    if best is None:
        return None
    warp = best[1].astype(np.float64)
    # From the small copies' pixels to the grey copies' (both sides scaled independently).
    scale_a = first.gray.shape[1] / a.shape[1]
    scale_b = second.gray.shape[1] / b.shape[1]
    transform = np.hstack((warp[:, :2] * scale_b / scale_a, warp[:, 2:] * scale_b))
    if not _near_similarity(transform):
        return None
    correlation, overlap, blocks = _aligned_correlation(first, second, transform)
    if correlation < MIN_CORRELATION or overlap < MIN_OVERLAP or blocks < MIN_BLOCKS:
        return None
    return _evidence(ALIGNED_METHOD, first, second, transform, correlation, overlap, 0, 0)


def _promising(first: Keypoints, second: Keypoints) -> list[np.ndarray]:
    """Starting maps worth converging: each start gets `_ECC_FIRST` iterations on half-size
    copies, and the `_ECC_KEEP` best that reach `_ECC_FIRST_MIN` go on at full size."""
    half_a, half_b = first.smooth_half, second.smooth_half
    starts = _hypotheses(first.smooth.shape, second.smooth.shape)
    tried = [
        (found[0], k)
        for k, start in enumerate(_hypotheses(half_a.shape, half_b.shape))
        if (found := _align(half_a, half_b, start, _ECC_FIRST))
    ]
    tried.sort(reverse=True)
    return [starts[k] for score, k in tried[:_ECC_KEEP] if score >= _ECC_FIRST_MIN]


def _align(
    a: np.ndarray,
    b: np.ndarray,
    start: np.ndarray,
    criteria: tuple[int, int, float] = _ECC_CRITERIA,
) -> tuple[float, np.ndarray] | None:
    """ECC's (score, affine map) from `start`, or None when it does not converge."""
    try:
        return cv2.findTransformECC(a, b, start, cv2.MOTION_AFFINE, criteria, None, 1)
    except cv2.error:
        return None


def _reduced_size(shape: tuple[int, int], side: int) -> tuple[int, int]:
    """(width, height) of a copy of an image of `shape` that is `side` pixels long, or `_ACROSS`
    pixels across when that is thinner."""
    height, width = shape
    long, short = max(shape), min(shape)
    scale = max(side / long, min(_ACROSS / short, 3 * side / long))
    return max(_BLOCK, round(width * scale)), max(_BLOCK, round(height * scale))


def _hypotheses(first: tuple[int, int], second: tuple[int, int]) -> list[np.ndarray]:
    """Affine maps from `first`'s pixels to `second`'s: whole onto whole, whole onto each window
    of the other, each window onto the other whole."""
    whole = (0.0, 0.0, 1.0, 1.0)
    pairs = [(whole, whole)]
    for window in WINDOWS:
        pairs += [(whole, window), (window, whole)]
    return [_box_map(first, second, source, target) for source, target in pairs]


def _box_map(
    first: tuple[int, int],
    second: tuple[int, int],
    source: tuple[float, float, float, float],
    target: tuple[float, float, float, float],
) -> np.ndarray:
    """The axis-aligned map taking box `source` of an image of shape `first` onto box `target`
    of one of shape `second` (boxes as shares of the sides: left, top, right, bottom)."""
    (h1, w1), (h2, w2) = first, second
    sx = (target[2] - target[0]) * w2 / ((source[2] - source[0]) * w1)
    sy = (target[3] - target[1]) * h2 / ((source[3] - source[1]) * h1)
    return np.array(
        [
            [sx, 0, target[0] * w2 - sx * source[0] * w1],
            [0, sy, target[1] * h2 - sy * source[1] * h1],
        ],
        dtype=np.float32,
    )


def _near_similarity(transform: np.ndarray) -> bool:
    """Rotation, uniform scale and shift only (within `_MAX_ANISOTROPY`), as edits produce: a
    second view of a scene needs shear or perspective, an unrelated picture anything."""
    columns = transform[:, :2]
    sx, sy = np.hypot(columns[0, 0], columns[1, 0]), np.hypot(columns[0, 1], columns[1, 1])
    shear = abs(float(columns[:, 0] @ columns[:, 1])) / (sx * sy)
    return (
        abs(sx / sy - 1) <= _MAX_ANISOTROPY
        and shear <= _MAX_ANISOTROPY
        and _MIN_SCALE <= sx <= 1 / _MIN_SCALE
    )


def _evidence(
    method: str,
    first: Keypoints,
    second: Keypoints,
    transform: np.ndarray,
    correlation: float,
    overlap: float,
    inliers: int,
    matches: int,
) -> Evidence:
    return Evidence(
        method=method,
        inliers=inliers,
        matches=matches,
        correlation=round(correlation, 4),
        overlap=round(overlap, 4),
        rotation=round(float(np.degrees(np.arctan2(-transform[1, 0], transform[0, 0]))), 2),
        scale=round(float(np.hypot(transform[0, 0], transform[1, 0])), 4),
        flipped=first.mirrored != second.mirrored,
        edited=edited_side(first.gray, second.gray, transform),
    )


def edited_side(first: np.ndarray, second: np.ndarray, transform: np.ndarray) -> int | None:
    """0 or 1 when that grey copy is a rotation or a crop of the other, else None.

    `transform` maps `first`'s pixels onto `second`'s. Each image's area beyond the other's frame
    tells: a crop has none, a rotated copy's is the flat fill of its corners, while the source's
    is picture (the margins cut away, the corners rotated out). A flip, a re-save or a recolouring
    leaves no area beyond either frame, and a picture on a plain background leaves flat margins
    on both sides: no side is told.
    """
    height, width = first.shape
    covered_first = cv2.warpAffine(
        np.full(second.shape, 255, np.uint8),
        transform,
        (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    )
    covered_second = cv2.warpAffine(
        np.full(first.shape, 255, np.uint8),
        transform,
        second.shape[::-1],
        flags=cv2.INTER_NEAREST,
    )
    beyond = [_spread_beyond(first, covered_first), _spread_beyond(second, covered_second)]
    for side in (0, 1):
        mine, other = beyond[side], beyond[1 - side]
        if (mine is None or mine < _PICTURE_SPREAD) and (other or 0) >= _PICTURE_SPREAD:
            return side
    return None


def _spread_beyond(gray: np.ndarray, covered: np.ndarray) -> float | None:
    """How much `gray` varies where `covered` is 0, kept clear of the frame edge: the median
    absolute deviation of its grey levels (0 for a fill, whatever a few stray pixels do); None
    when that area is under `_MIN_BEYOND` of the image."""
    edge = np.ones((2 * _BEYOND_MARGIN + 1,) * 2, np.uint8)
    beyond = cv2.dilate(covered, edge) == 0
    if beyond.mean() < _MIN_BEYOND:
        return None
    levels = gray[beyond].astype(np.float32)
    return float(np.median(np.abs(levels - np.median(levels))))


def _aligned_correlation(
    first: Keypoints, second: Keypoints, transform: np.ndarray
) -> tuple[float, float, int]:
    """Median block correlation of `second` warped onto `first`, the share covered, and how
    many blocks had enough texture to count.

    The median over `_BLOCK`-pixel blocks of a copy `_COMPARE_SIDE` pixels long (or as long as
    the smaller image, down to `_MIN_COMPARE_SIDE`: a 0.25x copy has no finer detail to agree
    on), not one correlation over the whole overlap: a caption bar or a watermark spoils a few
    blocks, while a different view of the scene (parallax, perspective) spoils most of them.
    Blocks flat in both images carry no evidence either way and are skipped; a block flat in one
    image only is a disagreement.
    """
    side = max(_MIN_COMPARE_SIDE, min(_COMPARE_SIDE, first.detail, second.detail))
    height, width = first.gray.shape
    warped = cv2.warpAffine(
        second.gray, transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    )
    inside = cv2.warpAffine(
        np.full(second.gray.shape, 255, np.uint8),
        transform,
        (width, height),
        flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
    )
    size = _reduced_size((height, width), side)
    a = cv2.resize(first.gray, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    b = cv2.resize(warped, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    mask = cv2.resize(inside, size, interpolation=cv2.INTER_AREA) == 255
    area = min(first.gray.size, second.gray.size / abs(float(np.linalg.det(transform[:, :2]))))
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
            energies = float((p * p).sum()), float((q * q).sum())
            if max(energies) > _FLAT_BLOCK * inner.sum():
                energy = np.sqrt(energies[0] * energies[1])
                correlations.append(float((p * q).sum()) / energy if energy else 0.0)
    median = float(np.median(correlations)) if correlations else 0.0
    return median, float(overlap), len(correlations)


def decode_for_matching(data: bytes) -> Image.Image | None:
    """The file's pixels, upright and flattened; a JPEG comes out grey and at the smallest scale
    of at least `SIDE` (draft mode): keypoints need no more, and decoding is then 2.5x cheaper
    (no decision on the benchmark changed).

    None when the file cannot be decoded: such a pair is simply not confirmed.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (SIDE, SIDE))
            image.load()
            return flatten(ImageOps.exif_transpose(image))
    except Exception:
        return None


class PairVerifier:
    """Verifies candidate pairs of a collection, finding each image's keypoints once.

    `read(key)` returns the file bytes of image `key`. Keypoints of the images in recent pairs
    stay in a bounded cache (`cache_size` images, ~100 kB each), so callers should pass pairs
    sorted by their first image.
    """

    def __init__(self, read: Callable[[Hashable], bytes], *, cache_size: int = 256) -> None:
        self._read = read
        self._keypoints = lru_cache(maxsize=cache_size)(self._find)

    def _find(self, key: Hashable, mirrored: bool) -> Keypoints | None:
        image = decode_for_matching(self._read(key))
        return None if image is None else keypoints(image, mirrored=mirrored)

    def check(self, first: Hashable, second: Hashable, flipped: bool) -> Evidence | None:
        """Evidence (or None) that `second` (mirrored when `flipped`) is a copy of `first`."""
        a = self._keypoints(first, False)
        b = self._keypoints(second, flipped)
        return None if a is None or b is None else verify(a, b)


_verifiers: dict[str, PairVerifier] = {}


def check_pair(
    read: Callable[[Hashable], bytes], run: str, pair: tuple[int, Hashable, Hashable, bool]
) -> Evidence | None:
    """`PairVerifier.check` of `pair` (its index, both keys, the mirror flag), in whichever
    process or thread runs it: keypoints found for the same `run` are reused, those of an earlier
    run are dropped (a worker process outlives a run, its files may not)."""
    verifier = _verifiers.get(run)
    if verifier is None:
        _verifiers.clear()
        verifier = _verifiers.setdefault(run, PairVerifier(read))
    return verifier.check(*pair[1:])


def forget_run(run: str) -> None:
    """Drop the keypoints `check_pair` keeps for `run` in this process, once its pairs are done."""
    _verifiers.pop(run, None)
