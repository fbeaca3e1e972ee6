"""Validation throughput: decode-once `inspect_image` against the peers' decode-twice recipe.

The baseline does what cleanvision + imagededup do per image: open and verify, decode at full size
for the quality statistics, decode at full size again for `imagehash.phash`, then make a
thumbnail. Both sides compute the same quality statistics (the baseline on the full image) and run
single-process on the same photo-like JPEGs. Throughput is timed in this process; peak RSS is
measured per approach in a fresh interpreter so one side's peak does not hide the other's.

Run from the repository root with the package importable:

    PYTHONPATH=. python bench/bench_validation.py --n 300 --size 1024x768
"""

import argparse
import io
import multiprocessing
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image, ImageOps

from dataset_assets.imaging.inspect import inspect_image
from dataset_assets.imaging.quality import measure_quality


def photo_like(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """Colour noise with energy in every octave plus sensor grain, roughly a natural photo."""
    half_width, half_height = max(2, width // 2), max(2, height // 2)
    total = np.zeros((half_height, half_width, 3), np.float32)
    cells = 4
    while cells <= max(half_width, half_height):
        coarse = rng.standard_normal((max(2, cells * height // width), cells, 3)).astype(np.float32)
        layer = Image.fromarray(np.clip(coarse * 40 + 128, 0, 255).astype(np.uint8))
        total += np.asarray(layer.resize((half_width, half_height), Image.Resampling.BICUBIC))
        cells *= 2
    scaled = (total - total.mean()) / total.std() * 45 + rng.uniform(90, 160)
    base = Image.fromarray(np.clip(scaled, 0, 255).astype(np.uint8))
    full = np.asarray(base.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    grain = rng.standard_normal((height, width, 3), np.float32) * 6
    return Image.fromarray(np.clip(full + grain, 0, 255).astype(np.uint8))


def write_corpus(folder: Path, count: int, size: tuple[int, int], seed: int) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"img_{index:05d}.jpg"
        photo_like(*size, rng).save(path, "JPEG", quality=90)
        paths.append(path)
    return paths


def decode_once(path: Path) -> None:
    result = inspect_image(path.read_bytes(), path.name)
    assert result.ok, result.message


def decode_twice(path: Path) -> None:
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        full = ImageOps.exif_transpose(image).convert("RGB")
    measure_quality(full, full.width, full.height)
    with Image.open(path) as image:
        str(imagehash.phash(image))
    thumbnail = full.copy()
    thumbnail.thumbnail((128, 128), Image.Resampling.LANCZOS)
    thumbnail.save(io.BytesIO(), "JPEG", quality=85)


APPROACHES: dict[str, Callable[[Path], None]] = {
    "decode-once inspect_image": decode_once,
    "peers: full decode x2": decode_twice,
}


def run(approach: str, paths: list[Path]) -> float:
    """Seconds to process every path with `approach`."""
    work = APPROACHES[approach]
    start = time.perf_counter()
    for path in paths:
        work(path)
    return time.perf_counter() - start


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def rss_of_run(approach: str, paths: list[Path]) -> tuple[float, float]:
    """(RSS before, peak RSS during) a run of `approach` in this interpreter, in MiB.

    On Linux the peak is reset after imports and a warm-up on a few images (plugin and FFT setup),
    so it is the steady-state peak of the run; elsewhere it is the process peak since start.
    """
    run(approach, paths[:3])
    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = _status_mib("VmRSS")
    except OSError:
        before = float("nan")
    run(approach, paths)
    try:
        return before, _status_mib("VmHWM")
    except OSError:
        return before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="number of JPEGs")
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of each JPEG")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    width, height = (int(part) for part in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory(prefix="bench_validation_") as folder:
        start = time.perf_counter()
        paths = write_corpus(Path(folder), args.n, (width, height), args.seed)
        print(
            f"{args.n} photo-like JPEGs {width}x{height} written in "
            f"{time.perf_counter() - start:.1f} s (one process, one thread)"
        )

        for approach in APPROACHES:
            run(approach, paths[:5])
        rates = {approach: args.n / run(approach, paths) for approach in APPROACHES}

        spawn = multiprocessing.get_context("spawn")
        with spawn.Pool(1, maxtasksperchild=1) as pool:
            memory = {
                approach: pool.apply(rss_of_run, (approach, paths)) for approach in APPROACHES
            }

    for approach, rate in rates.items():
        before, peak = memory[approach]
        print(
            f"{approach:28s} {rate:8.1f} images/s   peak RSS {peak:7.1f} MiB "
            f"(+{peak - before:.1f} MiB over {before:.1f} MiB after warm-up)"
        )
    ours, peers = rates.values()
    print(f"{'ratio (decode-once / peers)':28s} {ours / peers:8.2f}x")


if __name__ == "__main__":
    main()
