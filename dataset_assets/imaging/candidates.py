"""Candidate near-duplicate pairs from several hashes, for verification to confirm.

Each hash is searched with the exact multi-index search of `neardup`, at a radius looser than a
hash alone could be trusted with: the perceptual hash, the difference hash (robust to overlays),
the hash of the centre window (rotations: it leaves out the filled corners); then every window
hash (crops) and every mirror hash (flipped copies, at the tighter `MIRROR_RADIUS`) is looked up
in one index of the perceptual hashes, so pairs among window or mirror hashes are never
enumerated. The union is what the verification step checks, closest pairs first and at most
`limit` of them, so its cost is bounded whatever the collection.
"""

from dataclasses import dataclass

import numpy as np

from dataset_assets.imaging.hashing import CENTRE
from dataset_assets.imaging.neardup import find_near_duplicate_pairs, find_near_pairs_between

MIRROR_RADIUS = 8
"""Radius of the mirror-hash search: a flipped copy's hash lands within 6 bits of the original's
mirror hash (99% of the benchmark's flips), as close as a plain re-save's."""


@dataclass(frozen=True)
class Candidates:
    """Rows `(i, j)` with `i < j`, the smallest hash distance that found each, and whether that
    was a mirror match."""

    pairs: np.ndarray  # (k, 2) int64
    distance: np.ndarray  # (k,) int64
    flipped: np.ndarray  # (k,) bool


def candidate_pairs(
    perceptual: np.ndarray,
    gradient: np.ndarray,
    windows: np.ndarray,
    mirror: np.ndarray | None,
    radius: int,
    limit: int,
) -> Candidates:
    """Pairs within `radius` bits on the perceptual, the difference or the centre-window hash,
    or between one image's hash and a window hash of the other (`windows`: one column per
    window), or within `MIRROR_RADIUS` between a hash and a mirror hash.

    With `mirror` None flips are not searched. Returns at most `limit` pairs, closest first.
    """
    centre = windows[:, CENTRE]
    found = [
        _with_distance(find_near_duplicate_pairs(perceptual, radius), perceptual),
        _with_distance(find_near_duplicate_pairs(gradient, radius), gradient),
        _with_distance(find_near_duplicate_pairs(centre, radius), centre),
        _across(perceptual, windows, radius, False),
    ]
    if mirror is not None:
        found.append(_across(perceptual, mirror[:, None], min(radius, MIRROR_RADIUS), True))
    pairs = np.concatenate([rows for rows, _, _ in found])
    distance = np.concatenate([d for _, d, _ in found])
    flipped = np.concatenate([f for _, _, f in found])
    # One row per pair: the closest evidence, and a direct match before a mirror one.
    order = np.lexsort((flipped, distance, pairs[:, 1], pairs[:, 0]))
    pairs, distance, flipped = pairs[order], distance[order], flipped[order]
    first = np.ones(len(pairs), dtype=bool)
    first[1:] = np.any(pairs[1:] != pairs[:-1], axis=1)
    pairs, distance, flipped = pairs[first], distance[first], flipped[first]
    closest = np.argsort(distance, kind="stable")[:limit]
    keep = np.sort(closest)
    return Candidates(pairs=pairs[keep], distance=distance[keep], flipped=flipped[keep])


def _with_distance(
    pairs: np.ndarray, hashes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    distance = np.bitwise_count(hashes[pairs[:, 0]] ^ hashes[pairs[:, 1]]).astype(np.int64)
    return pairs, distance, np.zeros(len(pairs), dtype=bool)


def _across(
    perceptual: np.ndarray, other: np.ndarray, radius: int, flipped: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs where one image's hash is near another image's `other` hash (a column each per
    window, or the mirror hash), from one search of every `other` hash in the hashes' index."""
    columns = other.shape[1]
    found = find_near_pairs_between(perceptual, other.ravel(), radius)
    first, second = found[:, 0], found[:, 1] // columns
    distance = np.bitwise_count(perceptual[first] ^ other.ravel()[found[:, 1]]).astype(np.int64)
    distinct = first != second
    first, second, distance = first[distinct], second[distinct], distance[distinct]
    rows = np.stack((np.minimum(first, second), np.maximum(first, second)), axis=1)
    return rows.astype(np.int64), distance, np.full(len(rows), flipped)
