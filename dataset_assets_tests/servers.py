"""Real protocol servers on loopback for integration tests: the local stack's own servers."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from dataset_assets.messaging import KafkaResource
from dataset_assets.stack import (
    free_port,
    start_group,
    start_mongodb,
    start_s3_server,
    start_tansu,
    stop,
    stop_group,
)

QUIET = {"log_level": 0}


def read_topic(kafka: KafkaResource, topic: str) -> list[dict[str, Any]]:
    """Every message on `topic`, read to the end of each partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": kafka.servers,
            "group.id": "test-reader",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
            **QUIET,
        }
    )
    parts = consumer.list_topics(topic, timeout=5).topics[topic].partitions
    consumer.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in parts])
    messages, at_end = [], set()
    while len(at_end) < len(parts):
        message = consumer.poll(5)
        assert message is not None, f"{topic} did not reach its end"
        if message.error():
            assert message.error().code() == KafkaError._PARTITION_EOF, message.error()
            at_end.add(message.partition())
            continue
        messages.append(
            {
                "key": message.key().decode(),
                "value": json.loads(message.value()),
                "partition": message.partition(),
                "offset": message.offset(),
            }
        )
    consumer.close()
    return messages


@contextmanager
def start_dagster_dev(env: Mapping[str, str], cwd: Path | None = None) -> Iterator[int]:
    """`dagster dev` (webserver and daemon) on this project with `env`; yields its port.

    Stopped with its whole process group, as `dataset-assets dev` stops it: no webserver, daemon
    or code server outlives the test.
    """
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-m", "dataset_assets.definitions"]
    process = start_group(
        [*command, "-h", "127.0.0.1", "-p", str(port)],
        env={**os.environ, **env},
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("dagster dev did not answer on /server_info") from None
                time.sleep(0.5)
        yield port
    finally:
        stop_group(process)


def graphql(port: int, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The `data` of a query to the webserver's GraphQL API; errors fail the caller."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert not answer.get("errors"), answer["errors"]
    return answer["data"]


__all__ = [
    "QUIET",
    "free_port",
    "graphql",
    "read_topic",
    "start_dagster_dev",
    "start_mongodb",
    "start_s3_server",
    "start_tansu",
    "stop",
]
