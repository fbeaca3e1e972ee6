"""The whole `process_dataset` job on real images, on the embedded default stores."""

import csv
import io
import json
import tarfile

from PIL import Image

from dataset_assets.request import parse_request
from dataset_assets.sample_data import SAMPLE_EXPECTATIONS
from dataset_assets.stages.tracking import STAGES

SEED_OPERATIONS = [
    {"Resize": {"scaling_factor": 0.5}},
    "GrayScale",
    {"Noise": {"noise_level": 0.1}},
]


def test_sample_dataset_flows_through_every_stage(pipeline, sample_dir):
    result = pipeline.run(
        {"request_id": "sample", "dataset_key": str(sample_dir), "operations": SEED_OPERATIONS}
    )
    assert result.success
    store = pipeline.metadata
    statuses = store.count_by("sample", "status")
    assert sum(statuses.values()) == SAMPLE_EXPECTATIONS["files"]
    assert statuses == {"rejected": 3, "duplicate": 2, "processed": SAMPLE_EXPECTATIONS["kept"]}
    assert store.count_by("sample", "reject_reason") == {
        "truncated": 1,
        "not_an_image": 1,
        "too_small": 1,
    }
    kinds = {
        doc["source"]: (doc["cluster_kind"], doc["duplicate_of"])
        for doc in store.iter_images("sample", status="duplicate")
    }
    keeper = {doc["image_id"]: doc["source"] for doc in store.iter_images("sample")}
    assert {source: (kind, keeper[of]) for source, (kind, of) in kinds.items()} == {
        "waves/copy_of_ridge_02.jpg": ("exact", "mountains/ridge_02.jpg"),
        "forest/pines_03_resized.jpg": ("near", "forest/pines_03.jpg"),
    }

    outputs = pipeline.outputs("sample")
    images = {key: Image.open(io.BytesIO(data)) for key, data in pipeline.images("sample").items()}
    assert len(images) == SAMPLE_EXPECTATIONS["kept"]
    assert {key.split("/")[1] for key in images} == {"mountains", "waves", "forest"}
    assert all(image.mode == "L" for image in images.values())
    for doc in store.iter_images("sample", status="processed"):
        original = doc["validation"]
        (output,) = doc["outputs"]
        assert (output["width"], output["height"]) == (
            round(original["width"] * 0.5),
            round(original["height"] * 0.5),
        )
        assert Image.open(io.BytesIO(outputs[f"hot/{output['name']}"])).size == (
            output["width"],
            output["height"],
        )

    labels = json.loads(outputs["labels.json"])
    assert len(labels) == SAMPLE_EXPECTATIONS["kept"]
    assert all(name.split("/")[1] == label for name, label in labels.items())
    rows = list(csv.DictReader(io.StringIO(outputs["labels.csv"].decode())))
    assert {row["image"] for row in rows} == set(labels)
    assert {key for key in outputs if key.startswith("labels/")} == {
        f"labels/{name.rsplit('.', 1)[0]}.txt" for name in labels
    }
    lines = [json.loads(line) for line in outputs["manifest.jsonl"].decode().splitlines()]
    assert {line["file_name"] for line in lines} == set(labels) == set(images)

    report = json.loads(pipeline.blobs.get_bytes("reports/sample/report.json"))
    metrics = report["metrics"]
    assert metrics["images_ingested"] == 28
    assert metrics["valid_images"] == 25
    assert metrics["invalid_images"] == 3
    assert metrics["duplicates_found"] == 2
    assert metrics["unique_images"] == 23
    assert metrics["hot"] == 23 and metrics["cold"] == 0
    assert metrics["quality_score"] == round(100 * 25 / 28 * 23 / 25, 2)
    html = pipeline.blobs.get_bytes("reports/sample/report.html").decode()
    assert "forest/notes.jpg" in html and "pines_03_resized.jpg" in html

    tracked = store.get_request("sample")
    assert tracked["status"] == "succeeded" and tracked["progress"] == 100
    assert tuple(tracked["stages"]) == STAGES
    checks = {
        evaluation.check_name: evaluation.passed
        for evaluation in result.get_asset_check_evaluations()
    }
    assert checks == {
        "invalid_ratio": True,
        "duplicate_ratio": True,
        "processed_images_not_empty": True,
    }


def test_running_a_partition_twice_leaves_the_same_outputs_and_no_duplicate_records(
    pipeline, sample_dir
):
    request = {"request_id": "twice", "dataset_key": str(sample_dir), "operations": SEED_OPERATIONS}
    assert pipeline.run(request).success
    first = pipeline.outputs("twice")
    first_records = pipeline.metadata.count_images("twice")
    assert pipeline.run(request).success
    assert pipeline.outputs("twice") == first
    assert pipeline.metadata.count_images("twice") == first_records == SAMPLE_EXPECTATIONS["files"]
    ids = [doc["image_id"] for doc in pipeline.metadata.iter_images("twice", fields=("image_id",))]
    assert len(ids) == len(set(ids))
    originals = list(pipeline.blobs.list("originals/"))
    assert len(originals) == len({key.split("/")[1].split(".")[0] for key in originals})


def test_strict_mode_fails_the_run_naming_the_rejected_files(pipeline, sample_dir):
    result = pipeline.run(
        {"request_id": "strict", "dataset_key": str(sample_dir), "validation_mode": "strict"}
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "3 rejected image(s)" in message
    assert "waves/truncated.jpg" in message and "forest/notes.jpg" in message
    assert not list(pipeline.blobs.list("datasets/strict/"))


def test_report_only_mode_keeps_decodable_rejects_and_drops_undecodable_ones(pipeline, sample_dir):
    result = pipeline.run(
        {"request_id": "report", "dataset_key": str(sample_dir), "validation_mode": "report-only"}
    )
    assert result.success
    tiny = next(pipeline.metadata.iter_images("report", extra={"source": "mountains/tiny.png"}))
    assert tiny["status"] == "processed" and tiny["reject_reason"] == "too_small"
    statuses = pipeline.metadata.count_by("report", "status")
    assert statuses["rejected"] == 2
    assert statuses["processed"] == SAMPLE_EXPECTATIONS["kept"] + 1


def test_hot_storage_threshold_puts_the_rest_in_the_cold_tier(pipeline, make_images):
    source = make_images({f"cls/img_{i:02d}.png": (64 + i, 48) for i in range(6)})
    result = pipeline.run(
        {"request_id": "tiers", "dataset_key": str(source), "tiering": {"hot_storage_threshold": 4}}
    )
    assert result.success
    tiers = {
        doc["source"]: doc["tier"]
        for doc in pipeline.metadata.iter_images("tiers", status="processed")
    }
    assert [tiers[f"cls/img_{i:02d}.png"] for i in range(6)] == ["hot"] * 4 + ["cold"] * 2
    files = pipeline.outputs("tiers")
    assert sum(key.startswith("hot/cls/") for key in files) == 4
    assert sum(key.startswith("cold/cls/") for key in files) == 2


def test_shards_fan_out_and_give_the_same_result_as_one_shard(pipeline, make_images):
    source = make_images({f"c{i % 3}/img_{i:02d}.png": (40 + i, 40) for i in range(24)})
    base = {"dataset_key": str(source), "operations": [{"Resize": {"max_side": 32}}]}
    one = pipeline.run({**base, "request_id": "one"})
    many = pipeline.run(
        {
            **base,
            "request_id": "many",
            "validation": {"images_per_shard": 4},
            "transform": {"images_per_shard": 4},
        }
    )
    assert one.success and many.success
    shard_steps = {
        event.step_key
        for event in many.all_events
        if event.is_step_success and "transform_shard[" in (event.step_key or "")
    }
    assert len(shard_steps) == 6
    summary = pipeline.metadata.load_stage("many", "processed_images")["summary"]
    assert summary["shards"] == 6
    images, sharded = pipeline.images("one"), pipeline.images("many")
    assert len(images) == 24
    assert sorted(images.values()) == sorted(sharded.values())


def test_unknown_operation_in_run_config_fails_before_anything_is_written(pipeline, sample_dir):
    request = parse_request({"request_id": "badop", "dataset_key": str(sample_dir)})
    config = request.to_run_config().to_config_dict()
    transform = config["ops"]["processed_images"]["ops"]["plan_transform_shards"]["config"]
    transform["operations"] = ["Sepia"]
    result = pipeline.run(request, ops=config["ops"])
    assert not result.success
    failure = next(event for event in result.all_events if event.is_step_failure)
    assert failure.step_key == "raw_images"
    assert "Sepia" in failure.step_failure_data.user_failure_data.description
    assert pipeline.metadata.count_images("badop") == 0
    assert not list(pipeline.blobs.list("originals/"))


def test_scratch_files_are_removed_after_the_run_unless_kept(pipeline, make_images, monkeypatch):
    source = make_images({"a/x.png": (64, 64), "a/y.png": (80, 64)})
    assert pipeline.run({"request_id": "scratch", "dataset_key": str(source)}).success
    work = pipeline.home / "work"
    assert not work.exists() or not any(work.iterdir())

    monkeypatch.setenv("DATASET_ASSETS_KEEP_WORKSPACE", "1")
    from dataset_assets.storage.environment import resources_from_env

    pipeline.resources = resources_from_env(operator=True)
    assert pipeline.run({"request_id": "scratch-kept", "dataset_key": str(source)}).success
    kept = list(work.glob("*/tiered_storage/labels.csv"))
    assert len(kept) == 1


def test_images_removed_from_the_source_leave_the_dataset_on_rerun(pipeline, make_images):
    source = make_images({"a/x.png": (64, 64), "a/y.png": (80, 64), "b/z.png": (72, 64)})
    request = {"request_id": "shrink", "dataset_key": str(source)}
    assert pipeline.run(request).success
    (source / "b" / "z.png").unlink()
    assert pipeline.run(request).success
    assert pipeline.metadata.count_images("shrink") == 2
    assert not any("/b/" in f"/{key}" for key in pipeline.outputs("shrink"))


def test_webdataset_shards_hold_every_image_with_its_label(pipeline, make_images):
    source = make_images({f"c{i % 2}/img_{i:02d}.png": (48 + i, 40) for i in range(5)})
    request = {
        "request_id": "wds",
        "dataset_key": str(source),
        "tiering": {"webdataset_shard_size": 2},
    }
    assert pipeline.run(request).success
    files = pipeline.outputs("wds")
    shards = sorted(key for key in files if key.startswith("webdataset/shard-"))
    assert shards == [f"webdataset/shard-{i:06d}.tar" for i in range(3)]
    samples = {}
    for shard in shards:
        with tarfile.open(fileobj=io.BytesIO(files[shard])) as archive:
            for member in archive.getmembers():
                samples[member.name] = archive.extractfile(member).read()
    images = [name for name in samples if name.endswith(".png")]
    assert len(images) == 5
    for name in images:
        stem, label = name.rsplit(".", 1)[0], name.split("__")[1]
        assert int(samples[f"{stem}.cls"]) == ["c0", "c1"].index(label)
        assert json.loads(samples[f"{stem}.json"])["label"] == label
        assert Image.open(io.BytesIO(samples[name])).size[1] == 40


def test_dedup_against_an_earlier_dataset_drops_images_it_already_holds(
    pipeline, make_images, tmp_path
):
    first = make_images({f"a/img_{i}.png": (64 + i, 48) for i in range(4)}, folder="first")
    assert pipeline.run({"request_id": "first", "dataset_key": str(first)}).success
    second = make_images({"a/img_1.png": (65, 48), "a/new.png": (90, 60)}, folder="second")
    request = {"request_id": "second", "dataset_key": str(second), "dedup": {"against": ["first"]}}
    assert pipeline.run(request).success
    docs = {doc["source"]: doc for doc in pipeline.metadata.iter_images("second")}
    assert docs["a/new.png"]["status"] == "processed"
    assert docs["a/img_1.png"]["status"] == "duplicate"
    assert docs["a/img_1.png"]["duplicate_of"].startswith("first:")
    summary = pipeline.metadata.load_stage("second", "deduplicated_images")["summary"]
    assert summary["in_earlier_datasets"] == 1 and summary["duplicates"] == 1
    assert pipeline.metadata.count_by("first", "status") == {"processed": 4}


def _hostile_zip(folder, good_png: bytes):
    """A zip with good images and every kind of hostile entry a user might be sent."""
    import stat
    import struct
    import zipfile
    import zlib

    bomb = bytearray(good_png)
    bomb[16:24] = struct.pack(">II", 30000, 30000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    archive = folder / "hostile.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("ok/good.png", good_png)
        out.writestr("ok/empty.jpg", b"")
        out.writestr("ok/bomb.png", bytes(bomb))
        out.writestr("../../escape.png", good_png)
        link = zipfile.ZipInfo("ok/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        out.writestr(link, "/etc/passwd")
    return archive


def test_hostile_archive_entries_are_rejected_with_reasons_and_strict_mode_names_them(
    pipeline, tmp_path
):
    from dataset_assets_tests.images import photo

    buffer = io.BytesIO()
    photo(64, 48, 1).save(buffer, "PNG")
    archive = _hostile_zip(tmp_path, buffer.getvalue())
    blocked = pipeline.run(
        {
            "request_id": "hostile",
            "dataset_key": str(archive),
            "validation": {"max_invalid_ratio": 0.5},
        }
    )
    assert not blocked.success
    (check,) = blocked.get_asset_check_evaluations()
    assert (check.check_name, check.passed) == ("invalid_ratio", False)
    assert not list(pipeline.blobs.list("processed/hostile/"))

    lenient = pipeline.run(
        {
            "request_id": "hostile",
            "dataset_key": str(archive),
            "validation": {"max_invalid_ratio": 1.0},
        }
    )
    assert lenient.success
    reasons = {
        doc["source"]: doc.get("reject_reason") for doc in pipeline.metadata.iter_images("hostile")
    }
    assert reasons == {
        "ok/good.png": None,
        "ok/empty.jpg": "empty_file",
        "ok/bomb.png": "decompression_bomb",
        "../../escape.png": "unsafe_path",
        "ok/link.png": "symlink",
    }
    assert not (tmp_path.parent / "escape.png").exists()
    assert list(pipeline.images("hostile")) == list(
        json.loads(pipeline.outputs("hostile")["labels.json"])
    )

    strict = pipeline.run(
        {"request_id": "hostile-strict", "dataset_key": str(archive), "validation_mode": "strict"}
    )
    assert not strict.success
    failure = next(event for event in strict.all_events if event.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "4 rejected image(s)" in message
    for name in ("ok/empty.jpg", "ok/bomb.png", "../../escape.png", "ok/link.png"):
        assert name in message
