"""The quality report as a browser shows it: headless Chromium loads the file offline."""

import base64
import io
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from dataset_assets.report import (
    QUALITY_SCORE_FORMULA,
    histogram,
    quality_score,
    render_report_html,
)

CHROMIUM = Path("/usr/bin/chromium")
WINDOW = (1400, 1600)
MAGENTA = (255, 0, 255)
SCORE_RED = (198, 40, 40)
HOSTILE_NAME = "<script>document.body.remove()</script>.jpg"

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="chromium not installed: apt-get install -y chromium"
)


class DomSummary(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.section_ids: list[str] = []
        self.img_sources: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "section":
            self.section_ids.append(values.get("id") or "")
        elif tag == "img":
            self.img_sources.append(values.get("src") or "")
        elif tag == "script":
            self.scripts += 1


def thumbnail_uri(tmp_path: Path, name: str, colour: tuple[int, int, int]) -> str:
    path = tmp_path / name
    Image.new("RGB", (320, 240), colour).save(path, "JPEG", quality=95)
    with Image.open(path) as image:
        image.thumbnail((128, 128))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=95)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def build_report(tmp_path: Path) -> dict:
    """Ten images in, four rejected (three with thumbnails), one near-duplicate pair."""
    metrics = {
        "images_ingested": 10,
        "images_validated": 10,
        "valid_images": 6,
        "invalid_images": 4,
        "duplicates_found": 1,
        "duplicates_removed": 1,
        "unique_images": 5,
        "processed_images": 5,
        "output_files": 5,
        "labelled_images": 5,
        "hot": 5,
        "cold": 0,
    }
    metrics["quality_score"] = quality_score(metrics)
    return {
        "dataset": "browser-check",
        "request_id": "req-browser",
        "generated_at": "2024-06-01T12:00:00+00:00",
        "metrics": metrics,
        "quality_score_formula": QUALITY_SCORE_FORMULA,
        "stages": [
            {"stage": "ingest", "count": 10, "duration_s": 0.2},
            {"stage": "validate", "count": 6, "duration_s": 0.9},
        ],
        "reject_reasons": {"truncated": 3, "too_small": 1},
        "reason_descriptions": {
            "truncated": "File ends before the image data does",
            "too_small": "Smaller than the minimum size",
        },
        "quality_issues": {"too_dark": 2},
        "histograms": {
            "width": histogram([320, 640, 640, 800, 1024, 1200], bins=6),
            "height": histogram([240, 480, 480, 600, 768, 900], bins=6),
            "aspect": histogram([1.33, 1.33, 1.5, 1.0, 0.75, 1.78], bins=6),
            "brightness": histogram([40, 90, 120, 130, 180, 210], bins=8, value_range=(0, 255)),
        },
        "labels": {"stop": 3, "yield": 2},
        "label_imbalance": 1.5,
        "rejects": [
            {
                "source": f"raw/broken_{index}.jpg" if index else HOSTILE_NAME,
                "reason": "truncated",
                "message": "image file is truncated",
                "thumbnail": thumbnail_uri(tmp_path, f"broken_{index}.jpg", MAGENTA),
            }
            for index in range(3)
        ]
        + [{"source": "raw/tiny.png", "reason": "too_small", "message": "8x8", "thumbnail": None}],
        "duplicate_clusters": [
            {
                "cluster": "near-01",
                "kind": "near",
                "members": [
                    {
                        "source": f"raw/yield_{index}.jpg",
                        "kept": index == 0,
                        "distance": 2 * index,
                        "width": 320,
                        "height": 240,
                        "thumbnail": thumbnail_uri(tmp_path, f"yield_{index}.jpg", (230, 190, 30)),
                    }
                    for index in range(2)
                ],
            }
        ],
        "operations": [{"op": "resize", "size": [128, 128]}],
        "operations_fingerprint": "sha256:0123abcd",
    }


def chromium(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=8000",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *args,
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.fixture(scope="module")
def report_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp_path = tmp_path_factory.mktemp("report")
    page = tmp_path / "report.html"
    page.write_text(render_report_html(build_report(tmp_path)), encoding="utf-8")
    return page


def test_browser_dom_has_every_section_and_every_thumbnail(
    report_file: Path, tmp_path: Path
) -> None:
    dom = chromium(tmp_path, report_file, "--dump-dom").stdout
    summary = DomSummary()
    summary.feed(dom)
    assert summary.section_ids == [
        "summary",
        "stages",
        "rejects",
        "issues",
        "duplicates",
        "histograms",
        "labels",
        "operations",
    ]
    assert len(summary.img_sources) == 5
    assert all(src.startswith("data:image/jpeg;base64,") for src in summary.img_sources)
    assert summary.scripts == 0
    assert "&lt;script&gt;document.body.remove()&lt;/script&gt;.jpg" in dom
    assert "No rejected images" not in dom


def test_screenshot_shows_the_styled_page_and_the_thumbnails(
    report_file: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    chromium(tmp_path, report_file, f"--screenshot={shot}")
    with Image.open(shot) as image:
        rgb = image.convert("RGB")
    assert rgb.size == WINDOW
    assert ImageStat.Stat(rgb.convert("L")).stddev[0] > 20
    assert len(rgb.getcolors(maxcolors=1 << 20) or []) > 200

    def pixels_near(colour: tuple[int, int, int], tolerance: int = 30) -> int:
        return sum(
            count
            for count, pixel in rgb.getcolors(maxcolors=1 << 20)
            if all(abs(a - b) <= tolerance for a, b in zip(pixel, colour, strict=True))
        )

    assert pixels_near(SCORE_RED) > 20_000
    assert pixels_near(MAGENTA) > 3 * 100 * 70
