"""The `dataset-assets` command as a user runs it."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dataset_assets.cli import main

SEED_OPS = ['{"Resize": {"scaling_factor": 0.5}}', "GrayScale", '{"Noise": {"noise_level": 0.1}}']


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh working directory with no DAGSTER_HOME and no store settings, as a new user has."""
    monkeypatch.chdir(tmp_path)
    for name in (
        "DAGSTER_HOME",
        "DATASET_ASSETS_HOME",
        "DATASET_ASSETS_BLOB_ROOT",
        "DATASET_ASSETS_METADATA_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _command_with({}, *args, cwd=cwd)


def test_run_with_ops_prints_progress_and_a_json_summary_last(project, sample_dir):
    ops = [arg for op in SEED_OPS for arg in ("--op", op)]
    done = _command("run", str(sample_dir), *ops, "--request-id", "demo", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no telemetry notice, no log lines: only the command's own output
    lines = done.stdout.strip().splitlines()
    for stage in ("raw_images", "validated_images", "processed_images", "quality_report"):
        assert any(line.strip().startswith(stage) for line in lines)
    summary = json.loads(lines[-1])
    assert summary["request_id"] == "demo"
    assert summary["counts"] == {
        "ingested": 28,
        "valid": 25,
        "invalid": 3,
        "duplicates": 2,
        "processed": 23,
        "labelled": 23,
        "hot": 23,
        "cold": 0,
    }
    assert Path(summary["report"]).is_file()
    assert len(list(Path(summary["output_dir"]).glob("hot/*/*"))) == 23
    assert (project / ".dataset_assets" / "dagster").is_dir()

    status = _command("status", "demo", "--json", cwd=project)
    tracked = json.loads(status.stdout)
    assert tracked["status"] == "succeeded" and tracked["progress"] == 100


def test_run_from_a_request_file(project, sample_dir, capsys):
    request = project / "request.json"
    request.write_text(
        json.dumps(
            {
                "request_id": "from-file",
                "dataset_key": str(sample_dir),
                "operations": [{"Resize": {"max_side": 64}}],
                "tiering": {"hot_storage_threshold": 5},
            }
        )
    )
    assert main(["run", str(request), "--json"]) == 0
    from dataset_assets.storage.environment import resources_from_env

    tracked = resources_from_env()["metadata"].store.get_request("from-file")
    assert tracked["metrics"]["hot"] == 5 and tracked["metrics"]["cold"] == 18

    assert main(["report", "from-file", "-o", "fetched/report.html"]) == 0
    fetched = project / "fetched" / "report.html"
    assert fetched.read_bytes() == Path(tracked["report"]).read_bytes()
    assert json.loads(fetched.with_suffix(".json").read_text())["request_id"] == "from-file"
    capsys.readouterr()
    assert main(["report", "never-ran"]) == 1
    assert capsys.readouterr().err.startswith("error: no report for 'never-ran': ")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "{source}", "--op", "Sepia"], "unknown operation 'Sepia'"),
        (["run", "{source}", "--op", '{"Resize": {"scaling_factor": 0}}'], "scaling_factor"),
        (["run", "{source}", "--op", "{broken"], "not valid JSON"),
        (["run", "no/such/dir"], "no such file or directory"),
        (["status", "never-ran"], "no request 'never-ran'"),
    ],
)
def test_bad_input_exits_non_zero_with_one_line_and_writes_nothing(
    project, sample_dir, capsys, args, expected
):
    code = main([arg.replace("{source}", str(sample_dir)) for arg in args])
    assert code != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err
    assert not (project / ".dataset_assets" / "blobs").exists()


def test_failed_run_reports_the_stage_and_reason_in_one_line(project, sample_dir):
    args = ("run", str(sample_dir), "--mode", "strict", "--request-id", "strict", "--json")
    failed = _command(*args, cwd=project)
    assert failed.returncode == 1
    (line,) = failed.stderr.splitlines()  # no Dagster error events or stack traces before it
    assert line.startswith("error: validated_images: strict validation: 3 rejected image(s)")
    assert "error" in json.loads(failed.stdout.strip().splitlines()[-1])
    verbose = _command("--verbose", *args, cwd=project)
    assert "STEP_FAILURE" in verbose.stderr and "Traceback" in verbose.stderr


def test_prepare_then_dagster_job_execute_runs_the_partition(project, sample_dir):
    request = project / "request.json"
    request.write_text(json.dumps({"request_id": "cli-job", "dataset_key": str(sample_dir)}))
    prepared = _command("prepare", str(request), "-o", "run.yaml", cwd=project)
    assert prepared.returncode == 0, prepared.stderr
    command = prepared.stdout.strip().splitlines()[-1]
    assert command.startswith("dagster job execute")
    with open(project / "run.yaml", "a") as config:
        config.write("execution:\n  config:\n    in_process: {}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "DATASET_ASSETS"))}
    env["DAGSTER_HOME"] = str(project / ".dataset_assets" / "dagster")
    dagster = Path(sys.executable).with_name("dagster")

    def execute() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(dagster),
                "job",
                "execute",
                "-m",
                "dataset_assets.definitions",
                "-j",
                "process_dataset",
                "-c",
                "run.yaml",
                "--tags",
                '{"dagster/partition": "cli-job"}',
            ],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    # Jobs run from the code location read local sources only under the deployment's roots.
    refused = execute()
    assert refused.returncode == 1
    assert "outside the folders requests may read" in refused.stdout + refused.stderr
    env["DATASET_ASSETS_SOURCE_ROOTS"] = str(sample_dir.parent)
    done = execute()
    assert done.returncode == 0, done.stderr[-2000:]
    report = project / ".dataset_assets" / "blobs" / "reports" / "cli-job" / "report.json"
    assert json.loads(report.read_text())["metrics"]["processed_images"] == 23


def test_a_killed_run_shows_as_failed_not_running_forever(project, sample_dir):
    from dataset_assets.storage.metadata import MetadataStore, connect

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "DATASET_ASSETS"))}
    script = Path(sys.executable).with_name("dataset-assets")
    ops = [
        "--op",
        '{"Resize": {"max_side": 512}}',
        "--op",
        '{"Augment": {"n": 6, "ops": [{"Blur": {"radius": 2}}]}}',
    ]
    running = subprocess.Popen(
        [str(script), "run", str(sample_dir), *ops, "--request-id", "killed"],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    database = project / ".dataset_assets" / "metadata.db"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and running.poll() is None:
            if database.exists():
                tracked = MetadataStore(connect(str(database))).get_request("killed") or {}
                if tracked.get("status") == "running":
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the run never showed as running")
    finally:
        running.kill()
        running.wait()

    shown = _command("status", "killed", cwd=project)

    assert shown.returncode == 0, shown.stderr
    first, *rest = shown.stdout.splitlines()
    assert first.startswith("request killed: failed")
    assert any(f"(pid {running.pid}) died" in line for line in rest), shown.stdout
    again = _command("status", "killed", "--json", cwd=project)
    assert json.loads(again.stdout)["status"] == "failed"


def test_failures_are_one_line_and_the_traceback_only_with_verbose(project, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"dataset_key": str(tmp_path), "labels": {"pattern": "(a"}}))
    env_down = {
        "DATASET_ASSETS_METADATA_URI": "mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=500"
    }

    bad = _command("run", str(request), cwd=project)
    down = _command_with(env_down, "status", "anything", cwd=project)
    verbose = _command_with(env_down, "--verbose", "status", "anything", cwd=project)

    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ")
    assert "labels.pattern '(a' is not a pattern RE2 accepts (missing ): (a)" in bad.stderr
    assert bad.stderr.count("\n") == 1
    assert down.returncode == 1 and down.stderr.count("\n") == 1, down.stderr
    assert "127.0.0.1:1" in down.stderr and "Traceback" not in down.stderr
    assert "Traceback" in verbose.stderr and verbose.stderr.rstrip().splitlines()[-1].startswith(
        "error: "
    )


def _command_with(extra_env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER", "DATASET_ASSETS"))}
    script = Path(sys.executable).with_name("dataset-assets")
    return subprocess.run(
        [str(script), *args],
        cwd=cwd,
        env={**env, **extra_env},
        capture_output=True,
        text=True,
        timeout=300,
    )
