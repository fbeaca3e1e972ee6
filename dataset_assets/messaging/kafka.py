"""Kafka access for requests, rejected requests and status events.

Every client is short-lived and bounded in time: a sensor tick or a status event must fail with a
message naming the brokers rather than hang when Kafka is down. Consumers are `assign()`-based
and never commit: the sensor keeps its offsets in its own cursor.
"""

import json
import logging
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import suppress
from typing import Any

import pydantic
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic
from dagster import ConfigurableResource

from dataset_assets.storage.metadata import utcnow
from dataset_assets.storage.resources import setting

PROBE_TIMEOUT_S = 5.0
SOCKET_TIMEOUT_MS = 10_000
MESSAGE_TIMEOUT_MS = 10_000
FLUSH_TIMEOUT_S = 15.0
CONSUMER_GROUP = "dataset-assets-sensor"

Client = Consumer | Producer | AdminClient
UNREACHABLE = frozenset(
    {KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT}
)

logger = logging.getLogger(__name__)


class KafkaResource(ConfigurableResource):
    """The Kafka cluster that carries dataset requests in and status events out."""

    bootstrap_servers: str = pydantic.Field(description="host:port[,host:port...] of the brokers.")
    requests_topic: str = pydantic.Field(
        default="dataset-requests", description="Dataset requests, one JSON object per message."
    )
    errors_topic: str = pydantic.Field(
        default="dataset-requests.errors",
        description="Rejected requests with the reason and their topic, partition and offset.",
    )
    status_topic: str = pydantic.Field(
        default="dataset-status",
        description="accepted, started, succeeded and failed events, keyed by request id.",
    )
    max_message_bytes: int = pydantic.Field(
        default=1_000_000, gt=0, description="Larger requests are rejected before parsing."
    )
    sensor_time_budget_s: float = pydantic.Field(
        default=20.0,
        gt=0,
        le=45,
        description="How long one sensor tick reads requests; the tick limit is 60 s.",
    )
    sensor_max_messages: int = pydantic.Field(
        default=500, gt=0, description="How many requests one sensor tick reads at most."
    )
    security_protocol: str | None = pydantic.Field(
        default=None, description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."
    )
    sasl_mechanism: str | None = pydantic.Field(
        default=None, description="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ..."
    )
    sasl_username: str | None = None
    sasl_password: str | None = pydantic.Field(
        default=None, description="Give as EnvVar so the UI shows the variable, never the secret."
    )

    @property
    def servers(self) -> str:
        return setting(self.bootstrap_servers)

    def client_config(self) -> dict[str, Any]:
        """Settings shared by every client: brokers, security, and a socket timeout."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.servers,
            "socket.timeout.ms": SOCKET_TIMEOUT_MS,
            "logger": logger,
        }
        optional = {
            "security.protocol": self.security_protocol,
            "sasl.mechanism": self.sasl_mechanism,
            "sasl.username": self.sasl_username,
            "sasl.password": self.sasl_password,
        }
        config.update({key: setting(value) for key, value in optional.items() if value})
        return config

    def producer(self) -> Producer:
        """A producer that gives up on a message after `MESSAGE_TIMEOUT_MS`."""
        return Producer({**self.client_config(), "message.timeout.ms": MESSAGE_TIMEOUT_MS})

    def consumer(self) -> Consumer:
        """A consumer for `assign()`: it reports the end of each partition and commits nothing."""
        return Consumer(
            {
                **self.client_config(),
                "group.id": CONSUMER_GROUP,
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
            }
        )

    def probe(self, client: Client, topic: str | None = None) -> ClusterMetadata:
        """Cluster metadata, or a `ConnectionError` naming the brokers within a few seconds."""
        try:
            return client.list_topics(topic, timeout=PROBE_TIMEOUT_S)
        except KafkaException as error:
            raise self.unreachable(error) from None

    def unreachable(self, error: object) -> ConnectionError:
        return ConnectionError(
            f"Kafka at {self.servers} is unreachable ({error}): check the kafka resource's "
            "bootstrap_servers and that the brokers are running"
        )

    def partitions(self, consumer: Consumer, topic: str) -> list[int] | None:
        """Every partition of `topic`, or None when the topic does not exist."""
        metadata = self.probe(consumer, topic).topics.get(topic)
        if metadata is None or (
            metadata.error is not None and metadata.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
        ):
            return None
        if metadata.error is not None:
            raise ConnectionError(f"Kafka at {self.servers} cannot serve {topic}: {metadata.error}")
        return sorted(metadata.partitions)

    def topic_id(self, topic: str) -> str | None:
        """The id the broker gave `topic` when it was created, or None if it does not say.

        A topic deleted and created again (or lost by a broker without durable storage) gets a
        new id, with offsets starting from 0 again.
        """
        admin = AdminClient(self.client_config())
        try:
            (future,) = admin.describe_topics(TopicCollection([topic])).values()
            description = future.result(timeout=PROBE_TIMEOUT_S)
        except KafkaException as error:
            if error.args[0].code() in UNREACHABLE:
                raise self.unreachable(error) from None
            return None
        topic_id = str(description.topic_id or "")
        return None if topic_id.strip("A") == "" else topic_id

    def read_all(
        self, topic: str, time_budget_s: float = 10.0
    ) -> Iterator[tuple[str | None, dict[str, Any]]]:
        """Every JSON message of `topic` as (key, value), from the beginning of each partition to
        its end, within `time_budget_s`; nothing when the topic does not exist."""
        deadline = time.monotonic() + time_budget_s
        consumer = self.consumer()
        try:
            partitions = self.partitions(consumer, topic) or []
            consumer.assign([TopicPartition(topic, part, OFFSET_BEGINNING) for part in partitions])
            at_end: set[int] = set()
            while len(at_end) < len(partitions) and time.monotonic() < deadline:
                message = consumer.poll(min(1.0, max(0.0, deadline - time.monotonic())))
                if message is None:
                    continue
                if message.error() is not None:
                    if message.error().code() == KafkaError._PARTITION_EOF:
                        at_end.add(message.partition())
                    continue
                with suppress(ValueError, TypeError):
                    key = message.key().decode("utf-8", errors="replace") if message.key() else None
                    yield key, json.loads(message.value())
        finally:
            consumer.close()

    def publish(self, topic: str, key: str | bytes | None, value: Mapping[str, Any]) -> None:
        """Send one JSON message and wait until the broker has it."""
        self.publish_many(topic, [(key, value)])

    def publish_many(
        self, topic: str, messages: Iterable[tuple[str | bytes | None, Mapping[str, Any]]]
    ) -> int:
        """Send JSON messages and wait until the broker has every one; returns how many.

        Raises `ConnectionError` naming the brokers when they cannot be reached or do not confirm
        every message within `MESSAGE_TIMEOUT_MS`.
        """
        batch = [(key, json.dumps(value, default=str).encode()) for key, value in messages]
        if not batch:
            return 0
        producer = self.producer()
        self.probe(producer, topic)
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(error)

        for key, value in batch:
            producer.produce(
                topic,
                value=value,
                key=key.encode() if isinstance(key, str) else key,
                on_delivery=delivered,
            )
            producer.poll(0)
        pending = producer.flush(FLUSH_TIMEOUT_S)
        if pending or failures:
            reason = failures[0] if failures else f"{pending} still queued"
            raise ConnectionError(
                f"Kafka at {self.servers} did not confirm {pending + len(failures)} of "
                f"{len(batch)} message(s) to {topic} ({reason})"
            )
        return len(batch)

    def publish_status(
        self, request_id: str, event: str, run_id: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one status event (see `status_event`) keyed by the request id; returns it."""
        value = status_event(request_id, event, run_id, **fields)
        self.publish(self.status_topic, request_id, value)
        return value

    def ensure_topics(self, partitions: int = 3, replication: int = 1) -> list[str]:
        """Create the requests, errors and status topics where missing; returns those created."""
        admin = AdminClient(self.client_config())
        self.probe(admin)
        topics = [self.requests_topic, self.errors_topic, self.status_topic]
        futures = admin.create_topics(
            [
                NewTopic(topic, num_partitions=partitions, replication_factor=replication)
                for topic in topics
            ]
        )
        created = []
        for topic, future in futures.items():
            try:
                future.result(timeout=FLUSH_TIMEOUT_S)
                created.append(topic)
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
        return sorted(created)


def status_event(
    request_id: str,
    event: str,
    run_id: str | None = None,
    *,
    stage: str | None = None,
    counts: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> dict[str, Any]:
    """The value of a message on the status topic; optional fields appear only when given."""
    value: dict[str, Any] = {"request_id": request_id, "event": event, "run_id": run_id}
    optional = {"stage": stage, "counts": dict(counts) if counts else None, "error": error}
    value.update({key: item for key, item in optional.items() if item is not None})
    value["at"] = utcnow()
    return value
