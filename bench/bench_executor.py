"""`dagster job execute` on the sample dataset: the in-process executor against multiprocess.

Both runs execute the same registered partition (the README's `examples/sample_request.json` on a
fresh sample) in a child process with their own `DAGSTER_HOME`, `DATASET_ASSETS_HOME` and
`DATASET_ASSETS_EXECUTOR`; the figure is the child's wall time, start-up included, as a user
waits for it. Read what it prints; it never fails on a figure.

    python bench/bench_executor.py            # one run of each, then the ratio
    python bench/bench_executor.py --repeat 3 # best of three of each
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_once(executor: str, sample: Path, home: Path) -> float:
    """Seconds for `dagster job execute` with `executor` on `sample`, in a fresh `home`."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "DATASET_ASSETS"))},
        "DAGSTER_HOME": str(home / "dagster"),
        "DATASET_ASSETS_HOME": str(home / "data"),
        "DATASET_ASSETS_EXECUTOR": executor,
        "DATASET_ASSETS_SOURCE_ROOTS": str(sample.parent),
    }
    request = json.loads((ROOT / "examples" / "sample_request.json").read_text())
    request["dataset_key"] = str(sample)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "request.json").write_text(json.dumps(request))
    config = home / "run_config.yaml"
    prepare = [
        str(BIN / "dataset-assets"),
        "prepare",
        str(home / "request.json"),
        "-o",
        str(config),
    ]
    subprocess.run(prepare, env=env, check=True, capture_output=True)
    command = [str(BIN / "dagster"), "job", "execute", "-m", "dataset_assets.definitions"]
    command += ["-j", "process_dataset", "-c", str(config)]
    command += ["--tags", json.dumps({"dagster/partition": request["request_id"]})]
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; the best counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        sample = [str(BIN / "dataset-assets"), "sample", str(work / "sample_images")]
        subprocess.run(sample, check=True, capture_output=True)
        times = {
            executor: min(
                run_once(executor, work / "sample_images", work / f"{executor}-{i}")
                for i in range(args.repeat)
            )
            for executor in ("in_process", "multiprocess")
        }
    print("dagster job execute, sample dataset (28 files, 7 stages):")
    for executor, seconds in times.items():
        print(f"  {executor:<13} {seconds:6.1f} s")
    print(f"  multiprocess / in_process: {times['multiprocess'] / times['in_process']:.1f}x")


if __name__ == "__main__":
    main()
