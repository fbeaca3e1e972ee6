"""Per-image quality issues: on each record and manifest line, in the report with thumbnails,
and droppable by the request."""

import json

import pytest
from PIL import ImageEnhance, ImageFilter

from dataset_assets.imaging.inspect import ISSUE_THRESHOLDS
from dataset_assets.request import RequestError, parse_request
from dataset_assets_tests.photos import photo


def _photos(folder):
    folder.mkdir()
    for name in ("coffee", "rocket", "astronaut"):
        photo(name).convert("RGB").save(folder / f"{name}.jpg", quality=92)
    blurred = photo("chelsea").convert("RGB").filter(ImageFilter.GaussianBlur(6))
    blurred.save(folder / "blurred_cat.jpg", quality=92)
    dark = ImageEnhance.Brightness(photo("immunohistochemistry").convert("RGB")).enhance(0.12)
    dark.save(folder / "dark_tissue.jpg", quality=92)
    return folder


def test_each_image_carries_its_issues_and_the_report_shows_them_with_thumbnails(
    pipeline, tmp_path
):
    folder = _photos(tmp_path / "photos")
    assert pipeline.run({"request_id": "issues", "dataset_key": str(folder)}).success
    records = {doc["source"]: doc for doc in pipeline.metadata.iter_images("issues")}
    assert "blurry" in records["blurred_cat.jpg"]["validation"]["flagged"]
    assert "dark" in records["dark_tissue.jpg"]["validation"]["flagged"]
    assert not records["coffee.jpg"]["validation"]["flagged"]
    lines = pipeline.outputs("issues")["manifest.jsonl"].decode().splitlines()
    manifest = {json.loads(line)["source"]: json.loads(line) for line in lines}
    assert manifest["blurred_cat.jpg"]["issues"]["blurry"] is True
    assert manifest["blurred_cat.jpg"]["quality"]["blurry"] >= ISSUE_THRESHOLDS["blurry"]
    assert manifest["coffee.jpg"]["issues"]["blurry"] is False

    report = json.loads(pipeline.blobs.get_bytes("reports/issues/report.json"))
    shown = {(image["issue"], image["source"]) for image in report["flagged_images"]}
    assert {("blurry", "blurred_cat.jpg"), ("dark", "dark_tissue.jpg")} <= shown
    assert all(
        image["thumbnail"].startswith("data:image/jpeg") for image in report["flagged_images"]
    )
    html = pipeline.blobs.get_bytes("reports/issues/report.html").decode()
    assert 'data-reason="blurry"' in html and "blurred_cat.jpg" in html


def test_drop_issues_rejects_the_flagged_images_naming_the_issue_and_score(pipeline, tmp_path):
    folder = _photos(tmp_path / "photos")
    request = {
        "request_id": "drop",
        "dataset_key": str(folder),
        "validation": {"drop_issues": ["blurry", "dark"]},
    }
    assert pipeline.run(request).success
    records = {doc["source"]: doc for doc in pipeline.metadata.iter_images("drop")}
    for source, issue in (("blurred_cat.jpg", "blurry"), ("dark_tissue.jpg", "dark")):
        assert records[source]["status"] == "rejected"
        assert records[source]["reject_reason"] == "quality_issue"
        assert f"{issue} " in records[source]["reject_message"]
        assert "validation.drop_issues" in records[source]["reject_message"]
    assert {doc["status"] for source, doc in records.items() if "_" not in source} == {"processed"}
    lines = pipeline.outputs("drop")["manifest.jsonl"].decode().splitlines()
    assert sorted(json.loads(line)["source"] for line in lines) == [
        "astronaut.jpg",
        "coffee.jpg",
        "rocket.jpg",
    ]
    assert len(pipeline.images("drop")) == 3


def test_an_unknown_issue_name_is_refused_before_any_work():
    with pytest.raises(RequestError, match=r"validation\.drop_issues.*unknown.*fuzzy"):
        parse_request({"dataset_key": "x", "validation": {"drop_issues": ["blurry", "fuzzy"]}})
