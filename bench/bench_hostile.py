"""Peak memory and time of hostile requests: refused up front, against what running them costs.

Each case runs in its own child process, so each peak RSS is that child's alone (`os.wait4`).
The baseline child parses a plain request and applies the deployment policy to it. A hostile
child does the same with one of the requests that used to break the pipeline (deep JSON, a
request at the size cap, operations that multiply pixels or outputs): the figure is what refusing
it costs. The "run" children apply those operations to one 1024x768 photo, as the pipeline did
before their worst case was checked: the figure is what the refusal saves, per image. Last, the
nested-quantifier label pattern is timed on file names of growing length with Python's
backtracking `re` and with RE2.

    python bench/bench_hostile.py
"""

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np
from bench_transform import run_child
from PIL import Image

from dataset_assets.operations import OperationPipeline
from dataset_assets.policy import DeploymentPolicy
from dataset_assets.request import MAX_REQUEST_BYTES, compile_label_pattern, parse_request

SOURCE = {"dataset_key": "s3://raw/set/"}
HOSTILE = {
    "plain request": {**SOURCE, "operations": [{"Resize": {"max_side": 512}}, "GrayScale"]},
    "JSON 100,000 deep": '{"dataset_key": "s3://raw/set/", "labels": '
    + "[" * 100_000
    + "]" * 100_000
    + "}",
    "1 MB of operations": {**SOURCE, "operations": ["GrayScale"] * (MAX_REQUEST_BYTES // 16)},
    "Augment 2 x Resize 8": {
        **SOURCE,
        "operations": [{"Augment": {"n": 2, "ops": [{"Resize": {"scaling_factor": 8}}]}}],
    },
    "Rotate 45 x 4": {**SOURCE, "operations": [{"Rotate": {"degrees": 45}}] * 4},
    "Tile of 12 px": {**SOURCE, "operations": [{"Tile": {"size": 12}}]},
}
RUNNABLE = ("Augment 2 x Resize 8", "Rotate 45 x 4", "Tile of 12 px")
PATTERN = r"(?P<label>(a+)+)$"


def payload(case: str) -> str:
    value = HOSTILE[case]
    return value if isinstance(value, str) else json.dumps(value)


def child(mode: str, case: str) -> None:
    """What one child does: refuse (or accept) the request, or run its operations on a photo."""
    if mode == "parse":
        try:
            DeploymentPolicy(source_roots=["s3://raw/"]).apply(parse_request(payload(case)))
            print("accepted")
        except ValueError as error:
            print(f"refused: {str(error)[:60]}")
        return
    rng = np.random.default_rng(0)
    field = rng.random((6, 8, 3)) * 255
    photo = Image.fromarray(field.astype(np.uint8)).resize((1024, 768), Image.Resampling.BICUBIC)
    outputs = OperationPipeline.parse(HOSTILE[case]["operations"]).apply(photo, seed=0)
    pixels = sum(output.image.width * output.image.height for output in outputs)
    print(f"ran: {len(outputs):,} outputs, {pixels / 1e6:,.0f} MP")


def measure(mode: str, case: str) -> tuple[str, float, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", mode, case]
    text, wall, peak = run_child(command)
    return text.strip(), wall, peak


def pattern_times(lengths: list[int]) -> list[tuple[int, float, float]]:
    backtracking, linear = re.compile(PATTERN), compile_label_pattern(PATTERN)
    times = []
    for length in lengths:
        name = "a" * length + "!"
        started = time.perf_counter()
        backtracking.search(name)
        middle = time.perf_counter()
        linear.search(name)
        times.append((length, middle - started, time.perf_counter() - middle))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("MODE", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--lengths", type=int, nargs="+", default=[18, 20, 22, 24])
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    _, _, baseline = measure("parse", "plain request")
    print(f"{'case':<30}{'what happened':<66}{'wall s':>8}{'peak MiB':>10}{'/ base':>8}")
    for mode, case in [("parse", case) for case in HOSTILE] + [("run", c) for c in RUNNABLE]:
        outcome, wall, peak = measure(mode, case)
        label = f"{case} ({mode})"
        print(f"{label:<30}{outcome[:64]:<66}{wall:>8.2f}{peak:>10.0f}{peak / baseline:>7.2f}x")

    print(f"\nlabel pattern {PATTERN!r} on 'a' * N + '!':")
    print(f"{'N':>4}{'re s':>10}{'RE2 s':>12}{'re / RE2':>12}")
    for length, slow, fast in pattern_times(args.lengths):
        print(f"{length:>4}{slow:>10.3f}{fast:>12.6f}{slow / max(fast, 1e-9):>11.0f}x")


if __name__ == "__main__":
    main()
