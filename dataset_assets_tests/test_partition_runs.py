"""Runs with no config in `dagster dev`: a backfill, a re-execution from failure, and one stage
rebuilt from the UI, all reading the request stored with each partition."""

import shutil
import time
from pathlib import Path

import pytest

from dataset_assets.cli import main
from dataset_assets.stages.tracking import STAGES
from dataset_assets_tests.servers import graphql, start_dagster_dev

CHROMIUM = Path("/usr/bin/chromium")
LOCATION = {
    "repositoryLocationName": "dataset_assets.definitions",
    "repositoryName": "__repository__",
}

LAUNCH_BACKFILL = """mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message }
  }
}"""
BACKFILL = """query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status runs(limit: 10) { status tags { key value } } }
  }
}"""
LAUNCH_RUN = """mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  }
}"""
REEXECUTE = """mutation($params: ReexecutionParams!) {
  launchPipelineReexecution(reexecutionParams: $params) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  }
}"""
RUN = """query($id: ID!) {
  runOrError(runId: $id) { ... on Run { status tags { key value } assetSelection { path } } }
}"""
RUNS = """query($partition: String!) {
  runsOrError(filter: {tags: [{key: "dagster/partition", value: $partition}]}) {
    ... on Runs { results { runId status assetSelection { path } } }
  }
}"""
PARTITIONS = """{
  assetNodes {
    assetKey { path }
    assetPartitionStatuses {
      ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
    }
  }
}"""
CHECK_RESULTS = """{
  assetCheckExecutions(
    assetKey: {path: ["validated_images"]}, checkName: "invalid_ratio", limit: 10
  ) { partition status evaluation { description } }
}"""
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


def _wait(condition, what: str, seconds: float = 240):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(1)
    return value


def _finished_run(port: int, run_id: str) -> dict:
    def done():
        run = graphql(port, RUN, {"id": run_id})["runOrError"]
        return run if run["status"] in FINISHED else None

    return _wait(done, f"run {run_id}")


def _launch(port: int, mutation: str, params: dict) -> str:
    (answer,) = graphql(port, mutation, {"params": params}).values()
    assert answer["__typename"] == "LaunchRunSuccess", answer
    return answer["run"]["runId"]


def _statuses(port: int) -> dict[str, dict]:
    return {
        node["assetKey"]["path"][-1]: node["assetPartitionStatuses"]
        for node in graphql(port, PARTITIONS)["assetNodes"]
    }


def _request(folder: Path, request_id: str, source: Path) -> str:
    path = folder / f"{request_id}.json"
    path.write_text(f'{{"request_id": "{request_id}", "dataset_key": "{source}"}}')
    assert main(["prepare", str(path), "-o", str(folder / f"{request_id}.yaml")]) == 0
    return request_id


@pytest.fixture
def registered(tmp_path, monkeypatch, sample_dir):
    """Four registered partitions (one whose source folder is still empty) and `dagster dev`."""
    monkeypatch.chdir(tmp_path)
    env = {
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "DATASET_ASSETS_HOME": str(tmp_path / "home"),
        "DATASET_ASSETS_EXECUTOR": "in_process",
        "DATASET_ASSETS_SOURCE_ROOTS": f"{sample_dir},{tmp_path}",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    late = tmp_path / "late"
    late.mkdir()
    for request_id in ("bf-1", "bf-2", "bf-3"):
        _request(tmp_path, request_id, sample_dir)
    _request(tmp_path, "late", late)
    with start_dagster_dev(env) as port:
        graphql(port, "mutation { setNuxSeen }")
        yield port, late


def test_backfill_reexecution_and_a_ui_rebuild_need_no_config(registered, sample_dir, capsys):
    port, late = registered
    partitions = ["bf-1", "bf-2", "bf-3"]
    params = {"partitionNames": partitions, "assetSelection": [{"path": [s]} for s in STAGES]}
    launched = graphql(port, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched

    def backfilled():
        backfill = graphql(port, BACKFILL, {"id": launched["backfillId"]})
        runs = backfill["partitionBackfillOrError"]["runs"]
        done = len(runs) == 3 and all(run["status"] in FINISHED for run in runs)
        return runs if done else None

    runs = _wait(backfilled, "the backfill's three runs")
    assert [run["status"] for run in runs] == ["SUCCESS"] * 3
    ran = {tag["value"] for run in runs for tag in run["tags"] if tag["key"] == "dagster/partition"}
    assert ran == set(partitions)
    statuses = _statuses(port)
    for stage in STAGES:
        assert sorted(statuses[stage]["materializedPartitions"]) == partitions

    job = {**LOCATION, "jobName": "process_dataset"}
    metadata = {"tags": [{"key": "dagster/partition", "value": "late"}]}
    failed = _launch(port, LAUNCH_RUN, {"selector": job, "executionMetadata": metadata})
    assert _finished_run(port, failed)["status"] == "FAILURE"
    statuses = _statuses(port)
    assert statuses["raw_images"]["failedPartitions"] == ["late"]
    for stage in STAGES:  # the failed dataset is its own partition: the others stay green
        assert sorted(statuses[stage]["materializedPartitions"]) == partitions
        assert statuses[stage]["failedPartitions"] in ([], ["late"])
    checks = {row["partition"]: row for row in graphql(port, CHECK_RESULTS)["assetCheckExecutions"]}
    assert checks["late"]["status"] == "EXECUTION_FAILED"  # the failed dataset's run, by partition
    for partition in partitions:  # each dataset's own result, with why
        assert checks[partition]["status"] == "SUCCEEDED"
        assert "3 of 28 images rejected" in checks[partition]["evaluation"]["description"]
    assert main(["status", "late"]) == 0  # the reason, read from the run the daemon launched
    assert (
        f"error: raw_images: request 'late': no files found in '{late}'" in capsys.readouterr().out
    )
    shutil.copytree(sample_dir, late, dirs_exist_ok=True)
    retried = _launch(port, REEXECUTE, {"parentRunId": failed, "strategy": "FROM_FAILURE"})
    assert _finished_run(port, retried)["status"] == "SUCCESS"
    assert "late" in _statuses(port)["quality_report"]["materializedPartitions"]

    if not CHROMIUM.exists():
        pytest.skip("chromium not installed: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(f"http://127.0.0.1:{port}/assets/labels?view=partitions")
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Select a partition or create one").click()
        page.get_by_role("menuitem", name="bf-2").click()
        dialog.get_by_text("Launch runs to materialize labels").click()  # closes the menu
        dialog.get_by_role("button", name="Launch 1 run").click()
        page.get_by_text("Launched run").wait_for()
        browser.close()

    def ui_run():
        runs = graphql(port, RUNS, {"partition": "bf-2"})["runsOrError"]["results"]
        return next((run for run in runs if run["assetSelection"] == [{"path": ["labels"]}]), None)

    rebuilt = _finished_run(port, _wait(ui_run, "the run launched from the UI")["runId"])
    assert rebuilt["status"] == "SUCCESS"
