"""Whole runs: `dataset-assets run` against a naive single-process Pillow loop doing the same work.

Writes `--n` photo-like JPEGs (see `bench_transform.photo_like`) with a few planted duplicates
(exact copies and quality-80 re-saves), then runs, each in its own child process and `--repeat`
times (the table shows medians):

- `dataset-assets run` with the seed operations (Resize 0.5, GrayScale, Noise 0.1), in a fresh
  `DATASET_ASSETS_HOME`, exactly as a user types it;
- the naive loop: for each file open and verify, decode, `imagehash.phash` (skipping a file whose
  hash was seen), LANCZOS resize to half, grayscale, gaussian noise, save at quality 90.

Wall time, CPU time (user + system of the child and every process it waited for, from `os.wait4`),
cores used (CPU / wall), images per second and peak memory of the whole process tree (PSS,
sampled from /proc every 100 ms: a pool's workers count, shared pages once) are printed with the
ratios, then each stage's own seconds, then a 10-image run whose wall time less its stages'
seconds is the fixed overhead (next to Dagster's own floor: importing it and materializing seven
no-op assets in process), and optionally a run of many small images.

    python bench/bench_end_to_end.py                      # 2,000 x 1024x768, median of 3
    python bench/bench_end_to_end.py --n 500 --repeat 1   # a quick look
    python bench/bench_end_to_end.py --small 10000        # also 10,000 images of 96x72

`--cli` times another `dataset-assets` command (another checkout's, say) on the same files, for
figures before and after a change.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from dataset_assets.stages.tracking import STAGES

sys.path.insert(0, str(Path(__file__).parent))
from bench_transform import OPERATIONS, naive_operations, photo_like


def write_corpus(folder: Path, count: int, size: tuple[int, int], seed: int) -> int:
    """`count` files in two class folders; every 50th is a copy of an earlier one (every other
    copy re-saved at quality 80). Returns how many copies were planted."""
    rng = np.random.default_rng(seed)
    planted = 0
    for index in range(count):
        label = folder / ("cats" if index % 2 else "dogs")
        label.mkdir(parents=True, exist_ok=True)
        target = label / f"{index:05d}.jpg"
        if index % 50 == 49:
            original = sorted(folder.rglob(f"{index - 25:05d}.jpg"))[0]
            if planted % 2:
                shutil.copyfile(original, target)
            else:
                with Image.open(original) as image:
                    image.save(target, quality=80)
            planted += 1
        else:
            photo_like(*size, rng).save(target, quality=90)
    return planted


def sample_tree(root: int, cpu: dict[int, float]) -> int:
    """Proportional set size (PSS) in bytes of `root` and all its descendants, from /proc; each
    one's own CPU seconds so far go into `cpu` by pid.

    PSS splits each shared page between the processes that map it, so worker processes forked
    from one server are not counted as if each had its own copy of the shared libraries. CPU is
    read per process because `os.wait4` misses a fork server's workers, which the run never
    waits for. Descendants come from each task's `children` file, not a scan of all of /proc.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            for task in Path(f"/proc/{pid}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
        except OSError:
            continue
        cpu[pid] = (int(stat[11]) + int(stat[12])) / ticks
        total += next(
            int(line.split()[1]) * 1024 for line in rollup.splitlines() if line.startswith("Pss:")
        )
    return total


def run_child(command: list[str], env: dict[str, str] | None = None) -> dict[str, object]:
    """The child's stdout, wall and CPU seconds and the peak PSS of its process tree (MiB)."""
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        child = subprocess.Popen(command, stdout=output, env=env)
        peak = 0
        cpu: dict[int, float] = {}
        finished = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not finished.wait(0.1):
                peak = max(peak, sample_tree(child.pid, cpu))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        finished.set()
        sampler.join()
        output.seek(0)
        text = output.read()
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"{' '.join(command)} exited with {code}:\n{text}")
    return {
        "stdout": text,
        "wall": wall,
        "cpu": max(usage.ru_utime + usage.ru_stime, sum(cpu.values())),
        "peak": peak / 2**20,
    }


def run_pipeline(source: Path, work: Path, cli: str) -> dict[str, object]:
    """`cli run` in a fresh home; the stages' seconds come from `status --json`."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    request = home / "request.json"
    request.write_text(
        json.dumps({"request_id": "bench", "dataset_key": str(source), "operations": OPERATIONS})
    )
    dagster_home = home / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DATASET_ASSETS_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    figures = run_child([cli, "run", str(request), "--json"], env)
    counts = json.loads(str(figures["stdout"]).strip().splitlines()[-1])["counts"]
    status = run_child([cli, "status", "bench", "--json"], env)
    stages = json.loads(str(status["stdout"]))["stages"]
    shutil.rmtree(home)
    return {
        **figures,
        "count": counts["processed"],
        "duplicates": counts["duplicates"],
        "stages": {stage: stages[stage]["duration_s"] for stage in STAGES},
    }


def naive(source: Path, output: Path) -> None:
    """The naive loop, run as a child: prints how many images it wrote."""
    import imagehash

    output.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    seen: set[str] = set()
    written = 0
    for path in sorted(source.rglob("*.jpg")):
        with Image.open(path) as opened:
            opened.verify()
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        key = str(imagehash.phash(image))
        if key in seen:
            continue
        seen.add(key)
        result = naive_operations(image, rng)
        result.save(output / f"{path.parent.name}_{path.stem}.jpg", quality=90)
        written += 1
    print(json.dumps({"count": written}))


def run_naive(source: Path, work: Path) -> dict[str, object]:
    output = Path(tempfile.mkdtemp(prefix="naive-", dir=work))
    figures = run_child([sys.executable, __file__, "--naive", str(source), "--out", str(output)])
    shutil.rmtree(output)
    return {**figures, **json.loads(str(figures["stdout"]).strip().splitlines()[-1])}


def floor() -> None:
    """Dagster's own floor, run as a child: import it, then materialize seven chained no-op
    assets in process on a persistent instance, as `dataset-assets run` does."""
    from dagster import AssetIn, DagsterInstance, Definitions, asset, define_asset_job

    started = time.perf_counter()

    @asset
    def a0() -> int:
        return 0

    chain = [a0]
    for index in range(1, 7):

        @asset(name=f"a{index}", ins={"previous": AssetIn(chain[-1].key)})
        def step(previous: int) -> int:
            return previous + 1

        chain.append(step)
    job = Definitions(assets=chain, jobs=[define_asset_job("chain")]).resolve_job_def("chain")
    quiet = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}
    job.execute_in_process(run_config=quiet, instance=DagsterInstance.get())
    print(json.dumps({"seconds": time.perf_counter() - started}))


def run_floor(work: Path) -> dict[str, object]:
    home = Path(tempfile.mkdtemp(prefix="floor-", dir=work))
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    figures = run_child([sys.executable, __file__, "--floor"], env)
    shutil.rmtree(home)
    return figures


def median_of(runs: list[dict[str, object]]) -> dict[str, object]:
    """The run with the median wall time, so its figures belong together."""
    return sorted(runs, key=lambda run: float(run["wall"]))[len(runs) // 2]


def compare(
    label: str, source: Path, work: Path, count: int, repeat: int, cli: str
) -> dict[str, object]:
    ours = median_of([run_pipeline(source, work, cli) for _ in range(repeat)])
    theirs = median_of([run_naive(source, work) for _ in range(repeat)])
    print(f"\n{label}: {count} files, median of {repeat}")
    print(f"{'':<26}{'dataset-assets':>16}{'naive loop':>14}{'ratio':>9}")
    rows = [
        ("images written", ours["count"], theirs["count"], None),
        ("wall s", ours["wall"], theirs["wall"], float(theirs["wall"]) / float(ours["wall"])),
        ("CPU s", ours["cpu"], theirs["cpu"], float(ours["cpu"]) / float(theirs["cpu"])),
        ("cores used", cores(ours), cores(theirs), None),
        ("files/s", count / float(ours["wall"]), count / float(theirs["wall"]), None),
        ("CPU ms per file", 1000 * float(ours["cpu"]) / count, 1000 * float(theirs["cpu"]) / count,
         None),
        ("peak PSS MiB (tree)", ours["peak"], theirs["peak"], None),
    ]  # fmt: skip
    for name, a, b, ratio in rows:
        shown = f"{ratio:.2f}x" if ratio else ""
        print(f"{name:<26}{fmt(a):>16}{fmt(b):>14}{shown:>9}")
    print("(wall ratio: naive / ours, higher is faster; CPU ratio: ours / naive, lower is leaner)")
    print_stages(ours)
    return ours


def cores(run: dict[str, object]) -> float:
    return float(run["cpu"]) / float(run["wall"])


def fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_stages(run: dict[str, object]) -> None:
    stages: dict[str, float] = run["stages"]  # type: ignore[assignment]
    inside = sum(stages.values())
    print("  stage seconds: " + ", ".join(f"{name} {sec:.2f}" for name, sec in stages.items()))
    print(f"  stages {inside:.2f} s of {float(run['wall']):.2f} s wall: "
          f"{float(run['wall']) - inside:.2f} s outside the stages")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", default="1024x768", help="WIDTHxHEIGHT of the generated JPEGs")
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; medians shown")
    parser.add_argument("--small", type=int, default=0, help="also run this many 96x72 images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cli",
        default=str(Path(sys.executable).with_name("dataset-assets")),
        help="the dataset-assets command to time (default: the one beside this Python)",
    )
    parser.add_argument("--naive", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive:
        naive(args.naive, args.out)
        return
    if args.floor:
        floor()
        return

    size = tuple(int(side) for side in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench_end_to_end_"))
    try:
        print(f"{len(os.sched_getaffinity(0))} cores; operations {json.dumps(OPERATIONS)}")
        source = work / "images"
        planted = write_corpus(source, args.n, size, args.seed)
        ours = compare(f"{args.size} JPEGs ({planted} planted copies)", source, work, args.n,
                       args.repeat, args.cli)  # fmt: skip
        print(f"  duplicates removed: {ours['duplicates']}")
        tiny = work / "ten"
        write_corpus(tiny, 10, size, args.seed + 1)
        ten = median_of([run_pipeline(tiny, work, args.cli) for _ in range(args.repeat)])
        print(f"\n10 files of {args.size}, median of {args.repeat}: wall {ten['wall']:.2f} s, "
              f"peak PSS {ten['peak']:.0f} MiB")  # fmt: skip
        print_stages(ten)
        bare = median_of([run_floor(work) for _ in range(args.repeat)])
        print(f"Dagster alone (import, then 7 no-op assets in process): wall {bare['wall']:.2f} s")
        if args.small:
            small = work / "small"
            write_corpus(small, args.small, (96, 72), args.seed + 2)
            compare("96x72 JPEGs", small, work, args.small, args.repeat, args.cli)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
