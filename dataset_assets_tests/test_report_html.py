"""The HTML quality report: sections, figures, escaping, self-containment, score and histograms."""

import base64
import io
import json
import math
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from dataset_assets.report import (
    QUALITY_SCORE_FORMULA,
    histogram,
    quality_score,
    render_report_html,
)

SECTION_IDS = ("summary", "stages", "rejects", "issues", "duplicates", "histograms", "labels")
HOSTILE_NAME = "<script>alert('x')</script>.jpg"
HOSTILE_LABEL = 'cat"><img src=x onerror=alert(1)>'
VOID_TAGS = {"area", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list["Node | str"] = field(default_factory=list)

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def find_all(self, tag: str | None = None, **attrs: str) -> list["Node"]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                classes = child.attrs.get("class", "").split()
                if (tag is None or child.tag == tag) and all(
                    value in classes if key == "class_" else child.attrs.get(key) == value
                    for key, value in attrs.items()
                ):
                    found.append(child)
                found.extend(child.find_all(tag, **attrs))
        return found

    def find(self, tag: str | None = None, **attrs: str) -> "Node":
        matches = self.find_all(tag, **attrs)
        assert matches, f"no <{tag}> with {attrs}"
        return matches[0]


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {key: value or "" for key, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {key: value or "" for key, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID_TAGS:
            return
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder.root


def make_image(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    image = Image.new("RGB", size, colour)
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.ellipse((width * 0.2, height * 0.2, width * 0.8, height * 0.8), fill=(250, 250, 250))
    image.save(path, "JPEG", quality=90)
    return path


def thumbnail_uri(path: Path, longest: int = 96) -> str:
    with Image.open(path) as image:
        image.thumbnail((longest, longest))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def brightness(path: Path) -> float:
    with Image.open(path) as image:
        return float(np.asarray(image.convert("L")).mean())


@pytest.fixture
def report(tmp_path: Path) -> dict:
    """A run over 12 images: 3 rejected, 9 valid, 2 duplicates removed, 7 unique."""
    sizes = [(640, 480), (800, 600), (1024, 768), (480, 640), (1200, 800), (300, 300), (720, 540)]
    colours = [(200, 40, 40), (40, 160, 60), (40, 60, 200), (230, 190, 30), (90, 90, 90)]
    valid = [
        make_image(tmp_path / f"sign_{i}.jpg", size, colours[i % len(colours)])
        for i, size in enumerate(sizes)
    ]
    copy = make_image(tmp_path / "sign_0 copy.jpg", sizes[0], colours[0])
    resized = make_image(tmp_path / "sign_1_small.jpg", (400, 300), colours[1])
    truncated = make_image(tmp_path / "IMG_0012.jpg", (400, 300), (120, 30, 160))
    hostile = make_image(tmp_path / "hostile.jpg", (320, 240), (250, 120, 0))
    metrics = {
        "images_ingested": 12,
        "images_validated": 12,
        "valid_images": 9,
        "invalid_images": 3,
        "duplicates_found": 2,
        "duplicates_removed": 2,
        "unique_images": 7,
        "processed_images": 7,
        "output_files": 14,
        "labelled_images": 7,
        "hot": 3,
        "cold": 4,
    }
    metrics["quality_score"] = quality_score(metrics)
    valid_sizes = [*sizes, (640, 480), (400, 300)]
    return {
        "dataset": "street-signs",
        "request_id": "req-0007",
        "generated_at": "2024-06-01T12:30:05+00:00",
        "metrics": metrics,
        "quality_score_formula": QUALITY_SCORE_FORMULA,
        "stages": [
            {"stage": "ingest", "count": 12, "duration_s": 0.84},
            {"stage": "validate", "count": 9, "duration_s": 2.5},
            {"stage": "dedupe", "count": 7, "duration_s": 75.0},
            {"stage": "label", "count": 7, "duration_s": None},
        ],
        "reject_reasons": {"truncated": 2, "too_small": 1},
        "reason_descriptions": {
            "truncated": "File ends before the image data does",
            "too_small": "Smaller than the minimum size",
        },
        "quality_issues": {"low_contrast": 3, "too_dark": 1},
        "histograms": {
            "width": histogram([w for w, _ in valid_sizes], bins=8),
            "height": histogram([h for _, h in valid_sizes], bins=8),
            "aspect": histogram([w / h for w, h in valid_sizes], bins=6),
            "brightness": histogram(
                [brightness(path) for path in valid], bins=16, value_range=(0, 255)
            ),
        },
        "labels": {"stop": 4, "yield": 2, HOSTILE_LABEL: 1},
        "label_imbalance": 4.0,
        "rejects": [
            {
                "source": "raw/IMG_0012.jpg",
                "reason": "truncated",
                "message": "image file is truncated (34 bytes not processed)",
                "thumbnail": thumbnail_uri(truncated),
            },
            {
                "source": HOSTILE_NAME,
                "reason": "truncated",
                "message": "broken <b>data</b>",
                "thumbnail": thumbnail_uri(hostile),
            },
            {
                "source": "raw/tiny.jpg",
                "reason": "too_small",
                "message": "16x16 is below 64x64",
                "thumbnail": None,
            },
        ],
        "duplicate_clusters": [
            {
                "cluster": "exact-1f3a",
                "kind": "exact",
                "members": [
                    {
                        "source": "raw/sign_0.jpg",
                        "kept": True,
                        "distance": 0,
                        "width": 640,
                        "height": 480,
                        "thumbnail": thumbnail_uri(valid[0]),
                    },
                    {
                        "source": "raw/sign_0 copy.jpg",
                        "kept": False,
                        "distance": 0,
                        "width": 640,
                        "height": 480,
                        "thumbnail": thumbnail_uri(copy),
                    },
                ],
            },
            {
                "cluster": "near-77c0",
                "kind": "near",
                "members": [
                    {
                        "source": "raw/sign_1_small.jpg",
                        "kept": False,
                        "distance": 3,
                        "width": 400,
                        "height": 300,
                        "thumbnail": thumbnail_uri(resized),
                    },
                    {
                        "source": "raw/sign_1.jpg",
                        "kept": True,
                        "distance": 0,
                        "width": 800,
                        "height": 600,
                        "thumbnail": thumbnail_uri(valid[1]),
                    },
                ],
            },
        ],
        "operations": [{"op": "resize", "size": [256, 256]}, {"op": "to_rgb"}],
        "operations_fingerprint": "sha256:9f2c1e0b7a44",
    }


def empty_report() -> dict:
    metrics = dict.fromkeys(
        (
            "images_ingested",
            "images_validated",
            "valid_images",
            "invalid_images",
            "duplicates_found",
            "duplicates_removed",
            "unique_images",
            "processed_images",
            "output_files",
            "labelled_images",
            "hot",
            "cold",
        ),
        0,
    )
    metrics["quality_score"] = quality_score(metrics)
    empty_hist = histogram([])
    return {
        "dataset": "empty",
        "request_id": "req-0000",
        "generated_at": "2024-06-01T00:00:00+00:00",
        "metrics": metrics,
        "quality_score_formula": QUALITY_SCORE_FORMULA,
        "stages": [],
        "reject_reasons": {},
        "reason_descriptions": {},
        "quality_issues": {},
        "histograms": dict.fromkeys(("width", "height", "aspect", "brightness"), empty_hist),
        "labels": {},
        "label_imbalance": None,
        "rejects": [],
        "duplicate_clusters": [],
        "operations": [],
        "operations_fingerprint": "",
    }


def section(page: Node, anchor: str) -> Node:
    return page.find("section", id=anchor)


def test_report_dict_is_json_serialisable_and_renders_one_document(report: dict) -> None:
    page = render_report_html(json.loads(json.dumps(report)))
    assert page.startswith("<!DOCTYPE html>")
    tree = parse(page)
    assert [node.attrs["id"] for node in tree.find_all("section")] == [
        *SECTION_IDS,
        "operations",
    ]


def test_summary_shows_score_formula_and_counts(report: dict) -> None:
    summary = section(parse(render_report_html(report)), "summary")
    score = summary.find(class_="score")
    assert score.find(class_="value").text().startswith("58.3")
    assert QUALITY_SCORE_FORMULA in score.text()
    assert "9 of 12 ingested were valid" in score.text()
    rows = {
        row.find_all("td")[0].text(): row.find_all("td")[1].text()
        for row in summary.find_all("tr")
        if row.find_all("td")
    }
    assert rows["Images ingested"] == "12"
    assert rows["Duplicates removed"] == "2"
    assert rows["Unique images"] == "7"
    assert rows["Cold storage tier"] == "4"


def test_stages_table_lists_counts_and_durations(report: dict) -> None:
    stages = section(parse(render_report_html(report)), "stages")
    rows = [[cell.text() for cell in row.find_all("td")] for row in stages.find_all("tr")[1:]]
    assert rows[0][:3] == ["ingest", "12", "0.84 s"]
    assert rows[2][:3] == ["dedupe", "7", "1 min 15.0 s"]
    assert rows[3][:3] == ["label", "7", "—"]
    assert rows[-1][0] == "Total"
    assert rows[-1][2] == "1 min 18.3 s"


def test_reject_reasons_are_counted_with_their_descriptions(report: dict) -> None:
    rejects = section(parse(render_report_html(report)), "rejects")
    rows = [[cell.text() for cell in row.find_all("td")] for row in rejects.find_all("tr")[1:]]
    assert [row[:3] for row in rows] == [
        ["truncated", "File ends before the image data does", "2"],
        ["too_small", "Smaller than the minimum size", "1"],
    ]


def test_reject_groups_hold_the_file_names_of_their_reason(report: dict) -> None:
    rejects = section(parse(render_report_html(report)), "rejects")
    groups = {
        group.attrs["data-reason"]: [name.text() for name in group.find_all(class_="name")]
        for group in rejects.find_all(class_="group")
    }
    assert groups == {
        "truncated": ["raw/IMG_0012.jpg", HOSTILE_NAME],
        "too_small": ["raw/tiny.jpg"],
    }
    truncated = rejects.find(class_="group", **{"data-reason": "truncated"})
    assert "image file is truncated (34 bytes not processed)" in truncated.text()
    assert "2 of 2 shown" in truncated.text()


def test_reject_without_thumbnail_gets_a_placeholder_naming_its_reason(report: dict) -> None:
    rejects = section(parse(render_report_html(report)), "rejects")
    too_small = rejects.find(class_="group", **{"data-reason": "too_small"})
    assert too_small.find_all("img") == []
    assert too_small.find(class_="placeholder").text() == "too_small"
    assert len(rejects.find(class_="group", **{"data-reason": "truncated"}).find_all("img")) == 2


def test_thumbnails_are_embedded_images_that_decode(report: dict) -> None:
    tree = parse(render_report_html(report))
    images = tree.find_all("img")
    assert len(images) == 6
    for img in images:
        header, payload = img.attrs["src"].split(",", 1)
        assert header == "data:image/jpeg;base64"
        with Image.open(io.BytesIO(base64.b64decode(payload))) as decoded:
            assert max(decoded.size) == 96


def test_kept_member_of_each_cluster_is_marked_kept(report: dict) -> None:
    duplicates = section(parse(render_report_html(report)), "duplicates")
    clusters = duplicates.find_all(class_="cluster")
    assert [cluster.attrs["data-cluster"] for cluster in clusters] == ["exact-1f3a", "near-77c0"]
    kept = {
        cluster.attrs["data-cluster"]: [
            figure.find(class_="name").text()
            for figure in cluster.find_all("figure")
            if "kept" in figure.find(class_="status").text()
        ]
        for cluster in clusters
    }
    assert kept == {"exact-1f3a": ["raw/sign_0.jpg"], "near-77c0": ["raw/sign_1.jpg"]}
    near = clusters[1]
    assert near.find(class_="near").text() == "near"
    assert clusters[0].find(class_="exact").text() == "exact"
    removed = near.find_all("figure")[0]
    assert removed.find(class_="status").text() == "removed"
    assert "distance 3" in removed.text()
    assert "400\u00d7300" in removed.text()
    assert [figure.attrs.get("class") for figure in near.find_all("figure")] == [None, "is-kept"]


@pytest.mark.parametrize(
    ("evidence", "shown"),
    [
        (
            {"method": "ecc-aligned", "correlation": 0.97, "rotation": 3.04, "scale": 1.12,
             "flipped": False, "edited": True},
            "aligned by intensity, correlation 0.97, rotation 3.0\u00b0, scale 1.12, "
            "this copy is the rotated or cropped one",
        ),
        (
            {"method": "orb-ransac", "inliers": 214, "correlation": 0.99, "rotation": -0.02,
             "scale": 1.0, "flipped": True, "edited": None, "matched": 4},
            "214 keypoints agree, correlation 0.99, rotation 0.0\u00b0, scale 1.00, flipped "
            "(matched through another copy in the cluster)",
        ),
        ({"method": "same pixels"}, "same decoded pixels"),
    ],
)  # fmt: skip
def test_each_removed_copy_shows_the_evidence_that_matched_it(
    report: dict, evidence: dict, shown: str
) -> None:
    report["duplicate_clusters"][1]["members"][0]["evidence"] = evidence
    duplicates = section(parse(render_report_html(report)), "duplicates")
    removed = duplicates.find_all(class_="cluster")[1].find_all("figure")[0]
    assert removed.find(class_="evidence").text() == shown


def test_hostile_names_are_shown_as_text(report: dict) -> None:
    report["dataset"] = "</title><script>steal()</script>"
    page = render_report_html(report)
    assert "<script" not in page
    assert "<b>data</b>" not in page
    assert "&lt;script&gt;" in page
    tree = parse(page)
    assert tree.find_all("script") == []
    assert HOSTILE_NAME in [name.text() for name in tree.find_all(class_="name")]
    labels = section(tree, "labels")
    assert f"{HOSTILE_LABEL}: 1" in [node.text() for node in labels.find_all("title")]
    assert tree.find("h1").text() == "Quality report · </title><script>steal()</script>"
    assert len(tree.find_all("img")) == 6


def test_page_references_nothing_outside_itself(report: dict) -> None:
    report["rejects"].append(
        {
            "source": "remote.jpg",
            "reason": "too_small",
            "message": "thumbnail given as a link",
            "thumbnail": "https://example.com/remote.jpg",
        }
    )
    page = render_report_html(report)
    for forbidden in ("http://", "https://", 'src="/', "<link", "url(", "@import"):
        assert forbidden not in page
    too_small = parse(page).find(class_="group", **{"data-reason": "too_small"})
    assert len(too_small.find_all(class_="placeholder")) == 2


def test_histograms_are_svg_bar_charts_with_axis_labels(report: dict) -> None:
    histograms = section(parse(render_report_html(report)), "histograms")
    width = histograms.find(**{"data-histogram": "width"})
    assert len(width.find("svg").find_all("rect")) == 8
    axis_text = [node.text() for node in width.find_all("text")]
    assert "width (px)" in axis_text
    assert "images" in axis_text
    assert "300" in axis_text
    assert "1,200" in axis_text
    brightness_chart = histograms.find(**{"data-histogram": "brightness"})
    assert len(brightness_chart.find_all("rect")) == 16
    assert {"0", "255", "mean brightness (0 to 255)"} <= {
        node.text() for node in brightness_chart.find_all("text")
    }


def test_labels_show_class_counts_and_imbalance(report: dict) -> None:
    labels = section(parse(render_report_html(report)), "labels")
    assert "imbalance ratio (largest ÷ smallest class) 4.00" in labels.text()
    bars = [node.text() for node in labels.find_all("title")]
    assert bars == ["stop: 4", "yield: 2", f"{HOSTILE_LABEL}: 1"]


def test_quality_issues_are_counted(report: dict) -> None:
    issues = section(parse(render_report_html(report)), "issues")
    assert [node.text() for node in issues.find_all("title")] == ["low_contrast: 3", "too_dark: 1"]


def test_empty_report_says_so_in_every_section() -> None:
    tree = parse(render_report_html(empty_report()))
    expected = {
        "stages": "No stages recorded",
        "rejects": "No rejected images",
        "issues": "No quality issues found",
        "duplicates": "No duplicate clusters",
        "labels": "No labels",
        "operations": "No operations recorded",
    }
    for anchor, text in expected.items():
        assert section(tree, anchor).find(class_="empty").text() == text
    histograms = section(tree, "histograms")
    assert [node.text() for node in histograms.find_all(class_="empty")] == ["No data"] * 4
    assert histograms.find_all("svg") == []
    assert section(tree, "summary").find(class_="value").text().startswith("0.0")
    assert tree.find_all("img") == []


def test_quality_score_is_zero_when_nothing_was_ingested() -> None:
    assert quality_score({"images_ingested": 0, "valid_images": 0, "unique_images": 0}) == 0.0
    assert quality_score({}) == 0.0


def test_quality_score_is_zero_when_nothing_was_valid() -> None:
    assert quality_score({"images_ingested": 5, "valid_images": 0, "unique_images": 0}) == 0.0


def test_quality_score_is_100_when_every_image_is_valid_and_unique() -> None:
    assert quality_score({"images_ingested": 40, "valid_images": 40, "unique_images": 40}) == 100.0


def test_quality_score_multiplies_validity_by_uniqueness() -> None:
    score = quality_score({"images_ingested": 12, "valid_images": 9, "unique_images": 7})
    assert score == pytest.approx(100 * (9 / 12) * (7 / 9))
    assert quality_score(
        {"images_ingested": 10, "valid_images": 10, "unique_images": 5}
    ) == pytest.approx(50.0)


def test_quality_score_stays_within_0_and_100_on_inconsistent_counts() -> None:
    assert quality_score({"images_ingested": 3, "valid_images": 5, "unique_images": 9}) == 100.0
    assert quality_score({"images_ingested": 3, "valid_images": 3, "unique_images": -1}) == 0.0


def test_histogram_has_bins_plus_one_edges_and_counts_every_value() -> None:
    values = [float(v) for v in range(100)]
    result = histogram(values, bins=10)
    assert len(result["edges"]) == 11
    assert result["counts"] == [10] * 10
    assert result["edges"][0] == 0.0
    assert result["edges"][-1] == 99.0
    assert all(isinstance(count, int) for count in result["counts"])
    json.dumps(result)


def test_histogram_matches_numpy_and_respects_the_value_range() -> None:
    values = [3.0, 10.0, 10.5, 200.0, 254.9, 300.0, -4.0]
    result = histogram(values, bins=5, value_range=(0, 255))
    counts, edges = np.histogram(values, bins=5, range=(0, 255))
    assert result["counts"] == counts.tolist()
    assert result["edges"] == edges.tolist()
    assert sum(result["counts"]) == 5
    assert result["edges"][0] == 0.0
    assert result["edges"][-1] == 255.0


def test_histogram_of_nothing_is_empty_and_non_finite_values_are_dropped() -> None:
    assert histogram([]) == {"edges": [], "counts": []}
    assert histogram([math.nan, math.inf]) == {"edges": [], "counts": []}
    result = histogram([1.0, math.nan, 2.0, -math.inf], bins=2)
    assert sum(result["counts"]) == 2
