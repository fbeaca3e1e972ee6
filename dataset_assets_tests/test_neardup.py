"""Near-duplicate search must return exactly the pairs brute force finds, and cluster them."""

import imagehash
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from dataset_assets.imaging.candidates import MIRROR_RADIUS, candidate_pairs
from dataset_assets.imaging.hashing import CENTRE, WINDOWS
from dataset_assets.imaging.neardup import (
    _plan,
    _search,
    cluster_pairs,
    find_near_duplicate_pairs,
    find_near_pairs_between,
    hamming_distance,
    hash_to_int,
    int_to_hex,
)

THRESHOLDS = [0, 1, 6, 10]


def brute_force(hashes: np.ndarray, threshold: int) -> np.ndarray:
    found = [np.empty((0, 2), dtype=np.int64)]
    for start in range(0, hashes.size, 256):
        distances = np.bitwise_count(hashes[start : start + 256, None] ^ hashes[None, :])
        rows, cols = np.nonzero(distances <= threshold)
        rows += start
        keep = rows < cols
        found.append(np.stack((rows[keep], cols[keep]), axis=1))
    pairs = np.concatenate(found)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def flip_bits(value: np.uint64, count: int, rng: np.random.Generator) -> np.uint64:
    positions = rng.choice(64, size=count, replace=False).astype(np.uint64)
    return value ^ np.bitwise_or.reduce(np.uint64(1) << positions, initial=np.uint64(0))


def random_hashes(count: int, rng: np.random.Generator, one_bit_share: float = 0.5) -> np.ndarray:
    bits = (rng.random((count, 64)) < one_bit_share).astype(np.uint64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def with_planted_neighbours(
    threshold: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """5000 hashes; for each distance 0..threshold+1, 20 copies of random originals that far off."""
    hashes = random_hashes(5000, rng)
    planted = []
    slots = iter(rng.permutation(np.arange(2500, 5000)))
    for distance in range(threshold + 2):
        for original in rng.choice(2500, size=20, replace=False):
            copy = int(next(slots))
            hashes[copy] = flip_bits(hashes[original], distance, rng)
            planted.append((int(original), copy, distance))
    return hashes, planted


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_pairs_equal_brute_force_with_neighbours_planted_at_every_distance(threshold: int) -> None:
    hashes, planted = with_planted_neighbours(threshold, np.random.default_rng(threshold))

    pairs = find_near_duplicate_pairs(hashes, threshold)

    np.testing.assert_array_equal(pairs, brute_force(hashes, threshold))
    found = set(map(tuple, pairs.tolist()))
    for original, copy, distance in planted:
        assert ((min(original, copy), max(original, copy)) in found) == (distance <= threshold)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_fewer_than_two_hashes_have_no_pairs(threshold: int) -> None:
    for hashes in (np.empty(0, dtype=np.uint64), np.array([12345], dtype=np.uint64)):
        pairs = find_near_duplicate_pairs(hashes, threshold)
        assert pairs.shape == (0, 2)
        assert pairs.dtype == np.int64


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_two_hashes_pair_exactly_up_to_the_threshold(threshold: int) -> None:
    rng = np.random.default_rng(7)
    base = random_hashes(1, rng)[0]
    at_limit = np.array([base, flip_bits(base, threshold, rng)])
    beyond = np.array([base, flip_bits(base, threshold + 1, rng)])

    assert find_near_duplicate_pairs(at_limit, threshold).tolist() == [[0, 1]]
    assert find_near_duplicate_pairs(beyond, threshold).tolist() == []


def test_identical_hashes_all_pair_with_each_other_at_threshold_zero() -> None:
    rng = np.random.default_rng(3)
    hashes = random_hashes(1000, rng)
    copies = [10, 400, 401, 999]
    hashes[copies] = hashes[10]

    pairs = find_near_duplicate_pairs(hashes, 0)

    assert pairs.tolist() == [[a, b] for i, a in enumerate(copies) for b in copies[i + 1 :]]


def test_crowded_buckets_from_skewed_hashes_equal_brute_force() -> None:
    hashes = random_hashes(1500, np.random.default_rng(11), one_bit_share=0.04)
    hashes[:300] = hashes[300:600]

    pairs = find_near_duplicate_pairs(hashes, 6)

    expected = brute_force(hashes, 6)
    assert len(expected) > 100_000
    np.testing.assert_array_equal(pairs, expected)


@pytest.mark.parametrize("planned_for", [1_000, 100_000, 1_000_000, 10_000_000])
@pytest.mark.parametrize("threshold", [1, 3, 6, 10])
def test_layouts_planned_for_large_collections_are_exact_on_a_small_one(
    planned_for: int, threshold: int
) -> None:
    rng = np.random.default_rng(planned_for + threshold)
    hashes = random_hashes(2000, rng, one_bit_share=0.1)
    hashes[1000:1200] = [flip_bits(value, 3, rng) for value in hashes[:200]]

    pairs = _search(hashes, threshold, _plan(planned_for, threshold))

    np.testing.assert_array_equal(pairs, brute_force(hashes, threshold))


def test_hashes_with_the_top_bit_set_are_compared_on_all_64_bits() -> None:
    top = 1 << 63
    values = [2**64 - 1, 2**64 - 2, top, top | 1, 0x0F, 0x0E, 0]

    pairs = find_near_duplicate_pairs(np.array(values, dtype=np.uint64), 1)

    assert pairs.tolist() == [[0, 1], [2, 3], [2, 6], [4, 5]]
    assert find_near_duplicate_pairs(np.array(values, dtype=object), 1).tolist() == pairs.tolist()
    assert hamming_distance(2**64 - 1, 0) == 64


@pytest.mark.parametrize("threshold", [-1, 65])
def test_threshold_outside_0_to_64_is_rejected(threshold: int) -> None:
    hashes = np.arange(10, dtype=np.uint64)
    with pytest.raises(ValueError, match=r"threshold must be between 0 and 64 bits, got -?\d+"):
        find_near_duplicate_pairs(hashes, threshold)


def test_negative_or_two_dimensional_hashes_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"integers in 0\.\.2\*\*64-1"):
        find_near_duplicate_pairs(np.array([3, -1]), 2)
    with pytest.raises(ValueError, match="1-D"):
        find_near_duplicate_pairs(np.zeros((2, 2), dtype=np.uint64), 2)


def test_clusters_are_transitive_and_labelled_by_their_smallest_member() -> None:
    pairs = np.array([[5, 7], [2, 5], [7, 9], [3, 8]])

    labels = cluster_pairs(10, pairs)

    assert labels.dtype == np.int64
    assert labels.tolist() == [0, 1, 2, 3, 4, 2, 6, 2, 3, 2]
    np.testing.assert_array_equal(cluster_pairs(10, pairs[::-1, ::-1]), labels)


def test_clustering_without_pairs_leaves_every_item_alone() -> None:
    assert cluster_pairs(4, np.empty((0, 2), dtype=np.int64)).tolist() == [0, 1, 2, 3]
    assert cluster_pairs(0, np.empty((0, 2), dtype=np.int64)).tolist() == []


def test_clustering_rejects_pairs_outside_the_items() -> None:
    with pytest.raises(ValueError, match=r"0\.\.2"):
        cluster_pairs(3, np.array([[0, 3]]))


def test_hex_form_round_trips_including_the_top_bit() -> None:
    for value in (0, 1, 0xDEADBEEF, 2**63, 2**64 - 1):
        text = int_to_hex(value)
        assert len(text) == 16
        assert hash_to_int(text) == value
    assert int_to_hex(255) == "00000000000000ff"
    assert hash_to_int("0xFF") == 255


@pytest.mark.parametrize("bad", ["", "xyz", "1" * 17, -1, 2**64])
def test_malformed_or_out_of_range_hashes_are_rejected(bad: str | int) -> None:
    with pytest.raises(ValueError):
        hash_to_int(bad)


def paint_scene(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (320, 240), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.integers(0, 280), rng.integers(0, 200)
        w, h = rng.integers(20, 120), rng.integers(20, 120)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x, y, x + w, y + h), fill=colour)
    return image.filter(ImageFilter.GaussianBlur(2))


def test_edited_jpeg_copy_clusters_with_its_original_and_other_scenes_stay_apart(
    tmp_path,
) -> None:
    paths = []
    for seed in range(4):
        path = tmp_path / f"scene_{seed}.png"
        paint_scene(seed).save(path)
        paths.append(path)
    copy = tmp_path / "scene_1_edited.jpg"
    with Image.open(paths[1]) as original:
        edited = original.crop((8, 8, 312, 232)).resize((256, 192))
        ImageEnhance.Brightness(edited).enhance(1.15).save(copy, quality=60)
    paths.append(copy)

    hexes = []
    for path in paths:
        with Image.open(path) as image:
            hexes.append(str(imagehash.phash(image)))
    hashes = np.array([hash_to_int(text) for text in hexes], dtype=np.uint64)

    labels = cluster_pairs(len(paths), find_near_duplicate_pairs(hashes, 6))

    assert 0 < hamming_distance(hashes[1], hashes[4]) <= 6
    assert labels.tolist() == [0, 1, 2, 3, 1]


@pytest.mark.parametrize("threshold", [0, 6, 12])
def test_lookups_between_two_sets_equal_brute_force(threshold: int) -> None:
    rng = np.random.default_rng(20 + threshold)
    hashes = random_hashes(3000, rng, one_bit_share=0.3)
    queries = random_hashes(5000, rng, one_bit_share=0.3)
    targets = iter(rng.permutation(np.arange(100, 5000)))
    for distance in range(threshold + 2):
        for source in rng.choice(3000, size=20, replace=False):
            queries[next(targets)] = flip_bits(hashes[source], distance, rng)
    queries[:50] = queries[50:100]

    pairs = find_near_pairs_between(hashes, queries, threshold)

    distances = np.bitwise_count(hashes[:, None] ^ queries[None, :])
    np.testing.assert_array_equal(pairs, np.argwhere(distances <= threshold))
    assert len(pairs) >= 20 * (threshold + 1)


def test_lookups_between_an_empty_set_and_another_find_nothing() -> None:
    hashes = random_hashes(10, np.random.default_rng(5))
    for pair in ((hashes, hashes[:0]), (hashes[:0], hashes)):
        found = find_near_pairs_between(*pair, 6)
        assert found.shape == (0, 2) and found.dtype == np.int64


def test_candidates_are_every_pair_some_hash_or_lookup_brings_within_its_radius() -> None:
    rng = np.random.default_rng(31)
    n, radius = 1500, 10
    perceptual, gradient = random_hashes(n, rng, 0.3), random_hashes(n, rng, 0.3)
    windows = random_hashes(n * len(WINDOWS), rng, 0.3).reshape(n, len(WINDOWS))
    mirror = random_hashes(n, rng, 0.3)
    for copy, original in enumerate(rng.choice(n, size=100, replace=False)):
        perceptual[copy] = flip_bits(perceptual[original], int(rng.integers(0, radius + 3)), rng)
        windows[copy, copy % len(WINDOWS)] = flip_bits(perceptual[original], radius, rng)
        mirror[copy] = flip_bits(perceptual[original], int(rng.integers(0, radius + 1)), rng)

    found = candidate_pairs(perceptual, gradient, windows, mirror, radius, 10**9)

    def close(a: np.ndarray, b: np.ndarray, limit: int) -> np.ndarray:
        return np.bitwise_count(a[:, None] ^ b[None, :]) <= limit

    expected = close(perceptual, perceptual, radius) | close(gradient, gradient, radius)
    expected |= close(windows[:, CENTRE], windows[:, CENTRE], radius)
    for column in windows.T:
        expected |= close(perceptual, column, radius)
    expected |= close(perceptual, mirror, MIRROR_RADIUS)
    expected |= expected.T
    np.testing.assert_array_equal(found.pairs, np.argwhere(np.triu(expected, 1)))
    mirrored = close(perceptual, mirror, MIRROR_RADIUS)
    mirrored |= mirrored.T
    first, second = found.pairs[found.flipped].T
    assert found.flipped.any() and mirrored[first, second].all()
