"""Top functions of a py-spy profile: the share of samples each one is on the stack (inclusive)
and at the top of it (self), across every process of the run.

py-spy is a benchmark peer, never a project dependency: install it in a virtual environment of
its own, record a run in its raw (collapsed stack) format with `--subprocesses`, so the worker
processes count, then summarise:

    python -m venv /tmp/py-spy && /tmp/py-spy/bin/pip install py-spy
    /tmp/py-spy/bin/py-spy record -r 100 -s -f raw -o run.txt -- dataset-assets run request.json
    python bench/profile_summary.py run.txt --top 15

Imports are folded into one line (`(imports)`), since what an import costs shows up under the
module that triggered it; frames are named `function (file)` without line numbers.
"""

import argparse
import re
from collections import Counter
from pathlib import Path

IMPORT_FRAME = "<frozen importlib._bootstrap"
PROCESS_FRAME = re.compile(r'process \d+:"[^"]*";?')
"""py-spy's first frames name the process and its command line (which may hold `;`)."""


def frame_name(frame: str) -> str:
    """`function (file)`: the line number dropped, so a function counts once per stack."""
    return re.sub(r":\d+\)$", ")", frame)


def summarise(lines: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, then samples per function on the stack and at its top."""
    total = 0
    inclusive: Counter[str] = Counter()
    top: Counter[str] = Counter()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = [frame_name(frame) for frame in PROCESS_FRAME.sub("", stack).split(";") if frame]
        importing = [i for i, frame in enumerate(frames) if IMPORT_FRAME in frame]
        if importing:
            frames = [*frames[: importing[0]], "(imports)"]
        for name in set(frames):
            inclusive[name] += samples
        top[frames[-1] if frames else "(no Python frame: interpreter start and exit)"] += samples
    return total, inclusive, top


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", type=Path, help="py-spy record -f raw output")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument(
        "--match", default="", help="list only functions whose name or file contains this"
    )
    args = parser.parse_args()
    total, inclusive, top = summarise(args.profile.read_text().splitlines())
    print(f"{total} samples")
    for title, counts in (("on the stack", inclusive), ("at the top", top)):
        print(f"\n{'share':>6}  function ({title})")
        shown = [(name, n) for name, n in counts.most_common() if args.match in name]
        for name, samples in shown[: args.top]:
            print(f"{100 * samples / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
