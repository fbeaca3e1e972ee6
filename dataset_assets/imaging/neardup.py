"""Exact near-duplicate search over 64-bit perceptual hashes that stays fast at millions of images.

Near-identical images (re-encoded, resized, lightly edited) have perceptual hashes (phash, dhash,
whash) a few bits apart. Comparing every pair is quadratic, and a BK-tree visits a large share of
its nodes per query at these radii, so neither gets far past a few hundred thousand images.

This module uses multi-index hashing. The 64 bits are split into chunks, and chunk `c` is given a
radius `r_c` with `sum(r_c + 1) == threshold + 1`; by the pigeonhole principle two hashes within
`threshold` bits of each other differ in at most `r_c` bits of some chunk. Each chunk is indexed
in a direct-address table, so only hashes whose chunks (nearly) agree are compared, and every
candidate is verified on all 64 bits. The answer is exactly the set brute force returns. The
chunk layout is chosen from the collection size so that buckets hold about one hash. Lookups and
comparisons run in fixed-size numpy batches, so memory beyond the result and a few arrays of
length n stays constant however many candidates a collection produces.
"""

import math
import operator
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

HASH_BITS = 64

_MAX_CHUNK_BITS = 24
# Items handled per vectorised step; this is what bounds the working memory of a search.
_BATCH = 1 << 17

# Rough per-item costs in nanoseconds, used only to choose a chunk layout.
_COST_TABLE_SLOT = 1.0
_COST_LOOKUP = 6.0
_COST_CANDIDATE = 8.0
_COST_INDEXED_HASH = 60.0
_COST_MASK_GROUP = 25_000.0


@dataclass(frozen=True)
class _Chunk:
    """A run of `bits` hash bits starting at `offset`, searched within `radius` flipped bits."""

    offset: int
    bits: int
    radius: int

    def keys(self, hashes: np.ndarray) -> np.ndarray:
        shifted = hashes >> np.uint64(self.offset)
        return (shifted & np.uint64((1 << self.bits) - 1)).astype(np.int32)

    def distances(self, xor: np.ndarray) -> np.ndarray:
        return np.bitwise_count((xor >> np.uint64(self.offset)) & np.uint64((1 << self.bits) - 1))


def hash_to_int(hex_or_int: str | int) -> int:
    """Return a 64-bit hash as an int, from an int or hex text like `str(imagehash.phash(im))`."""
    if isinstance(hex_or_int, str):
        text = hex_or_int.strip().lower().removeprefix("0x")
        if not 0 < len(text) <= HASH_BITS // 4:
            raise ValueError(f"hash {hex_or_int!r} is not 1 to 16 hex digits")
        try:
            return int(text, 16)
        except ValueError:
            raise ValueError(f"hash {hex_or_int!r} is not a hex string") from None
    if isinstance(hex_or_int, bool):
        raise TypeError("a hash must be an int or a hex string, not a bool")
    value = operator.index(hex_or_int)
    if not 0 <= value < 1 << HASH_BITS:
        raise ValueError(f"hash {value} is outside the unsigned 64-bit range")
    return value


def int_to_hex(value: int) -> str:
    """Return the 16-hex-digit, zero-padded form used to store a 64-bit hash."""
    return f"{hash_to_int(value):016x}"


def hamming_distance(a: int, b: int) -> int:
    """Return the number of bits in which two 64-bit hashes differ."""
    return (hash_to_int(a) ^ hash_to_int(b)).bit_count()


def find_near_duplicate_pairs(hashes: np.ndarray, threshold: int) -> np.ndarray:
    """Return every pair of hashes at most `threshold` bits apart.

    `hashes` is a 1-D array of unsigned 64-bit hashes; `threshold` is 0 (identical hashes only) to
    64. The result is an int64 array of shape `(k, 2)` whose rows `(i, j)` are indices into
    `hashes` with `i < j`, unique and sorted, and it is exactly what comparing all pairs would give.
    """
    values = _as_hash_array(hashes)
    limit = _checked_threshold(threshold)
    if values.size < 2:
        return np.empty((0, 2), dtype=np.int64)
    return _search(values, limit, _plan(values.size, limit))


def find_near_pairs_between(hashes: np.ndarray, queries: np.ndarray, threshold: int) -> np.ndarray:
    """Return every `(i, q)` with `hashes[i]` at most `threshold` bits from `queries[q]`.

    The same multi-index search, with the index built on `hashes` only and each query looked up
    in it: pairs within `hashes` or within `queries` are never enumerated. The result is an
    int64 array of shape `(k, 2)`, unique and sorted, exactly what comparing every hash with
    every query would give.
    """
    values = _as_hash_array(hashes)
    asked = _as_hash_array(queries)
    limit = _checked_threshold(threshold)
    if values.size == 0 or asked.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    chunks = _plan(values.size, limit)
    found = [np.empty(0, dtype=np.int64)]
    for index in range(len(chunks)):
        found.extend(_chunk_pairs_between(values, asked, chunks, index, limit))
    codes = np.sort(np.concatenate(found))
    return np.stack((codes // asked.size, codes % asked.size), axis=1)


def cluster_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """Group `n` items into clusters joined by `pairs`, transitively: a~b and b~c make one cluster.

    Returns an int64 label per item: the smallest item index in its cluster, so labels are stable
    across runs and an item in no pair is labelled with its own index.
    """
    size = operator.index(n)
    if size < 0:
        raise ValueError(f"n must be non-negative, got {size}")
    edges = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    if edges.size and (edges.min() < 0 or edges.max() >= size):
        raise ValueError(f"pair indices must lie in 0..{size - 1}")
    if size == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_array(
        (np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])), shape=(size, size)
    )
    _, components = connected_components(graph, directed=False)
    _, smallest = np.unique(components, return_index=True)
    return smallest[components].astype(np.int64)


def _as_hash_array(hashes: np.ndarray) -> np.ndarray:
    values = np.asarray(hashes)
    if values.ndim != 1:
        raise ValueError(f"hashes must be a 1-D array, got shape {values.shape}")
    if values.dtype == np.uint64:
        return values
    if values.size == 0:
        return values.astype(np.uint64)
    if values.dtype.kind == "u" or (values.dtype.kind == "i" and values.min() >= 0):
        return values.astype(np.uint64)
    if values.dtype.kind == "O":
        return np.array([hash_to_int(value) for value in values], dtype=np.uint64)
    raise ValueError(f"hashes must be integers in 0..2**64-1, got dtype {values.dtype} values")


def _checked_threshold(threshold: int) -> int:
    if isinstance(threshold, bool):
        raise TypeError("threshold must be an int, not a bool")
    limit = operator.index(threshold)
    if not 0 <= limit <= HASH_BITS:
        raise ValueError(f"threshold must be between 0 and {HASH_BITS} bits, got {limit}")
    return limit


def _variant_count(bits: int, radius: int) -> int:
    return sum(math.comb(bits, flips) for flips in range(min(bits, radius) + 1))


def _chunk_cost(count: int, bits: int, radius: int) -> float:
    """Estimate the nanoseconds one chunk takes to search over uniformly random hashes."""
    slots = 1 << bits
    load = count / slots
    variants = _variant_count(bits, radius)
    occupied = -slots * math.expm1(-load)
    lookups = occupied * (variants - 1) / 2
    candidates = count * load * variants / 2
    return (
        _COST_TABLE_SLOT * slots
        + _COST_LOOKUP * lookups
        + _COST_CANDIDATE * candidates
        + _COST_INDEXED_HASH * count
        + _COST_MASK_GROUP * bits * (radius > 0)
    )


def _layouts(threshold: int) -> Iterator[tuple[_Chunk, ...]]:
    """Yield chunk layouts whose radii satisfy `sum(radius + 1) == threshold + 1`.

    Radii are spread as evenly as possible; bits left over go to the chunks with larger radii.
    """
    for parts in range(1, min(threshold + 1, HASH_BITS) + 1):
        base, extra = divmod(threshold + 1, parts)
        radii = [base - 1 + (part < extra) for part in range(parts)]
        for width in range(1, min(_MAX_CHUNK_BITS, HASH_BITS // parts) + 1):
            spare = HASH_BITS - parts * width if width == HASH_BITS // parts else 0
            widths = [width + (part < spare) for part in range(parts)]
            offsets = [sum(widths[:part]) for part in range(parts)]
            yield tuple(map(_Chunk, offsets, widths, radii))


def _plan(count: int, threshold: int) -> tuple[_Chunk, ...]:
    """Choose the layout expected to search `count` hashes fastest at `threshold`."""
    return min(
        _layouts(threshold),
        key=lambda chunks: sum(_chunk_cost(count, chunk.bits, chunk.radius) for chunk in chunks),
    )


def _search(values: np.ndarray, limit: int, chunks: tuple[_Chunk, ...]) -> np.ndarray:
    count = values.size
    found = [np.empty(0, dtype=np.int64)]
    for index in range(len(chunks)):
        found.extend(_chunk_pairs(values, chunks, index, limit))
    codes = np.sort(np.concatenate(found))
    return np.stack((codes // count, codes % count), axis=1)


def _mask_groups(bits: int, radius: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(high, masks)`: every mask of 1 to `radius` set bits whose top set bit is `high`."""
    if radius < 1:
        return
    lower = np.zeros(1, dtype=np.int32)
    weights = np.zeros(1, dtype=np.int32)
    for high in range(bits):
        top = np.int32(1 << high)
        yield high, lower | top
        grow = weights < radius - 1
        lower = np.concatenate((lower, lower[grow] | top))
        weights = np.concatenate((weights, weights[grow] + 1))


def _segments(sizes: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Enumerate `sum(sizes)` items as `(owner, local)` arrays, at most `_BATCH` items at a time."""
    ends = np.cumsum(sizes)
    begins = ends - sizes
    total = int(ends[-1]) if ends.size else 0
    for start in range(0, total, _BATCH):
        stop = min(start + _BATCH, total)
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(ends, stop - 1, side="right")) + 1
        spans = np.minimum(ends[first:last], stop) - np.maximum(begins[first:last], start)
        owner = np.repeat(np.arange(first, last), spans)
        yield owner, np.arange(start, stop) - begins[owner]


def _chunk_pairs(
    values: np.ndarray, chunks: tuple[_Chunk, ...], index: int, limit: int
) -> Iterator[np.ndarray]:
    """Yield pairs first seen in chunk `index`, each encoded as `i * n + j` with `i < j`."""
    chunk = chunks[index]
    count = values.size
    keys = chunk.keys(values)
    order = np.argsort(keys)
    sorted_keys = keys[order]
    sorted_hashes = values[order]
    table = np.zeros((1 << chunk.bits) + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << chunk.bits), out=table[1:])
    occupied = table[1:] > table[:-1]
    bucket_starts = np.flatnonzero(np.diff(sorted_keys, prepend=-1))
    bucket_sizes = np.diff(bucket_starts, append=count)
    bucket_keys = sorted_keys[bucket_starts]

    def verified(left: np.ndarray, right: np.ndarray) -> np.ndarray:
        keep = _first_found(sorted_hashes[left] ^ sorted_hashes[right], chunks, index, limit)
        first, second = order[left[keep]], order[right[keep]]
        return np.minimum(first, second) * count + np.maximum(first, second)

    crowded = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    for owner, local in _segments(table[sorted_keys[crowded] + 1] - crowded - 1):
        position = crowded[owner]
        yield verified(position, position + 1 + local)

    for high, masks in _mask_groups(chunk.bits, chunk.radius):
        side = np.flatnonzero(((bucket_keys >> high) & 1) == 0)
        rows = max(1, _BATCH // masks.size)
        for row in range(0, side.size, rows):
            buckets = side[row : row + rows]
            partner_keys = (bucket_keys[buckets, None] ^ masks).ravel()
            hits = np.flatnonzero(occupied.take(partner_keys))
            own = buckets[hits // masks.size]
            partner_keys = partner_keys[hits]
            partner_starts = table[partner_keys]
            partner_sizes = table[partner_keys + 1] - partner_starts
            for pair, local in _segments(bucket_sizes[own] * partner_sizes):
                step, offset = np.divmod(local, partner_sizes[pair])
                yield verified(bucket_starts[own[pair]] + step, partner_starts[pair] + offset)


def _first_found(xor: np.ndarray, chunks: tuple[_Chunk, ...], index: int, limit: int) -> np.ndarray:
    """Indices of the pairs (given as the xor of their hashes) within `limit` bits that no chunk
    before `index` matches: each pair is reported by the first chunk that finds it."""
    keep = np.flatnonzero(np.bitwise_count(xor) <= limit)
    for earlier in chunks[:index]:
        keep = keep[earlier.distances(xor[keep]) > earlier.radius]
    return keep


def _chunk_pairs_between(
    values: np.ndarray, asked: np.ndarray, chunks: tuple[_Chunk, ...], index: int, limit: int
) -> Iterator[np.ndarray]:
    """Yield `(i, q)` pairs first seen in chunk `index`, each encoded as `i * len(asked) + q`.

    Queries sharing a chunk key are looked up once: at most one lookup per key and mask.
    """
    chunk = chunks[index]
    keys = chunk.keys(values)
    order = np.argsort(keys, kind="stable")
    sorted_hashes = values[order]
    table = np.zeros((1 << chunk.bits) + 1, dtype=np.int64)
    np.cumsum(np.bincount(keys, minlength=1 << chunk.bits), out=table[1:])
    asked_keys = chunk.keys(asked)
    asked_order = np.argsort(asked_keys, kind="stable")
    sorted_asked = asked[asked_order]
    group_keys, group_starts, group_sizes = np.unique(
        asked_keys[asked_order], return_index=True, return_counts=True
    )
    masks = np.concatenate(
        [np.zeros(1, np.int32), *(group for _, group in _mask_groups(chunk.bits, chunk.radius))]
    )
    rows = max(1, _BATCH // masks.size)
    for row in range(0, group_keys.size, rows):
        groups = np.arange(row, min(row + rows, group_keys.size))
        partner_keys = (group_keys[groups, None] ^ masks).ravel()
        starts = table[partner_keys]
        sizes = table[partner_keys + 1] - starts
        hits = np.flatnonzero(sizes)
        owners, starts, sizes = groups[hits // masks.size], starts[hits], sizes[hits]
        for pair, local in _segments(group_sizes[owners] * sizes):
            step, offset = np.divmod(local, sizes[pair])
            position = starts[pair] + offset
            query = group_starts[owners[pair]] + step
            xor = sorted_hashes[position] ^ sorted_asked[query]
            keep = _first_found(xor, chunks, index, limit)
            yield order[position[keep]] * asked.size + asked_order[query[keep]]
