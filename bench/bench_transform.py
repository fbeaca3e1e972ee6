"""Transform throughput: the `processed_images` stage against a naive single-process Pillow loop.

Writes `--n` photo-like JPEGs (quality 90) into two class folders, runs the whole
`dataset-assets run` job on them in a child process with Resize 0.5, GrayScale and Noise 0.1, and
reads the transform stage's own duration from the metadata store. The baseline, in another child,
fully decodes every image, resizes it to half with LANCZOS, converts it to L, adds the same
gaussian noise with numpy and saves a quality-90 JPEG. Each child's peak RSS comes from `os.wait4`,
so neither hides the other's.

    python bench/bench_transform.py --n 500 --size 1600x1200 --workers 0
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

OPERATIONS = [{"Resize": {"scaling_factor": 0.5}}, "GrayScale", {"Noise": {"noise_level": 0.1}}]
REQUEST_ID = "bench-transform"


def photo_like(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A smooth colour field from its own random coarse grid, plus fine noise like a sensor's."""
    cells = (int(rng.integers(4, 9)), int(rng.integers(4, 9)), 3)
    coarse = Image.fromarray(rng.integers(0, 256, cells, dtype=np.uint8))
    smooth = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), np.float32)
    grain = rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(6)
    return Image.fromarray(np.clip(smooth + grain, 0, 255).astype(np.uint8))


def write_corpus(folder: Path, count: int, size: tuple[int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    for index in range(count):
        label = folder / ("cats" if index % 2 else "dogs")
        label.mkdir(parents=True, exist_ok=True)
        photo_like(*size, rng).save(label / f"{index:05d}.jpg", quality=90)


def run_child(command: list[str], env: dict[str, str] | None = None) -> tuple[str, float, float]:
    """The child's stdout, wall time in seconds and peak RSS in MiB; fails loudly if it fails."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=output, env=env)
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        output.seek(0)
        text = output.read()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{' '.join(command)} exited with {code}:\n{text}")
    return text, wall, usage.ru_maxrss / 1024


def output_size(folder: Path) -> str:
    first = next(folder.rglob("*.jpg"), None)
    if first is None:
        return "none"
    with Image.open(first) as image:
        return f"{image.width}x{image.height} {image.mode}"


def run_stage(source: Path, work: Path, workers: int) -> dict[str, object]:
    """Run the whole job in a child; the transform stage's figures come from `status --json`."""
    request = work / "request.json"
    request.write_text(
        json.dumps(
            {
                "request_id": REQUEST_ID,
                "dataset_key": str(source),
                "operations": OPERATIONS,
                "transform": {"workers": workers},
            }
        )
    )
    home = work / "home"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DATASET_ASSETS_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    cli = str(Path(sys.executable).with_name("dataset-assets"))
    printed, wall, peak = run_child([cli, "run", str(request), "--json"], env)
    counts = json.loads(printed.strip().splitlines()[-1])["counts"]
    status, _, _ = run_child([cli, "status", REQUEST_ID, "--json"], env)
    stage = json.loads(status)["stages"]["processed_images"]
    return {
        "count": stage["count"],
        "seconds": stage["duration_s"],
        "wall": wall,
        "peak": peak,
        "duplicates": counts["duplicates"],
        "output": output_size(home / "blobs" / "processed"),
    }


def naive_operations(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The seed operations as a throw-away script writes them: half size, grey, noise 0.1."""
    half = (round(image.width / 2), round(image.height / 2))
    gray = image.resize(half, Image.Resampling.LANCZOS).convert("L")
    pixels = np.asarray(gray, np.float32)
    noisy = pixels + rng.standard_normal(pixels.shape, dtype=np.float32) * np.float32(25.5)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def baseline(source: Path, output: Path) -> None:
    """The naive loop, run as a child: prints its image count and loop time as JSON."""
    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = sorted(source.rglob("*.jpg"))
    started = time.perf_counter()
    for index, path in enumerate(paths):
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        naive_operations(image, rng).save(output / f"{index:05d}.jpg", quality=90)
    print(json.dumps({"count": len(paths), "seconds": time.perf_counter() - started}))


def run_baseline(source: Path, work: Path) -> dict[str, object]:
    output = work / "baseline"
    command = [sys.executable, __file__, "--baseline", str(source), "--out", str(output)]
    printed, wall, peak = run_child(command)
    figures = json.loads(printed.strip().splitlines()[-1])
    return {**figures, "wall": wall, "peak": peak, "output": output_size(output)}


def report(args: argparse.Namespace, stage: dict[str, object], naive: dict[str, object]) -> None:
    stage_rate = float(stage["count"]) / float(stage["seconds"])
    naive_rate = float(naive["count"]) / float(naive["seconds"])
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or "one per core"
    print(f"{args.n} images of {args.size}, workers={workers}, {cores} cores")
    print(f"duplicates removed before the transform: {stage['duplicates']}")
    print(f"{'':<24}{'stage':>14}{'baseline':>14}")
    rows = [
        ("images transformed", stage["count"], naive["count"]),
        ("transform seconds", f"{stage['seconds']:.2f}", f"{naive['seconds']:.2f}"),
        ("images/s", f"{stage_rate:.1f}", f"{naive_rate:.1f}"),
        ("child wall seconds", f"{stage['wall']:.2f}", f"{naive['wall']:.2f}"),
        ("peak RSS MiB", f"{stage['peak']:.0f}", f"{naive['peak']:.0f}"),
        ("output image", stage["output"], naive["output"]),
    ]
    for name, ours, theirs in rows:
        print(f"{name:<24}{ours!s:>14}{theirs!s:>14}")
    print(f"stage / baseline images/s: {stage_rate / naive_rate:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", default="1600x1200", help="WIDTHxHEIGHT of the generated JPEGs")
    parser.add_argument("--workers", type=int, default=0, help="threads per shard; 0 = per core")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--baseline", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(args.baseline, args.out)
        return

    width, height = (int(side) for side in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench_transform_"))
    try:
        source = work / "images"
        write_corpus(source, args.n, (width, height), args.seed)
        report(args, run_stage(source, work, args.workers), run_baseline(source, work))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work)


if __name__ == "__main__":
    main()
