"""A finished dataset of real photographs loads with the libraries users train from, and every
path any of its files names resolves from the dataset root."""

import csv
import io
import json
import tarfile
from collections import Counter
from pathlib import Path, PurePosixPath

import pytest
from PIL import Image

from dataset_assets_tests.photos import write_photos

LAYOUT = {
    "animals/chelsea.jpg": "chelsea",
    "people/astronaut.jpg": "astronaut",
    "people/camera.jpg": "camera",
    "objects/coffee.jpg": "coffee",
    "objects/rocket.jpg": "rocket",
    "objects/clock.jpg": "clock",
    "objects/coins.jpg": "coins",
    "space/hubble.jpg": "hubble_deep_field",
    "space/moon.jpg": "moon",
    "lab/cell.jpg": "cell",
    "lab/stain.jpg": "immunohistochemistry",
    "lab/retina.jpg": "retina",
    "objects/coffee_again.jpg": "coffee",
}
"""Twelve photographs in five classes, one of them twice (an exact duplicate)."""

TORCHVISION_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff")


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    return write_photos(tmp_path / "photos", LAYOUT)


@pytest.fixture
def dataset_root(pipeline, photos, tmp_path, monkeypatch) -> Path:
    """The folder of a finished run on the photos, with `datasets` offline and its cache here."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert pipeline.run(request(photos)).success
    return pipeline.blobs.root / "datasets" / "photos"


def request(source: Path, request_id: str = "photos") -> dict:
    return {
        "request_id": request_id,
        "dataset_key": str(source),
        "operations": [{"Resize": {"max_side": 160}}],
        "tiering": {
            "hot_storage_threshold": 8,
            "webdataset_shard_size": 5,
            "parquet_shard_rows": 3,
        },
    }


def resolve_every_named_path(files: dict[str, bytes]) -> Counter[str]:
    """Open every file of a dataset, resolve each path it names and check what it says there.

    `files` maps each key under the dataset root to its bytes. Fails on a path that does not
    resolve, a label that disagrees with the image's folder, and a file of a kind it does not know,
    so a new output format has to say here how its paths resolve. Returns the paths checked per
    kind of file.
    """
    images = {key for key in files if key.split("/", 1)[0] in {"hot", "cold"}}
    images -= {key for key in images if key.endswith("/metadata.jsonl")}
    checked: Counter[str] = Counter()

    def resolves(path: str, label: str | None, kind: str, base: str = "") -> None:
        key = str(PurePosixPath(base) / path) if base else path
        assert key in images, f"{kind} names {path!r}, which is not in the dataset"
        if label is not None:
            assert PurePosixPath(key).parent.name == label, f"{kind}: {key} labelled {label!r}"
        checked[kind] += 1

    for key, data in files.items():
        if key in images or key == "README.md":
            continue
        if key == "labels.csv":
            for row in csv.DictReader(io.StringIO(data.decode())):
                resolves(row["image"], row["label"], key)
        elif key == "labels.json":
            for path, label in json.loads(data).items():
                resolves(path, label, key)
        elif key.startswith("labels/") and key.endswith(".txt"):
            stem = key.removeprefix("labels/").rsplit(".", 1)[0]
            (image,) = [name for name in images if name.rsplit(".", 1)[0] == stem]
            resolves(image, data.decode().strip(), "labels/*.txt")
        elif key == "manifest.jsonl" or key.endswith("/metadata.jsonl"):
            base = key.rsplit("/", 1)[0] if "/" in key else ""
            for line in data.decode().splitlines():
                record = json.loads(line)
                resolves(record["file_name"], record["label"], key, base)
                size = Image.open(io.BytesIO(files[str(PurePosixPath(base) / record["file_name"])]))
                assert size.size == (record["width"], record["height"])
        elif key == "webdataset/index.json":
            for shard in json.loads(data)["shardlist"]:
                shard_key = f"webdataset/{shard['url']}"
                with tarfile.open(fileobj=io.BytesIO(files[shard_key])) as archive:
                    samples = {m.name.rsplit(".", 1)[0] for m in archive.getmembers()}
                assert len(samples) == shard["nsamples"]
                checked[key] += 1
        elif key.startswith("webdataset/") and key.endswith(".tar"):
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                for member in archive.getmembers():
                    if member.name.endswith(".json"):
                        record = json.loads(archive.extractfile(member).read())
                        resolves(record["file_name"], record["label"], "webdataset/*.tar")
        elif key.startswith("parquet/") and key.endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(io.BytesIO(data), columns=["file_name", "label", "image"])
            for record in table.to_pylist():
                resolves(record["file_name"], record["label"], "parquet")
                assert record["image"]["bytes"] == files[record["file_name"]]
        else:
            raise AssertionError(f"{key}: a dataset file whose paths this test does not check")
    return checked


def test_every_path_in_every_output_file_resolves_from_the_dataset_root(pipeline, photos):
    assert pipeline.run(request(photos)).success
    files = pipeline.outputs("photos")
    checked = resolve_every_named_path(files)
    kept = len(LAYOUT) - 1
    assert checked == {
        "labels.csv": kept,
        "labels.json": kept,
        "labels/*.txt": kept,
        "manifest.jsonl": kept,
        "hot/metadata.jsonl": 8,
        "cold/metadata.jsonl": kept - 8,
        "webdataset/index.json": 3,
        "webdataset/*.tar": kept,
        "parquet": kept,
    }
    card = files["README.md"].decode()
    assert f"| images | {kept} (8 hot, {kept - 8} cold) |" in card
    assert "| duplicates removed | 1 |" in card
    assert "| `objects` | 4 | 33.3 % |" in card
    assert '"Resize"' in card and json.dumps(str(photos)) in card


def test_hugging_face_datasets_loads_the_tiers_the_folder_and_the_parquet_files(dataset_root):
    import datasets

    root = dataset_root
    manifest = {
        line["file_name"]: line
        for line in map(json.loads, (root / "manifest.jsonl").read_text().splitlines())
    }

    splits = datasets.load_dataset(str(root))
    assert {name: split.num_rows for name, split in splits.items()} == {"hot": 8, "cold": 4}
    for tier, split in splits.items():
        for row in split:
            (record,) = [r for r in manifest.values() if r["sha256"] == row["sha256"]]
            assert record["tier"] == tier and row["label"] == record["label"]
            assert row["image"].size == (record["width"], record["height"])
            assert row["quality"] == pytest.approx(record["quality"])
            assert row["issues"] == record["issues"]

    hot = datasets.load_dataset("imagefolder", data_dir=str(root / "hot"), split="train")
    assert sorted(hot["label"]) == sorted(
        r["label"] for r in manifest.values() if r["tier"] == "hot"
    )

    parquet = datasets.load_dataset(
        "parquet", data_files={"hot": str(root / "parquet" / "hot-*.parquet")}, streaming=True
    )
    rows = list(parquet["hot"])
    assert len(rows) == 8
    for row in rows:
        assert isinstance(row["image"], Image.Image)
        record = manifest[row["file_name"]]
        assert row["image"].size == (record["width"], record["height"])
        assert row["image"].tobytes() == Image.open(root / row["file_name"]).tobytes()


def test_the_loading_code_in_the_dataset_card_runs_as_written(dataset_root):
    root = dataset_root
    card = (root / "README.md").read_text()
    code = card.split("## Loading", 1)[1].split("```python\n", 1)[1].split("\n```", 1)[0]
    found: dict = {}
    exec(code.replace("path/to/photos", str(root)), found)
    assert {name: split.num_rows for name, split in found["splits"].items()} == {
        "hot": 8,
        "cold": 4,
    }
    assert found["hot"].num_rows == 8
    assert sum(1 for _ in found["rows"]["train"]) == len(LAYOUT) - 1
    assert sum(1 for _ in found["samples"]) == len(LAYOUT) - 1


def test_webdataset_iterates_images_with_integer_classes_in_sorted_label_order(dataset_root):
    import webdataset

    root = dataset_root
    shards = sorted(str(path) for path in (root / "webdataset").glob("shard-*.tar"))
    classes = sorted({PurePosixPath(path).parent.name for path in LAYOUT})
    samples = list(
        webdataset.WebDataset(shards, shardshuffle=False)
        .decode("pil")
        .to_tuple("jpg", "cls", "json")
    )
    assert len(samples) == len(LAYOUT) - 1
    for image, cls, record in samples:
        assert classes[cls] == record["label"]
        assert image.size == Image.open(root / record["file_name"]).size


def test_each_tier_is_an_image_folder_tree_as_torchvision_reads_it(dataset_root):
    """torchvision is too heavy for the test extra, so this applies its `ImageFolder` rules:
    classes are the sorted sub-folders, samples the files with an image extension below them."""
    root = dataset_root
    labels = json.loads((root / "labels.json").read_text())
    for tier in ("hot", "cold"):
        classes = sorted(entry.name for entry in (root / tier).iterdir() if entry.is_dir())
        samples = sorted(
            (path.relative_to(root).as_posix(), classes.index(path.parent.name))
            for path in (root / tier).glob("*/*")
            if path.suffix.lower() in TORCHVISION_IMAGE_EXTENSIONS
        )
        expected = sorted((path, label) for path, label in labels.items() if path.startswith(tier))
        assert [(path, classes[index]) for path, index in samples] == expected
