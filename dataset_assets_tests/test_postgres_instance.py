"""`process_dataset` with parallel shard processes on a PostgreSQL instance, as on a cluster.

A real PostgreSQL server (Debian's `postgresql` package) is started in a temporary directory on a
free loopback port; the Dagster instance is `deploy/dagster.yaml` with its variables pointing at
it. The run uses the multiprocess executor, so every step is its own process, as every step is
its own pod under `k8s_job_executor`, and nothing passes between steps through memory: metadata
goes to the MongoDB server, blobs and the steps' outputs to the S3 server. (The embedded metadata
file also survives several local processes, through SQLite's lock and a 30 s busy timeout, but
it serializes their writes and no two pods can share it.)

The executor starts step processes from a forkserver that has imported the project once: the
default `spawn` re-imports Dagster in every one of the ~25 steps, which doubles this test's time.
"""

import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import boto3
import pytest
import yaml
from dagster import (
    DagsterEventType,
    DagsterInstance,
    EventLogEntry,
    JobDefinition,
    execute_job,
    reconstructable,
)

from dataset_assets.definitions import build_definitions
from dataset_assets.deployment import deployment_executor
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import parse_request
from dataset_assets.sample_data import SAMPLE_EXPECTATIONS
from dataset_assets.storage.environment import resources_from_env
from dataset_assets.storage.io_manager import STEP_OUTPUTS_PREFIX
from dataset_assets_tests.servers import free_port, stop

psycopg2 = pytest.importorskip(
    "psycopg2", reason="the PostgreSQL instance test needs `pip install dagster-postgres`"
)
pytest.importorskip(
    "dagster_postgres", reason="the PostgreSQL instance test needs `pip install dagster-postgres`"
)

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
IMAGES_PER_SHARD = 5
MAX_CONCURRENT = 3
"""Not the core count, so the test sees DATASET_ASSETS_MAX_CONCURRENT, not the default, at work."""
SERVER_USER = "postgres"
"""Who runs the server when the tests run as root: PostgreSQL refuses to run as root."""


def server_binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major_version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _major_version(path: str) -> int:
    version = Path(path).parts[-3]
    return int(version) if version.isdigit() else 0


def _server_user() -> dict[str, object]:
    """`subprocess` arguments that drop root to the `postgres` account; nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        account = pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.skip(f"running as root and there is no {SERVER_USER!r} account to run PostgreSQL")
    return {"user": account.pw_uid, "group": account.pw_gid}


@contextmanager
def start_postgres() -> Iterator[dict[str, str]]:
    """A PostgreSQL server in a fresh temporary directory; yields the DAGSTER_PG_* variables.

    Password authentication over TCP on a free loopback port; the unix socket stays in the
    temporary directory. Stopped by PID with a fast shutdown, then the directory is removed.
    """
    binaries = server_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install -y postgresql")
    account = _server_user()
    folder = Path(tempfile.mkdtemp(prefix="dataset-assets-postgres-"))
    try:
        if account:
            os.chown(folder, account["user"], account["group"])
        password = secrets.token_hex(16)
        (folder / "password").write_text(password)
        if account:
            os.chown(folder / "password", account["user"], account["group"])
        initdb = [str(binaries / "initdb"), "-D", str(folder / "data"), "-U", "dagster"]
        initdb += ["-E", "UTF8", "--no-locale", "--auth-host=scram-sha-256", "--auth-local=trust"]
        initdb += ["--pwfile", str(folder / "password")]
        subprocess.run(initdb, check=True, capture_output=True, **account)
        port = free_port()
        command = [str(binaries / "postgres"), "-D", str(folder / "data"), "-p", str(port)]
        command += ["-k", str(folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]
        with open(folder / "server.log", "ab") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **account)
        try:
            settings = {
                "DAGSTER_PG_HOST": "127.0.0.1",
                "DAGSTER_PG_PORT": str(port),
                "DAGSTER_PG_DB": "postgres",
                "DAGSTER_PG_USERNAME": "dagster",
                "DAGSTER_PG_PASSWORD": password,
            }
            _wait_until_ready(settings, server)
            yield settings
        finally:
            stop(server, signal.SIGINT, timeout=20)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _connect(settings: dict[str, str]) -> "psycopg2.extensions.connection":
    return psycopg2.connect(
        host=settings["DAGSTER_PG_HOST"],
        port=int(settings["DAGSTER_PG_PORT"]),
        dbname=settings["DAGSTER_PG_DB"],
        user=settings["DAGSTER_PG_USERNAME"],
        password=settings["DAGSTER_PG_PASSWORD"],
        connect_timeout=2,
    )


def _wait_until_ready(settings: dict[str, str], server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _connect(settings).close()
            return
        except psycopg2.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start") from None
            time.sleep(0.2)


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict[str, str]]:
    with start_postgres() as settings:
        yield settings


def process_dataset_job() -> JobDefinition:
    """The project's job as a code location with this environment loads it, in every process."""
    job = build_definitions(resources_from_env()).resolve_job_def("process_dataset")
    return job.with_executor_def(deployment_executor())


@pytest.fixture
def cluster_like(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    postgres: dict[str, str],
    mongodb_uri: str,
    s3_endpoint: str,
) -> Iterator[tuple[DagsterInstance, str]]:
    """A Dagster home holding deploy/dagster.yaml, and the environment every step process reads."""
    name = uuid.uuid4().hex[:8]
    bucket = f"blobs-{name}"
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", dagster_home / "dagster.yaml")
    environment = {
        **postgres,
        "DAGSTER_HOME": str(dagster_home),
        "DAGSTER_MAX_CONCURRENT_RUNS": "2",
        "DATASET_ASSETS_MAX_CONCURRENT": str(MAX_CONCURRENT),
        "DATASET_ASSETS_HOME": str(tmp_path / "home"),
        "DATASET_ASSETS_METADATA_URI": mongodb_uri.replace("/?", f"/db_{name}?"),
        "DATASET_ASSETS_BLOB_ROOT": f"s3://{bucket}/v1",
        "DATASET_ASSETS_S3_ENDPOINT_URL": s3_endpoint,
        "DATASET_ASSETS_SOURCE_ROOTS": str(tmp_path.parent),  # the tests' temporary folders
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    with DagsterInstance.get() as instance:
        yield instance, bucket


def test_deploy_instance_config_stores_everything_in_postgres(cluster_like) -> None:
    instance, _ = cluster_like
    config = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())

    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    assert instance.run_coordinator.get_run_queue_config().max_concurrent_runs == 2
    database = config["storage"]["postgres"]["postgres_db"]
    assert {name: value for name, value in database.items() if name != "scheme"} == {
        field: {"env": variable}
        for field, variable in [
            ("hostname", "DAGSTER_PG_HOST"),
            ("port", "DAGSTER_PG_PORT"),
            ("db_name", "DAGSTER_PG_DB"),
            ("username", "DAGSTER_PG_USERNAME"),
            ("password", "DAGSTER_PG_PASSWORD"),
        ]
    }


def test_multiprocess_run_on_postgres_fans_shards_out_to_parallel_processes(
    cluster_like, postgres: dict[str, str], sample_dir: Path, s3_endpoint: str
) -> None:
    instance, bucket = cluster_like
    request = parse_request(
        {
            "request_id": "pg-sample",
            "dataset_key": str(sample_dir),
            "operations": [{"Resize": {"max_side": 32}}, "GrayScale"],
            "validation": {"images_per_shard": IMAGES_PER_SHARD, "workers": 1},
            "transform": {"images_per_shard": IMAGES_PER_SHARD, "workers": 1},
        }
    )
    instance.add_dynamic_partitions(datasets_partitions.name, [request.id])
    run_config = request.to_run_config().to_config_dict()
    run_config["execution"] = {"config": {"multiprocess": {"start_method": {"forkserver": {}}}}}

    with execute_job(
        reconstructable(process_dataset_job),
        instance=instance,
        run_config=run_config,
        tags={"dagster/partition": request.id},
    ) as result:
        assert result.success
        run_id = result.run_id

    events = [event for event in instance.all_logs(run_id) if event.dagster_event]
    shard_pids = {
        event.step_key: event.dagster_event.pid
        for event in events
        if event.dagster_event_type == DagsterEventType.STEP_START and "_shard[" in event.step_key
    }
    files, kept = SAMPLE_EXPECTATIONS["files"], SAMPLE_EXPECTATIONS["kept"]
    assert sum(".validate_shard[" in key for key in shard_pids) == -(-files // IMAGES_PER_SHARD)
    assert sum(".transform_shard[" in key for key in shard_pids) == -(-kept // IMAGES_PER_SHARD)
    assert len(set(shard_pids.values())) == len(shard_pids)
    assert os.getpid() not in shard_pids.values()
    assert _most_shards_in_flight(events) == MAX_CONCURRENT

    store = resources_from_env()["metadata"].store
    assert store.count_by(request.id, "status") == {
        "rejected": 3,
        "duplicate": 2,
        "processed": kept,
    }
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=f"v1/{STEP_OUTPUTS_PREFIX}/{run_id}/")
    step_outputs = {item["Key"].split("/")[4] for item in listed.get("Contents", [])}
    assert set(shard_pids) <= step_outputs

    with closing(_connect(postgres)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchall() == [("SUCCESS",)]
        cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s", (run_id,))
        assert cursor.fetchone()[0] == len(instance.all_logs(run_id))

    password = postgres["DAGSTER_PG_PASSWORD"]
    assert password not in json.dumps(instance.get_run_by_id(run_id).run_config)
    assert all(password not in record.to_json() for record in instance.all_logs(run_id))


def _most_shards_in_flight(events: list[EventLogEntry]) -> int:
    """The most shard steps launched and not yet finished at any point of the event log."""
    in_flight, most = set(), 0
    for event in events:
        if event.step_key is None or "_shard[" not in event.step_key:
            continue
        if event.dagster_event_type == DagsterEventType.STEP_WORKER_STARTING:
            in_flight.add(event.step_key)
        elif event.dagster_event_type == DagsterEventType.STEP_SUCCESS:
            in_flight.discard(event.step_key)
        most = max(most, len(in_flight))
    return most
