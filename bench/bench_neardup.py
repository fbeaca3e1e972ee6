"""Benchmark exact near-duplicate search against vectorised brute force on random 64-bit hashes.

Plants `--planted` near duplicates (1 to 6 bits from a random original), runs
`find_near_duplicate_pairs` over all hashes, and compares every sampled query against all hashes by
brute force. Brute-force time is extrapolated from the sample to the whole collection; the sample
also checks that multi-index hashing finds every true pair of those queries.

    python -m bench.bench_neardup --n 1000000 --threshold 6 --planted 0.01 --queries 2000

With `--candidate-radius R` it also times the dedup stage's candidate search on the same hashes
(`candidate_pairs`: perceptual, difference and centre-window hash at radius R, each hash looked
up among the five window hashes at R and the mirror hashes at the mirror radius) and prints its
time over the threshold search's, and the time of the previous candidate search (every window
and mirror column searched all against all with the hashes) over it.
"""

import argparse
import resource
import time

import numpy as np

from dataset_assets.imaging.candidates import candidate_pairs
from dataset_assets.imaging.hashing import WINDOWS
from dataset_assets.imaging.neardup import _plan, find_near_duplicate_pairs

_BRUTE_FORCE_BLOCK = 16
_MAX_PLANTED_FLIPS = 6


def planted_hashes(
    n: int, planted: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return `n` hashes; the last `planted * n` copy earlier ones with 1 to 6 bits flipped.

    Also returns the (original, copy) index pairs and how many bits each copy differs by.
    """
    copies = int(n * planted)
    originals = n - copies
    hashes = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    sources = rng.integers(0, originals, size=copies)
    flips = rng.integers(1, _MAX_PLANTED_FLIPS + 1, size=copies)
    ranks = np.argsort(rng.random((copies, 64)), axis=1)
    bits = np.where(ranks < flips[:, None], np.uint64(1), np.uint64(0))
    noise = (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
    hashes[originals:] = hashes[sources] ^ noise
    return hashes, np.stack((sources, np.arange(originals, n)), axis=1), flips


def brute_force_pairs(hashes: np.ndarray, queries: np.ndarray, threshold: int) -> np.ndarray:
    """Return every (query, other) pair within `threshold` as sorted index pairs, by full scan."""
    found = []
    for start in range(0, queries.size, _BRUTE_FORCE_BLOCK):
        block = queries[start : start + _BRUTE_FORCE_BLOCK]
        distances = np.bitwise_count(hashes[block, None] ^ hashes[None, :])
        rows, others = np.nonzero(distances <= threshold)
        rows = block[rows]
        keep = rows != others
        found.append(np.sort(np.stack((rows[keep], others[keep]), axis=1), axis=1))
    return np.unique(np.concatenate(found), axis=0) if found else np.empty((0, 2), np.int64)


def all_against_all_candidates(
    hashes: np.ndarray, gradient: np.ndarray, windows: np.ndarray, mirror: np.ndarray, radius: int
) -> int:
    """The candidate search before lookups: every window column and the mirror column searched
    together with the hashes, all pairs at `radius` (within-column pairs found and dropped)."""
    n = hashes.size
    found = set()
    for column in (hashes, gradient):
        found.update(map(tuple, find_near_duplicate_pairs(column, radius).tolist()))
    for column in (*windows.T, mirror):
        pairs = find_near_duplicate_pairs(np.concatenate((hashes, column)), radius)
        across = pairs[(pairs[:, 0] < n) & (pairs[:, 1] >= n)]
        across[:, 1] -= n
        across = np.sort(across[across[:, 0] != across[:, 1]], axis=1)
        found.update(map(tuple, across.tolist()))
    return len(found)


def recall(expected: np.ndarray, found: np.ndarray, count: int) -> float:
    """Return the share of `expected` index pairs present in `found`."""
    if not len(expected):
        return 1.0
    ordered = np.sort(expected, axis=1)
    return float(
        np.isin(ordered[:, 0] * count + ordered[:, 1], found[:, 0] * count + found[:, 1]).mean()
    )


def peak_rss_mib() -> float:
    """Return the peak resident memory of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--threshold", type=int, default=6)
    parser.add_argument("--planted", type=float, default=0.01)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--candidate-radius", type=int, default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    hashes, planted, flips = planted_hashes(args.n, args.planted, rng)
    within = planted[flips <= args.threshold]
    layout = [(chunk.offset, chunk.bits, chunk.radius) for chunk in _plan(args.n, args.threshold)]
    print(f"hashes: {args.n:,}  threshold: {args.threshold}  planted pairs: {len(planted):,}")
    print(f"chunk layout (offset, bits, radius): {layout}")

    started = time.perf_counter()
    pairs = find_near_duplicate_pairs(hashes, args.threshold)
    mih_seconds = time.perf_counter() - started
    print(f"multi-index hashing: {mih_seconds:.2f} s, {len(pairs):,} pairs found")
    print(f"  recall of planted pairs within threshold: {recall(within, pairs, args.n):.4f}")
    print(f"  peak RSS after the search: {peak_rss_mib():,.0f} MiB")

    queries = rng.choice(args.n, size=min(args.queries, args.n), replace=False)
    started = time.perf_counter()
    truth = brute_force_pairs(hashes, queries, args.threshold)
    sample_seconds = time.perf_counter() - started
    brute_seconds = sample_seconds * args.n / max(queries.size, 1) / 2
    touching = pairs[np.isin(pairs, queries).any(axis=1)]
    same = len(touching) == len(truth) and recall(truth, touching, args.n) == 1.0
    print(
        f"brute force: {queries.size:,} queries x {args.n:,} hashes in {sample_seconds:.2f} s, "
        f"{len(truth):,} true pairs; all pairs (n^2/2) extrapolated: {brute_seconds:,.0f} s"
    )
    print(f"  recall on the sample's true pairs: {recall(truth, pairs, args.n):.4f}")
    print(f"  same pairs as brute force for the sampled queries: {same}")
    print(f"speed-up over brute force: {brute_seconds / mih_seconds:,.0f}x")
    if args.candidate_radius is not None:
        radius = args.candidate_radius
        others = rng.integers(0, 2**64, size=(args.n, len(WINDOWS) + 2), dtype=np.uint64)
        windows, mirror, gradient = others[:, 2:], others[:, 1], others[:, 0]
        started = time.perf_counter()
        baseline = all_against_all_candidates(hashes, gradient, windows, mirror, radius)
        baseline_seconds = time.perf_counter() - started
        started = time.perf_counter()
        found = candidate_pairs(hashes, gradient, windows, mirror, radius, 10**9)
        seconds = time.perf_counter() - started
        print(
            f"candidate search at radius {radius} (8 hashes an image): {seconds:.2f} s, "
            f"{len(found.pairs):,} candidates, {seconds / mih_seconds:.1f}x the threshold search"
        )
        print(
            f"  baseline (each window and mirror column searched with the hashes all against "
            f"all): {baseline_seconds:.2f} s, {baseline:,} candidates; "
            f"{baseline_seconds / seconds:.1f}x the candidate search"
        )
    print(f"peak RSS overall: {peak_rss_mib():,.0f} MiB")


if __name__ == "__main__":
    main()
