"""The dataset card: a `README.md` in the dataset root that says what it holds and how to load it.

Its YAML header is a Hugging Face dataset card: `datasets.load_dataset(<dataset folder>)` reads the
`configs` there and loads the hot and cold tiers as two splits.
"""

import json
import re
from typing import Any

SIZE_CATEGORIES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"))


def _size_category(count: int) -> str:
    return next((name for limit, name in SIZE_CATEGORIES if count < limit), "100K<n<1M")


def _fenced(text: str, language: str = "") -> str:
    """A Markdown code block that no backtick run inside `text` can close early."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


FILES = {
    "hot/": "the hot tier: one folder per label (ImageFolder), `metadata.jsonl` for `datasets`",
    "cold/": "the cold tier, laid out like `hot/`",
    "manifest.jsonl": "one line per image: path from this folder, label, source, size, hashes, "
    "quality scores, flagged issues, duplicate cluster",
    "labels.csv": "`image,label,source`, the image path from this folder",
    "labels.json": "`{image path: label}`",
    "labels/": "one `.txt` label file per image, at the image's path",
    "webdataset/": "WebDataset tar shards (`.cls` is the label's index in sorted label order) "
    "and `index.json`",
    "parquet/": "Parquet shards per tier: image bytes and every manifest column",
}


def _file_lines(files: list[str]) -> list[str]:
    entries = sorted({name.split("/", 1)[0] + ("/" if "/" in name else "") for name in files})
    return [f"- `{entry}`: {FILES.get(entry, '')}".rstrip(": ") for entry in entries]


def _configs(tiers: list[str]) -> list[str]:
    """Each tier as a split. The Parquet files get no config of their own: `datasets` reads a
    folder with one builder, chosen from its most common file type (here the images)."""
    lines = ["configs:", "- config_name: default", "  data_files:"]
    return lines + [f"  - split: {tier}\n    path: {tier}/**" for tier in tiers]


def dataset_card(
    dataset: str,
    metrics: dict[str, Any],
    classes: dict[str, int],
    request: dict[str, Any],
    tiers: dict[str, int],
    files: list[str],
) -> str:
    """The card's Markdown: counts, label balance, operations, quality score, files, the request.

    `tiers` counts the images per tier; `files` are the dataset's files, relative to its root.
    """
    images = sum(tiers.values())
    present = [tier for tier, count in tiers.items() if count]
    header = [
        "---",
        f"pretty_name: {json.dumps(dataset)}",
        "task_categories:",
        "- image-classification",
        "size_categories:",
        f"- {_size_category(images)}",
        *(_configs(present) if present else []),
        "---",
    ]
    total = sum(classes.values()) or 1
    balance = [
        f"| `{label}` | {count} | {100 * count / total:.1f} % |"
        for label, count in sorted(classes.items(), key=lambda item: (-item[1], item[0]))
    ]
    operations = request.get("operations") or []
    root = f"path/to/{dataset}"
    loading = [
        "from datasets import load_dataset",
        "",
        f'splits = load_dataset("{root}")  # the tiers as splits: "hot", "cold"',
        f'hot = load_dataset("imagefolder", data_dir="{root}/hot", split="train")',
    ]
    if any(name.startswith("parquet/") for name in files):
        parquet = f'data_files="{root}/parquet/*.parquet"'
        loading.append(f'rows = load_dataset("parquet", {parquet}, streaming=True)')
    shards = sum(name.startswith("webdataset/shard-") for name in files)
    if shards:
        pattern = f"{root}/webdataset/shard-{{000000..{shards - 1:06d}}}.tar"
        loading += [
            "",
            "import webdataset",
            "",
            f'samples = webdataset.WebDataset("{pattern}", shardshuffle=100).decode("pil")',
        ]
    body = [
        f"# {dataset}",
        "",
        f"Built by dataset-assets from {json.dumps(request.get('dataset_key', ''))}.",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| images | {images} ({tiers.get('hot', 0)} hot, {tiers.get('cold', 0)} cold) |",
        f"| classes | {len(classes)} |",
        f"| ingested | {metrics.get('images_ingested', 0)} |",
        f"| rejected as invalid | {metrics.get('invalid_images', 0)} |",
        f"| duplicates removed | {metrics.get('duplicates_removed', 0)} |",
        f"| quality score | {metrics.get('quality_score', 0)} / 100 |",
        "",
        "The quality score is 100 x (valid / ingested) x (unique / valid).",
        "",
        "## Labels",
        "",
        "| label | images | share |",
        "| --- | --- | --- |",
        *balance,
        "",
        "## Operations",
        "",
        _fenced(json.dumps(operations, indent=2), "json") if operations else "None.",
        "",
        "## Files",
        "",
        *_file_lines(files),
        "",
        "## Loading",
        "",
        _fenced("\n".join(loading), "python"),
        "",
        "## Request",
        "",
        _fenced(json.dumps(request, indent=2, sort_keys=True), "json"),
        "",
    ]
    return "\n".join([*header, "", *body])
