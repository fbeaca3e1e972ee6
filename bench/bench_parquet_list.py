"""Peak memory of reading a Parquet URL list: 100k rows, then 1M, against loading the whole file.

Each size is written as a LAION-style list (`url`, `label`, `caption` and a wide `extra` column
that the reader skips, in row groups of 10,000 rows), then read to the end in a child process two
ways: the source reader (`read_parquet_list`, one row group and three columns at a time, each row
turned into a download row) and the baseline a throw-away script writes (`pandas.read_parquet`,
then the rows). No URL is downloaded: this measures the list, which is what grows with its size.

    python bench/bench_parquet_list.py --sizes 100000 1000000
"""

import argparse
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from bench_transform import run_child

GROUP_ROWS = 10_000


def write_list(path: Path, rows: int) -> None:
    schema = pa.schema(
        [
            ("url", pa.string()),
            ("label", pa.string()),
            ("caption", pa.string()),
            ("extra", pa.string()),
        ]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, rows, GROUP_ROWS):
            numbers = range(start, min(rows, start + GROUP_ROWS))
            writer.write_table(
                pa.table(
                    {
                        "url": [
                            f"https://images.example/{n:09d}/photo-{n * 7919 % 99991}.jpg"
                            for n in numbers
                        ],
                        "label": [f"class_{n % 1000}" for n in numbers],
                        "caption": [
                            f"a photo of thing {n} on a table, {n % 97} degrees" for n in numbers
                        ],
                        "extra": [f"{n:x}" * 40 for n in numbers],
                    },
                    schema=schema,
                )
            )


def read_child(path: str, way: str) -> None:
    """Run in the child: read every row, print how many were URLs to fetch."""
    if way == "reader":
        from dataset_assets.ingest.parquet_lists import read_parquet_list
        from dataset_assets.ingest.urls import UrlRow

        count = sum(isinstance(row, UrlRow) for row in read_parquet_list(Path(path), path))
    else:
        import pandas

        frame = pandas.read_parquet(path)
        count = sum(1 for url in frame["url"] if url.startswith("https://"))
    print(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", nargs=2, metavar=("PATH", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        read_child(*args.child)
        return
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for rows in args.sizes:
            path = Path(work) / f"urls_{rows}.parquet"
            write_list(path, rows)
            for way in ("reader", "pandas"):
                printed, wall, peak = run_child(
                    [sys.executable, __file__, "--child", str(path), way]
                )
                assert int(printed) == rows, printed
                results[rows, way] = (wall, peak, path.stat().st_size / 2**20)
    header = ("rows", "file MiB", "reader s", "reader MiB", "pandas s", "pandas MiB")
    print("".join(f"{name:>12}" for name in header))
    for rows in args.sizes:
        (wall, peak, size), (base_wall, base_peak, _) = (
            results[rows, "reader"],
            results[rows, "pandas"],
        )
        figures = (
            f"{size:.1f}",
            f"{wall:.2f}",
            f"{peak:.0f}",
            f"{base_wall:.2f}",
            f"{base_peak:.0f}",
        )
        print(f"{rows:>12}" + "".join(f"{figure:>12}" for figure in figures))
    small, large = min(args.sizes), max(args.sizes)
    for way in ("reader", "pandas"):
        growth = results[large, way][1] / results[small, way][1]
        print(f"{way}: peak RSS x{growth:.2f} for x{large // small} the rows")
    ratio = results[large, "reader"][1] / results[large, "pandas"][1]
    print(f"reader / pandas peak RSS at {large} rows: {ratio:.2f}")


if __name__ == "__main__":
    main()
