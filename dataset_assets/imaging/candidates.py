"""Candidate near-duplicate pairs from several hashes, for verification to confirm.

Each hash is searched with the exact multi-index search of `neardup`, at a radius looser than a
hash alone could be trusted with: the perceptual hash, the difference hash (robust to overlays),
and the perceptual hash against the others' mirror hashes (flipped copies). The union is what
the verification step checks, closest pairs first and at most `limit` of them, so its cost is
bounded whatever the collection.
"""

from dataclasses import dataclass

import numpy as np

from dataset_assets.imaging.neardup import find_near_duplicate_pairs


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
    mirror: np.ndarray | None,
    radius: int,
    limit: int,
) -> Candidates:
    """Pairs within `radius` bits on either hash, or between a hash and a mirror hash.

    With `mirror` None flips are not searched. Returns at most `limit` pairs, closest first.
    """
    found = [
        _with_distance(find_near_duplicate_pairs(perceptual, radius), perceptual),
        _with_distance(find_near_duplicate_pairs(gradient, radius), gradient),
    ]
    if mirror is not None:
        found.append(_mirror_pairs(perceptual, mirror, radius))
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


def _mirror_pairs(
    perceptual: np.ndarray, mirror: np.ndarray, radius: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs where one image's hash is near the other's mirror hash."""
    n = len(perceptual)
    pairs = find_near_duplicate_pairs(np.concatenate((perceptual, mirror)), radius)
    across = pairs[(pairs[:, 0] < n) & (pairs[:, 1] >= n)]
    first, second = across[:, 0], across[:, 1] - n
    distinct = first != second
    first, second = first[distinct], second[distinct]
    distance = np.bitwise_count(perceptual[first] ^ mirror[second]).astype(np.int64)
    rows = np.stack((np.minimum(first, second), np.maximum(first, second)), axis=1)
    return rows.astype(np.int64), distance, np.ones(len(rows), dtype=bool)
