"""Quality gates warn in lenient runs, block when strict or set, and never lose the report."""

import json

import pytest
from dagster import AssetCheckSeverity

from dataset_assets_tests.photos import photo, write_photos


@pytest.fixture
def mostly_copies(tmp_path):
    """Three real photos, each twice more as a quality-70 re-save: 6 duplicates of 9 images."""
    folder = write_photos(
        tmp_path / "copies", {f"{n}.jpg": n for n in ("coffee", "rocket", "astronaut")}
    )
    for name in ("coffee", "rocket", "astronaut"):
        for copy in (1, 2):
            photo(name).convert("RGB").save(folder / f"{name}_{copy}.jpg", quality=70 - copy)
    return folder


def _check(result, name):
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def _report(pipeline, dataset):
    return json.loads(pipeline.blobs.get_bytes(f"reports/{dataset}/report.json"))


def test_a_mostly_duplicate_collection_warns_in_lenient_mode_and_the_report_has_the_clusters(
    pipeline, mostly_copies
):
    result = pipeline.run({"request_id": "dups", "dataset_key": str(mostly_copies)})
    assert result.success
    check = _check(result, "duplicate_ratio")
    assert not check.passed and check.severity == AssetCheckSeverity.WARN
    assert "dedup.max_duplicate_ratio 0.50" in check.description
    report = _report(pipeline, "dups")
    assert report["stopped_by"] is None
    (gate,) = [g for g in report["gates"] if g["gate"] == "duplicate_ratio"]
    assert (gate["value"], gate["outcome"]) == (pytest.approx(6 / 9, abs=1e-3), "warning")
    assert len(report["duplicate_clusters"]) == 3
    html = pipeline.blobs.get_bytes("reports/dups/report.html").decode()
    assert "dedup.max_duplicate_ratio" in html and "warning" in html


def test_a_threshold_set_in_the_request_stops_the_run_and_the_report_says_which_gate(
    pipeline, mostly_copies
):
    request = {
        "request_id": "dups-set",
        "dataset_key": str(mostly_copies),
        "dedup": {"max_duplicate_ratio": 0.2},
    }
    result = pipeline.run(request)
    assert not result.success
    check = _check(result, "duplicate_ratio")
    assert not check.passed and check.severity == AssetCheckSeverity.ERROR
    assert not list(pipeline.blobs.list("datasets/dups-set/"))
    report = _report(pipeline, "dups-set")
    assert report["stopped_by"]["gate"] == "duplicate_ratio"
    assert report["stopped_by"]["field"] == "dedup.max_duplicate_ratio"
    assert "6 duplicates" in report["stopped_by"]["message"]
    assert len(report["duplicate_clusters"]) == 3
    assert pipeline.metadata.get_request("dups-set")["report"].endswith("report.html")
    html = pipeline.blobs.get_bytes("reports/dups-set/report.html").decode()
    assert "Run stopped by duplicate_ratio" in html


def test_strict_mode_stops_on_a_reject_and_still_writes_the_report(pipeline, mostly_copies):
    (mostly_copies / "broken.jpg").write_bytes((mostly_copies / "coffee.jpg").read_bytes()[:4000])
    result = pipeline.run(
        {"request_id": "strict", "dataset_key": str(mostly_copies), "validation_mode": "strict"}
    )
    assert not result.success
    report = _report(pipeline, "strict")
    assert report["stopped_by"]["gate"] == "strict validation"
    assert "broken.jpg" in report["stopped_by"]["message"]
    assert [r["source"] for r in report["rejects"]] == ["broken.jpg"]
