"""Real protocol servers on loopback for integration tests, started and stopped by the test run."""

import socket
from collections.abc import Iterator
from contextlib import contextmanager

from moto.server import ThreadedMotoServer


def unused_port() -> int:
    """A loopback port nothing listens on (right now), for tests of unreachable endpoints."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
