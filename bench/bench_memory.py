"""Peak memory of a whole run against dataset size: 1k images, then 10k, same process shape.

Each size runs the full `dataset-assets run` job in its own child process on the embedded
default, with tiny photo-like JPEGs so the run is dominated by per-image bookkeeping (records,
blobs, shards) rather than pixels. Streaming stages keep peak RSS flat; only deduplication's hash
columns (~70 bytes an image) grow with the count.

    python bench/bench_memory.py --sizes 1000 10000 --size 96x72
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench_transform import run_child, write_corpus

OPERATIONS = [{"Resize": {"scaling_factor": 0.5}}, "GrayScale"]


def run(count: int, size: tuple[int, int], work: Path) -> dict[str, float]:
    source = work / f"images_{count}"
    write_corpus(source, count, size, seed=count)
    home = work / f"home_{count}"
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    request = work / f"request_{count}.json"
    request.write_text(
        json.dumps(
            {"request_id": f"mem-{count}", "dataset_key": str(source), "operations": OPERATIONS}
        )
    )
    env = {**os.environ, "DATASET_ASSETS_HOME": str(home), "DAGSTER_HOME": str(dagster_home)}
    cli = str(Path(sys.executable).with_name("dataset-assets"))
    printed, wall, peak = run_child([cli, "run", str(request), "--json"], env)
    counts = json.loads(printed.strip().splitlines()[-1])["counts"]
    return {
        "images": counts["ingested"],
        "processed": counts["processed"],
        "wall": wall,
        "peak": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--size", default="96x72", help="WIDTHxHEIGHT of the generated JPEGs")
    args = parser.parse_args()
    width, height = (int(side) for side in args.size.lower().split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench_memory_"))
    try:
        results = [run(count, (width, height), work) for count in args.sizes]
    finally:
        shutil.rmtree(work)
    print(f"{'images':>8}{'processed':>11}{'wall s':>9}{'images/s':>10}{'peak RSS MiB':>14}")
    for row in results:
        rate = row["images"] / row["wall"]
        print(
            f"{row['images']:>8}{row['processed']:>11}{row['wall']:>9.1f}{rate:>10.1f}"
            f"{row['peak']:>14.0f}"
        )
    first, last = results[0], results[-1]
    print(
        f"{last['images'] / first['images']:.0f}x the images -> "
        f"{last['peak'] / first['peak']:.2f}x the peak RSS"
    )


if __name__ == "__main__":
    main()
