"""Images done / total per stage: written in batches by the stages, drawn by `status --watch`."""

import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from dataset_assets.cli import main
from dataset_assets.stages.progress import StageProgress, report_progress
from dataset_assets.stages.tracking import STAGES, run_progress, start_stage
from dataset_assets.storage.metadata import MetadataStore, connect
from dataset_assets_tests.readme import user_env

BAR = re.compile(r"^  (\w+) +\[([#.]{20})\] +(\d+)(?:/(\d+))? images")


@pytest.fixture(params=["embedded", "mongodb"])
def store_uri(request, tmp_path, monkeypatch) -> str:
    """The metadata store `status` reads: the embedded default, or the real MongoDB server."""
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DATASET_ASSETS_KAFKA_BOOTSTRAP", raising=False)
    if request.param == "mongodb":
        uri = request.getfixturevalue("mongodb_uri")
        uri = uri.replace("/?", f"/progress_{uuid.uuid4().hex[:8]}?", 1)
        monkeypatch.setenv("DATASET_ASSETS_METADATA_URI", uri)
        return uri
    monkeypatch.delenv("DATASET_ASSETS_METADATA_URI", raising=False)
    return str(tmp_path / "home" / "metadata.db")


def test_a_stage_reports_its_count_once_an_interval_not_per_image(tmp_path):
    store = MetadataStore(connect(str(tmp_path / "metadata.db")))
    store.ensure_indexes()
    now = [0.0]
    start_stage(store, "d", "labels", "run-1", total=1000)
    progress = StageProgress(store, "d", "labels", "run-1", 1000, clock=lambda: now[0])

    def done() -> tuple[int, int]:
        (found,) = run_progress(store, "d", "run-1")
        return found.done, found.total

    for _ in progress.counted(range(300)):
        now[0] += 0.001
    assert done() == (0, 1000)  # 300 images in 0.3 s: nothing written yet
    now[0] += 1.0
    progress.advance(5)
    assert done() == (305, 1000)
    progress.advance()
    assert done() == (305, 1000)
    assert run_progress(store, "d", "another-run") == []


def _watch_in_thread(request_id: str) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(code=main(["status", request_id, "--watch"])), daemon=True
    )
    thread.start()
    return thread, result


def _wait_for_line(capsys, seen: list[str], wanted: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not any(wanted in line for line in seen):
        assert time.monotonic() < deadline, f"no line with {wanted!r} in {seen}"
        seen.extend(capsys.readouterr().out.splitlines())
        time.sleep(0.05)


def test_watch_draws_each_stage_as_its_documents_change_and_exits_with_the_result(
    store_uri, capsys
):
    store = MetadataStore(connect(store_uri))
    store.ensure_indexes()
    report_progress(store, "w", "labels", "an-earlier-run", 5, 5, duration_s=0.1)
    store.track_request("w", status="running", run_id="run-2", current_stage="raw_images")
    start_stage(store, "w", "raw_images", "run-2")
    thread, result = _watch_in_thread("w")
    seen: list[str] = []
    _wait_for_line(capsys, seen, "raw_images           [....................] 0 images so far")

    report_progress(store, "w", "raw_images", "run-2", 40, 40, duration_s=0.5)
    store.upsert_images("w", ({"image_id": f"{i:04d}", "status": "ingested"} for i in range(40)))
    start_stage(store, "w", "validated_images", "run-2", total=40)
    store.update_images("w", ((f"{i:04d}", {"status": "valid"}) for i in range(10)))
    _wait_for_line(capsys, seen, "validated_images     [#####...............] 10/40 images")
    assert main(["status", "w"]) == 0
    _wait_for_line(capsys, seen, "current stage: validated_images (10/40 images)")

    store.track_request("w", status="failed", error="validated_images: a reason")
    thread.join(timeout=30)
    assert result == {"code": 1}
    seen.extend(capsys.readouterr().out.splitlines())
    assert "  raw_images           [####################]     40 images     0.50 s" in seen
    assert not any("labels" in line for line in seen)  # another run's stage
    assert "  error: validated_images: a reason" in seen


def test_watch_follows_a_real_run_to_its_end(tmp_path, sample_dir):
    """`run` in one process, `status --watch` in another, on the embedded default store."""
    env = {**user_env(dict(os.environ)), "DATASET_ASSETS_HOME": str(tmp_path / "home")}
    command = [str(Path(sys.executable).with_name("dataset-assets"))]
    run = subprocess.Popen(
        [*command, "run", str(sample_dir), "--request-id", "followed", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    watched = subprocess.run(
        [*command, "status", "followed", "--watch"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary = json.loads(run.communicate(timeout=300)[0].splitlines()[-1])
    assert run.returncode == 0 and watched.returncode == 0, watched.stderr
    bars = [BAR.match(line) for line in watched.stdout.splitlines()]
    drawn = [bar.groups() for bar in bars if bar]
    finished = [
        (stage, int(count))
        for stage, fill, count, total in drawn
        if fill == "#" * 20 and total is None
    ]
    assert [stage for stage, _ in finished] == list(STAGES)
    counts = summary["counts"]
    assert dict(finished) == {
        "raw_images": counts["ingested"],
        "validated_images": counts["valid"],
        "deduplicated_images": counts["valid"] - counts["duplicates"],
        "processed_images": counts["processed"],
        "labels": counts["labelled"],
        "tiered_storage": counts["hot"] + counts["cold"],
        "quality_report": counts["processed"],
    }
    for _, fill, done, total in drawn:
        if total is not None:  # a bar drawn while the stage ran: never past its total
            assert int(done) <= int(total) and fill.count("#") == 20 * int(done) // int(total)
    store = MetadataStore(connect(str(tmp_path / "home" / "metadata.db")))
    progress = run_progress(store, "followed", summary["run_id"])
    assert [p.stage for p in progress] == list(STAGES) and all(p.finished for p in progress)
