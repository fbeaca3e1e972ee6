"""Quality issue scores of one decoded image, in the spirit of cleanvision.

Every score is in 0..1 with 1 the worst, so a report can sort by any of them and a user can move
one threshold without learning the scale of a raw statistic. Scores are computed on the small
decode-scale image, so they describe what survives downscaling: blur that only shows at full
resolution on a very large photo is not seen.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
from PIL import Image

ISSUE_THRESHOLDS: Mapping[str, float] = MappingProxyType(
    {
        "blurry": 0.5,
        "dark": 0.8,
        "light": 0.9,
        "low_information": 0.7,
        "grayscale": 0.9,
        "odd_aspect_ratio": 0.65,
        "odd_size": 0.6,
        "extension_mismatch": 0.5,
    }
)
"""An issue is flagged when its score is at or above its threshold.

- blurry: exp(-r / 0.4) where r is the standard deviation of the Laplacian over the standard
  deviation of the luma (edge energy relative to contrast, so a dim but sharp photo is not
  blurry): flagged when r < 0.28, roughly a 1 px Gaussian blur at decode scale.
- dark: 1 - (99th percentile of luma) / 255: flagged when almost nothing is brighter than 51.
- light: (5th percentile of luma) / 255: flagged when almost everything is brighter than 229.
- low_information: 1 - (entropy of the luma histogram in bits) / 8.
- grayscale: 1 - (mean per-pixel channel spread) / (10 % of 255), clipped; 1 for one-channel files.
- odd_aspect_ratio: 1 - short side / long side: flagged beyond about 2.9:1.
- odd_size: log2(256 / short side) / 3, clipped: 0 from 256 px up, 1 at 32 px.
- extension_mismatch: 1 when the file name's extension names another format than the content.
"""

_BLUR_SCALE = 0.4
_GRAYSCALE_SPREAD = 0.1 * 255
_ODD_SIZE_REFERENCE = 256


@dataclass(frozen=True)
class Quality:
    """Statistics of one image: `sharpness` ranks copies of the same picture, `issues` flags it."""

    brightness: float
    sharpness: float
    issues: dict[str, float]


def measure_quality(image: Image.Image, width: int, height: int) -> Quality:
    """Score `image` (8-bit L or RGB) whose full, oriented size is `width` x `height`."""
    luma = np.asarray(image if image.mode == "L" else image.convert("L"))
    histogram = np.bincount(luma.ravel(), minlength=256).astype(np.float64)
    cumulative = np.cumsum(histogram) / histogram.sum()
    p5 = float(np.searchsorted(cumulative, 0.05))
    p99 = float(np.searchsorted(cumulative, 0.99))
    probabilities = histogram[histogram > 0] / histogram.sum()
    entropy = float(-(probabilities * np.log2(probabilities)).sum())

    values = luma.astype(np.float32)
    laplacian = _laplacian(values)
    sharpness = float(laplacian.var()) if laplacian.size else 0.0
    edge_ratio = math.sqrt(sharpness) / max(float(values.std()), 1.0)

    short, long = sorted((width, height))
    issues = {
        "blurry": math.exp(-edge_ratio / _BLUR_SCALE),
        "dark": 1.0 - p99 / 255.0,
        "light": p5 / 255.0,
        "low_information": _clip(1.0 - entropy / 8.0),
        "grayscale": _grayscale_score(image),
        "odd_aspect_ratio": 1.0 - short / long if long else 1.0,
        "odd_size": _clip(math.log2(_ODD_SIZE_REFERENCE / max(short, 1)) / 3.0),
    }
    return Quality(brightness=float(values.mean()), sharpness=sharpness, issues=issues)


def flag_issues(issues: Mapping[str, float]) -> tuple[str, ...]:
    """Names of the issues whose score reaches its threshold in `ISSUE_THRESHOLDS`."""
    return tuple(
        name
        for name, score in issues.items()
        if name in ISSUE_THRESHOLDS and score >= ISSUE_THRESHOLDS[name]
    )


def _laplacian(values: np.ndarray) -> np.ndarray:
    centre = values[1:-1, 1:-1]
    return (
        values[:-2, 1:-1] + values[2:, 1:-1] + values[1:-1, :-2] + values[1:-1, 2:] - 4.0 * centre
    )


def _grayscale_score(image: Image.Image) -> float:
    if image.mode != "RGB":
        return 1.0
    red, green, blue = (np.asarray(band) for band in image.split())
    spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
    return _clip(1.0 - float(spread.mean()) / _GRAYSCALE_SPREAD)


def _clip(score: float) -> float:
    return min(1.0, max(0.0, score))
