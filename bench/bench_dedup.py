"""Precision and recall of near-duplicate detection on real photographs with planted edited copies.

Builds a collection from the distinct photographs of `bench.photos`: every photo saved as a
quality-92 JPEG, and for each photo one edited copy, the edit kinds taking turns (crop up to 15%
of a side, rotation of 2 to 5 degrees, a mirror flip, brightness and contrast saved at quality
60, a re-save at quality 40, a resize to 0.25x, a caption bar, saved at quality 85). Hard
negatives are in the collection too: other photographs of the same scene or object (stereo
pairs, two views of a building or a box), the four quarters of each large photo (crops of one
scene that share no pixel) and many same-class photos (birds, fruit, coins...).

Three methods run side by side on the same files: this project's default (`find_clusters` with
the keypoint verifier, exactly what the dedup stage runs), imagededup's PHash at its default
`max_distance_threshold` (10) and cleanvision's near-duplicate check (its default settings).
Every pair of images a method puts together is scored against the truth: per edit kind, recall
(planted copies matched to their original) and precision (pairs involving a copy of that kind
that are right), then the false pairs among the hard negatives.

The peers are not dependencies of the project: install them in the benchmark's own environment
(see bench/README.md). Run from the repository root:

    python -m bench.bench_dedup --cache /tmp/dedup-photos
"""

import argparse
import random
import sys
import tempfile
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterable
from functools import cache, partial
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont, ImageOps

from bench.photos import encode, fetch, photographs, same_scene
from dataset_assets.imaging.inspect import inspect_image
from dataset_assets.imaging.verify import Evidence
from dataset_assets.request import DedupConfig
from dataset_assets.stages.deduplicated_images import HashTable, find_clusters, verify_pairs

Pair = frozenset[str]


def _crop(image: Image.Image, rng: random.Random) -> bytes:
    share = rng.uniform(0.05, 0.15)
    width, height = image.size
    cut_x, cut_y = int(width * share), int(height * share)
    left, top = rng.randint(0, cut_x), rng.randint(0, cut_y)
    return encode(image.crop((left, top, width - cut_x + left, height - cut_y + top)), 85)


def _rotate(image: Image.Image, rng: random.Random) -> bytes:
    angle = rng.choice((-1, 1)) * rng.uniform(2, 5)
    return encode(image.rotate(angle, Image.Resampling.BICUBIC), 85)


def _brightness(image: Image.Image, rng: random.Random) -> bytes:
    brighter = ImageEnhance.Brightness(image).enhance(rng.choice((0.7, 1.3)))
    return encode(ImageEnhance.Contrast(brighter).enhance(rng.choice((0.8, 1.2))), 60)


def _resize(image: Image.Image, rng: random.Random) -> bytes:
    """0.25x, but never below 64 px on the short side: validation rejects what is under 32."""
    scale = max(0.25, min(1.0, 64 / min(image.size)))
    size = (round(image.width * scale), round(image.height * scale))
    return encode(image.resize(size, Image.Resampling.LANCZOS), 85)


def _caption(image: Image.Image, rng: random.Random) -> bytes:
    copy = image.copy()
    draw = ImageDraw.Draw(copy)
    size = max(10, copy.height // 14)
    font = ImageFont.load_default(size=size)
    draw.rectangle((0, copy.height - int(size * 1.6), copy.width, copy.height), fill=(0, 0, 0))
    draw.text((size // 2, copy.height - int(size * 1.4)), "(c) stock 2026", fill="white", font=font)
    return encode(copy, 85)


EDITS: dict[str, Callable[[Image.Image, random.Random], bytes]] = {
    "crop 5-15%": _crop,
    "rotate 2-5 deg": _rotate,
    "flip": lambda image, rng: encode(ImageOps.mirror(image), 85),
    "brightness+contrast, q60": _brightness,
    "re-save q40": lambda image, rng: encode(image, 40),
    "resize 0.25x": _resize,
    "caption overlay": _caption,
}


def build(cache: Path, folder: Path, seed: int) -> tuple[dict[str, str], dict[str, str], set[Pair]]:
    """Write the collection; return each file's group, each copy's edit, hard-negative pairs."""
    rng = random.Random(seed)
    group: dict[str, str] = {}
    kind: dict[str, str] = {}
    negatives: set[Pair] = set()
    root = fetch(cache)
    by_photo: dict[str, list[str]] = defaultdict(list)
    kinds = list(EDITS)
    for index, (name, image) in enumerate(photographs(root)):
        original = f"p{index:04d}.jpg"
        (folder / original).write_bytes(encode(image, 92))
        group[original] = name
        by_photo[name.split("#")[0]].append(original)
        edit = kinds[index % len(kinds)]
        copy = f"p{index:04d}_copy.jpg"
        (folder / copy).write_bytes(EDITS[edit](image, rng))
        group[copy] = name
        kind[copy] = edit
    for quarters in by_photo.values():
        negatives.update(frozenset(pair) for pair in combinations(quarters, 2))
    for index, pair in enumerate(same_scene(root)):
        files = []
        for side, (name, image) in enumerate(pair):
            file = f"s{index:02d}{side}.jpg"
            (folder / file).write_bytes(encode(image, 92))
            group[file] = name
            files.append(file)
        negatives.add(frozenset(files))
    return group, kind, negatives


@cache
def hash_table(folder: Path, files: tuple[str, ...]) -> HashTable:
    """The dedup stage's table of `files`, from validation's own inspection of each."""
    rows = []
    for index, file in enumerate(files):
        data = (folder / file).read_bytes()
        found = inspect_image(data, file)
        validation = {
            "phash": found.perceptual_hash,
            "mirror_hash": found.mirror_hash,
            "gradient_hash": found.gradient_hash,
            "window_hashes": found.window_hashes,
            "pixel_hash": found.pixel_hash,
            "encoding_quality": found.encoding_quality,
            "width": found.width,
            "height": found.height,
            "sharpness": found.sharpness,
        }
        row = {"image_id": f"{index:x}", "size_bytes": len(data), "validation": validation}
        rows.append((0, row))
    return HashTable.from_rows(rows)


def ours(folder: Path, files: list[str]) -> Iterable[set[str]]:
    """This project's default: validation's hashes, then candidates and verification."""
    verifier = partial(verify_pairs, Path.read_bytes, [folder / file for file in files])
    for cluster in find_clusters(hash_table(folder, tuple(files)), DedupConfig(), verifier):
        yield {files[cluster["keeper"]]} | {files[m["index"]] for m in cluster["members"]}


def verification_speed(folder: Path, files: list[str]) -> str:
    """Seconds to verify this collection's candidate pairs in threads and in processes."""
    candidates: list[tuple[np.ndarray, np.ndarray]] = []

    def keep(pairs: np.ndarray, flipped: np.ndarray) -> list[Evidence | None]:
        candidates.append((pairs, flipped))
        return [None] * len(pairs)

    find_clusters(hash_table(folder, tuple(files)), DedupConfig(), keep)
    ((pairs, flipped),) = candidates
    paths = [folder / file for file in files]
    seconds = {}
    for pool in ("threads", "processes"):
        started = time.perf_counter()
        verify_pairs(Path.read_bytes, paths, pairs, flipped, pool=pool)
        seconds[pool] = time.perf_counter() - started
    return (
        f"verification of {len(pairs)} candidate pairs: threads {seconds['threads']:.1f} s, "
        f"processes {seconds['processes']:.1f} s ({seconds['threads'] / seconds['processes']:.2f}x)"
    )


def imagededup_phash(folder: Path, files: list[str]) -> Iterable[set[str]]:
    """imagededup's PHash at its default threshold (10), without its torch-only modules."""
    import imagededup

    base = Path(imagededup.__file__).parent
    for name in ("methods", "utils"):
        module = types.ModuleType(f"imagededup.{name}")
        module.__path__ = [str(base / name)]
        sys.modules[f"imagededup.{name}"] = module
    from imagededup.methods.hashing import PHash

    hasher = PHash(verbose=False)
    encodings = hasher.encode_images(image_dir=str(folder))
    found = hasher.find_duplicates(encoding_map=encodings)
    for file, others in found.items():
        for other in others:
            yield {file, other}


def cleanvision_near(folder: Path, files: list[str]) -> Iterable[set[str]]:
    """cleanvision's near-duplicate issue with its default settings."""
    from cleanvision import Imagelab

    lab = Imagelab(data_path=str(folder))
    lab.find_issues({"near_duplicates": {}}, verbose=False)
    for group in lab.info["near_duplicates"]["sets"]:
        yield {Path(path).name for path in group}


def pairs_of(groups: Iterable[set[str]]) -> set[Pair]:
    return {frozenset(pair) for group in groups for pair in combinations(sorted(group), 2)}


def score(
    found: set[Pair], group: dict[str, str], kind: dict[str, str], negatives: set[Pair]
) -> dict[str, tuple[float, float]]:
    """(recall, precision) per edit kind, and (false pairs, total) for the hard negatives."""
    rows = {}
    for edit in EDITS:
        copies = [file for file, k in kind.items() if k == edit]
        truth = {frozenset((copy, copy.replace("_copy", ""))) for copy in copies}
        involved = {pair for pair in found if any(kind.get(file) == edit for file in pair)}
        right = {pair for pair in involved if len({group[file] for file in pair}) == 1}
        rows[edit] = (
            len(truth & found) / len(truth),
            len(right) / len(involved) if involved else 1.0,
        )
    wrong = {pair for pair in found if len({group[file] for file in pair}) > 1}
    right = len(found) - len(wrong)
    rows["all planted copies"] = (
        len({p for p in found if any(f in kind for f in p)} - wrong) / len(kind),
        right / len(found) if found else 1.0,
    )
    rows["hard negatives matched"] = (len(negatives & found), len(negatives))
    rows["false pairs (all)"] = (len(wrong), len(found))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "dedup-photos")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        group, kind, negatives = build(args.cache, folder, args.seed)
        files = sorted(group)
        print(
            f"{len(files)} images: {len(files) - len(kind)} distinct photographs, {len(kind)} "
            f"edited copies, {len(negatives)} hard-negative pairs"
        )
        methods = {
            "dataset-assets": ours,
            "imagededup PHash": imagededup_phash,
            "cleanvision": cleanvision_near,
        }
        results = {}
        for name, method in methods.items():
            started = time.perf_counter()
            found = pairs_of(method(folder, files))
            results[name] = score(found, group, kind, negatives)
            print(f"{name}: {time.perf_counter() - started:.1f} s")
        print(verification_speed(folder, files))
    header = "| edit kind | " + " | ".join(f"{name} R / P" for name in methods) + " |"
    print(header)
    print("| --- |" + " ---: |" * len(methods))
    for row in next(iter(results.values())):
        cells = []
        for name in methods:
            first, second = results[name][row]
            cells.append(
                f"{first:.3f} / {second:.3f}" if isinstance(first, float) else f"{first} / {second}"
            )
        print(f"| {row} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
