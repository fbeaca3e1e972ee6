"""Labels from folder names, a manifest file inside the dataset, or a file-name pattern."""

import json

import pytest

from dataset_assets.request import LabelConfig
from dataset_assets.stages.labels import LabelSource, output_name
from dataset_assets.storage.blobs import LocalBlobStore


def test_manifest_csv_inside_the_dataset_labels_by_path_or_file_name(pipeline, make_images):
    source = make_images({"img/a.png": (64, 64), "img/b.png": (72, 64), "img/c.png": (80, 64)})
    (source / "labels.csv").write_text("image,label\nimg/a.png,cat\nb.png,dog\n")
    result = pipeline.run(
        {
            "request_id": "manifest",
            "dataset_key": str(source),
            "labels": {"source": "manifest", "manifest": "labels.csv"},
        }
    )
    assert result.success
    labels = {
        doc["source"]: doc["label"]
        for doc in pipeline.metadata.iter_images("manifest", status="processed")
    }
    assert labels == {"img/a.png": "cat", "img/b.png": "dog", "img/c.png": "unlabelled"}
    summary = pipeline.metadata.load_stage("manifest", "labels")["summary"]
    assert summary["labelled"] == 2 and summary["unlabelled"] == 1
    assert sorted(key.split("/")[1] for key in pipeline.images("manifest")) == [
        "cat",
        "dog",
        "unlabelled",
    ]


def test_missing_manifest_fails_the_labels_stage_naming_the_file(pipeline, make_images):
    source = make_images({"img/a.png": (64, 64)})
    result = pipeline.run(
        {
            "request_id": "nomanifest",
            "dataset_key": str(source),
            "labels": {"source": "manifest", "manifest": "missing.json"},
        }
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert failure.step_key == "labels"
    assert "missing.json" in failure.step_failure_data.user_failure_data.description


def test_json_manifest_and_pattern_sources(tmp_path):
    blobs = LocalBlobStore(tmp_path)
    blobs.put_bytes("sidecars/d/meta/labels.json", json.dumps({"x/1.jpg": "sea"}).encode())
    manifest = LabelSource(LabelConfig(source="manifest", manifest="meta/labels.json"), blobs, "d")
    assert manifest.label("x/1.jpg") == "sea"
    assert manifest.label("x/2.jpg") == "unlabelled"
    pattern = LabelSource(
        LabelConfig(source="pattern", pattern=r"^(?P<label>[a-z]+)_\d+"), blobs, "d"
    )
    assert pattern.label("any/dog_001.jpg") == "dog"
    assert pattern.label("any/0001.jpg") == "unlabelled"
    folder = LabelSource(LabelConfig(), blobs, "d")
    assert folder.label("deep/path/birds/1.jpg") == "birds"
    assert folder.label("top.jpg") == "unlabelled"


def test_hostile_labels_cannot_leave_their_folder(tmp_path):
    blobs = LocalBlobStore(tmp_path)
    blobs.put_bytes("sidecars/d/l.csv", b"a.jpg,../../etc\nb.jpg,<script>\n")
    source = LabelSource(LabelConfig(source="manifest", manifest="l.csv"), blobs, "d")
    assert source.label("a.jpg") == "etc"
    assert "/" not in source.label("b.jpg")
    name = output_name(
        source.label("a.jpg"), "a.jpg", {"key": "processed/d/f/abcdef12.png", "suffix": ""}
    )
    assert name == "etc/a_abcdef12.png"


def test_pattern_without_a_label_group_is_refused():
    with pytest.raises(ValueError, match="label"):
        LabelConfig(source="pattern", pattern=r"\d+")
