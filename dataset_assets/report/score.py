"""Figures the quality report is built from: the dataset quality score and histograms.

The score is one number a user can compare between runs of the same collection: it drops when
images are rejected as invalid and when duplicates are removed, and is 100 only when every
ingested image was valid and unique.
"""

import math
from collections.abc import Mapping, Sequence

import numpy as np

QUALITY_SCORE_FORMULA = (
    "score = 100 * (valid images / ingested images) * (unique images / valid images), "
    "i.e. the share of ingested images that were valid times the share of valid images that "
    "were unique; 0 when nothing was ingested or nothing was valid."
)


def quality_score(metrics: Mapping[str, int]) -> float:
    """Score a run from 0 to 100 from its ``images_ingested``, ``valid_images`` and
    ``unique_images`` counts, as stated in ``QUALITY_SCORE_FORMULA``.

    Missing counts are read as 0. Inconsistent counts (more valid than ingested images) are
    clamped so the score never leaves the 0..100 range.
    """
    ingested = metrics.get("images_ingested", 0)
    valid = metrics.get("valid_images", 0)
    unique = metrics.get("unique_images", 0)
    if ingested <= 0 or valid <= 0:
        return 0.0
    validity = min(valid / ingested, 1.0)
    uniqueness = min(max(unique, 0) / valid, 1.0)
    return 100.0 * validity * uniqueness


def histogram(
    values: Sequence[float],
    bins: int = 20,
    value_range: tuple[float, float] | None = None,
) -> dict:
    """Bin ``values`` with ``numpy.histogram`` into a JSON-serialisable
    ``{"edges": [bins + 1 floats], "counts": [bins ints]}``.

    Non-finite values (NaN, infinities) are left out. With no finite values both lists are empty,
    which the report shows as "No data".
    """
    finite = [float(value) for value in values if math.isfinite(value)]
    if not finite:
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.asarray(finite), bins=bins, range=value_range)
    return {"edges": [float(edge) for edge in edges], "counts": [int(count) for count in counts]}
