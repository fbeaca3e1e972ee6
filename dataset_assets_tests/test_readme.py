"""The README's commands run as written: its marked shell blocks, in order, on a fresh copy.

`bash scripts/test.sh`, the README's other quick-start command, is what CI runs. The local stack's
block runs in `test_local_stack.py`, against the servers that test starts.
"""

import json

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from dataset_assets.request import parse_request
from dataset_assets.stages.tracking import STAGES
from dataset_assets_tests.readme import (
    ROOT,
    copy_repository,
    readme_blocks,
    run_in_shell,
    venv_is_current,
)
from dataset_assets_tests.servers import start_dagster_dev

DOCUMENTED = ("quick-start", "command", "job-execute", "ui", "backfill", "local-stack")


def test_the_readme_marks_every_documented_path_in_reading_order():
    assert [name for name in readme_blocks() if name in DOCUMENTED] == list(DOCUMENTED)


def test_the_example_request_is_a_valid_request_on_the_sample():
    request = parse_request((ROOT / "examples" / "sample_request.json").read_text())
    assert (request.id, request.dataset_key) == ("sample-demo", "sample_images")


def test_quick_start_command_and_dagster_blocks_run_as_written(tmp_path):
    if not venv_is_current():
        pytest.fail("run `bash scripts/setup.sh test` first: the README's demo.sh would install")
    clone = copy_repository(tmp_path / "clone")
    blocks = readme_blocks()
    script = "\n".join(blocks[name] for name in ("quick-start", "command", "job-execute"))
    done = run_in_shell(script, clone)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    out = done.stdout
    assert "quality score" in out and "request sample-demo: " in out
    summary = json.loads(
        next(line for line in out.splitlines() if line.startswith('{"request_id"'))
    )
    assert summary["counts"]["processed"] == 23 and summary["quality_score"] > 0
    assert "request sample-demo: succeeded (100%)" in out
    home = clone / ".dataset_assets"
    report = home / "blobs" / "reports" / "sample-demo" / "report.html"
    assert b"quality score" in report.read_bytes().lower()
    labels = (home / "blobs" / "datasets" / "sample-demo" / "labels.csv").read_text()
    assert len(labels.splitlines()) == 24

    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        runs = instance.get_runs(RunsFilter(tags={"dagster/partition": "sample-demo"}))
    assert len(runs) == 3  # dataset-assets run, dagster job execute, dagster asset materialize
    assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
    assert [run.job_name for run in runs][:2] == ["__ASSET_JOB", "process_dataset"]


def _ui_environment(clone) -> dict[str, str]:
    """The settings the UI block's lines before its last, `dagster dev`, leave in bash."""
    *exports, command = readme_blocks()["ui"].strip().splitlines()
    assert command == "dagster dev -m dataset_assets.definitions"
    shell = run_in_shell("\n".join([*exports, "env -0"]), clone)
    assert shell.returncode == 0, shell.stderr
    pairs = (item.split("=", 1) for item in shell.stdout.split("\0") if "=" in item)
    return {k: v for k, v in pairs if k.startswith(("DAGSTER", "DATASET_ASSETS"))}


def test_dagster_job_backfill_runs_three_datasets_with_no_config(tmp_path):
    """The UI block's `dagster dev` (its daemon launches the queued runs), then the backfill
    block as written in another shell."""
    clone = copy_repository(tmp_path / "clone")
    env = _ui_environment(clone)
    assert env["DAGSTER_HOME"] == str(clone / ".dataset_assets" / "dagster")
    sample = run_in_shell("source .venv/bin/activate && dataset-assets sample sample_images", clone)
    assert sample.returncode == 0, sample.stderr  # what the quick start left behind
    with start_dagster_dev(env, cwd=clone):
        done = run_in_shell(readme_blocks()["backfill"], clone)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    partitions = ["demo-a", "demo-b", "demo-c"]
    for request_id in partitions:
        assert f"request {request_id}: succeeded (100%)" in done.stdout
        labels = clone / ".dataset_assets" / "blobs" / "datasets" / request_id / "labels.csv"
        assert len(labels.read_text().splitlines()) == 24
    finished = [line.split()[0] for line in done.stdout.splitlines() if line.endswith(" s")]
    assert finished == list(STAGES) * 3

    with DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        (backfill,) = instance.get_backfills()
        runs = instance.get_runs(RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
    assert sorted(backfill.partition_names) == partitions
    assert sorted(run.tags["dagster/partition"] for run in runs) == partitions
    assert {run.status for run in runs} == {DagsterRunStatus.SUCCESS}
    assert {run.job_name for run in runs} == {"process_dataset"}
    assert all("ops" not in run.run_config for run in runs)  # every request read from its partition
