"""`dataset-assets dev` end to end: submit -> sensor -> run -> status, seen in the Dagster UI."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import pytest

from dataset_assets.messaging import KafkaResource
from dataset_assets.stages.tracking import STAGES
from dataset_assets.storage.metadata import MetadataStore, connect
from dataset_assets_tests.readme import readme_blocks, run_in_shell, user_env, venv
from dataset_assets_tests.servers import free_port, read_topic, stop

CHROMIUM = "/usr/bin/chromium"
STOP_BUDGET_S = 120
"""How long `dataset-assets dev` may take to stop: its own stop budgets (30 s for `dagster dev`,
10 s for each server) with room for a loaded machine."""


def _console(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _stack_env(path: Path) -> dict[str, str]:
    pairs = (shlex.split(line.removeprefix("export "))[0] for line in path.read_text().splitlines())
    return dict(pair.split("=", 1) for pair in pairs)


def _wait(condition, what: str, seconds: float):
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2)
        return True
    except OSError:
        return False


def _dom(url: str, profile: Path, showing: Sequence[str]) -> str:
    """The page as headless Chromium renders it, once it shows every string in `showing`.

    A busy machine can leave the UI half drawn, or Chromium hung on a page that keeps polling,
    so a render that times out or misses a string is tried again (three tries, fresh profile).
    """
    dom = ""
    for attempt in range(3):
        command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic"]
        command += ["--no-first-run", "--disable-background-networking"]
        command += ["--disable-component-update", "--disable-sync"]
        command += [f"--user-data-dir={profile}-{attempt}", "--virtual-time-budget=15000"]
        command += ["--window-size=1400,900", "--dump-dom", url]
        try:
            dom = subprocess.run(command, capture_output=True, text=True, timeout=90).stdout
        except subprocess.TimeoutExpired:
            continue
        if all(text in dom for text in showing):
            break
    return dom


@pytest.fixture
def stack(tmp_path):
    """The local stack in a child process, as the README starts it in a project folder (with its
    `.venv`), stopped with SIGTERM like Ctrl-C."""
    port = free_port()
    env = user_env(dict(os.environ))
    (tmp_path / ".venv").symlink_to(venv(), target_is_directory=True)
    home = tmp_path / ".dataset_assets" / "dev"
    process = subprocess.Popen(
        [_console("dataset-assets"), "dev", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(lambda: (home / "stack.env").exists(), "the stack's settings", 60)
        _wait(lambda: _answers(f"http://127.0.0.1:{port}/server_info"), "the Dagster UI", 90)
        yield port, {**env, **_stack_env(home / "stack.env")}, process
    finally:
        stop(process, timeout=STOP_BUDGET_S)


def test_the_readme_submits_and_watches_a_request_which_shows_in_the_ui_and_the_stack_stops(
    stack, tmp_path
):
    port, env, process = stack
    watched = run_in_shell(readme_blocks()["local-stack"], tmp_path, timeout=300)
    assert watched.returncode == 0, watched.stdout + watched.stderr
    lines = watched.stdout.splitlines()
    assert lines[0] == "sample_images"
    assert "submitted demo to dataset-requests" in lines[1]
    finished = [line.split()[0] for line in lines if line.strip().endswith(" s")]
    assert finished == list(STAGES)
    assert "request demo: succeeded (100%)" in lines

    store = MetadataStore(connect(env["DATASET_ASSETS_METADATA_URI"]))
    tracked = store.get_request("demo")
    assert tracked["status"] == "succeeded", tracked.get("error")
    kafka = KafkaResource(bootstrap_servers=env["DATASET_ASSETS_KAFKA_BOOTSTRAP"])

    def events():
        found = [m["value"] for m in read_topic(kafka, kafka.status_topic) if m["key"] == "demo"]
        return found if any(event["event"] == "succeeded" for event in found) else None

    published = _wait(events, "the 'succeeded' event", 120)
    kinds = [event["event"] for event in published]
    assert kinds[0] == "accepted" and "started" in kinds and kinds[-1] == "succeeded"
    stages = [event["stage"] for event in published if event["event"] == "stage_done"]
    assert stages == list(STAGES)
    assert tracked["request"]["dataset_key"].startswith("s3://datasets/dev/incoming/demo/")
    assert tracked["metrics"]["processed_images"] == 23

    if shutil.which(CHROMIUM):
        graph = _dom(f"http://127.0.0.1:{port}/asset-groups/dataset", tmp_path / "p1", STAGES)
        for stage in STAGES:
            assert stage in graph
        partitions = _dom(
            f"http://127.0.0.1:{port}/assets/quality_report?view=partitions",
            tmp_path / "p2",
            ["demo"],
        )
        assert "demo" in partitions

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_BUDGET_S) == 0
    bootstrap = env["DATASET_ASSETS_KAFKA_BOOTSTRAP"]
    with pytest.raises(ConnectionError):
        connect(env["DATASET_ASSETS_METADATA_URI"])
    assert not _answers(f"http://127.0.0.1:{port}/server_info")
    assert not _answers(f"http://{bootstrap}")
