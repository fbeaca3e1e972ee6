"""Dataset requests on Kafka become runs of `process_dataset`, one dynamic partition each.

Each tick reads the requests topic from the offsets in the sensor cursor
(`{topic: {partition: next_offset}}`), bounded by the resource's time and message budgets, and
returns one `SensorResult`: the run requests, the new partitions and the next cursor. A request
that cannot run goes to the errors topic with its reason and position, so a bad message never
stalls its partition.

Delivery is at least once and runs are exactly once: the run key is the request id, so a request
read again (a replayed cursor, a tick that failed half way) or sent again under the same
`request_id` never starts a second run; Dagster skips run keys this sensor has already launched.
To rebuild a dataset, send the request under a new `request_id`. A request without `request_id`
gets the id the CLI gives it too, derived from its source and content, so an identical request
sent again is the same dataset and starts no second run. Only a request whose
partition is new is tracked as "accepted" (in the metadata store and on the status topic), so a
repeat never resets the status of a request already running or done.

A request is untrusted input: any exception while reading one message (a bad regex, deep
nesting, random bytes, a source outside the deployment's roots) rejects that message alone, and
the deployment policy is applied before a run is requested. If anything else fails mid-tick
(brokers down, the errors topic refusing a message) the tick fails with the reason and the cursor
stays where it was, so the next tick reads the same messages.

The cursor also keeps the requests topic's id. A broker without durable storage that restarts
creates the topic again under a new id, with offsets from 0; the sensor then reads it from the
beginning and logs one warning, so requests refilled past the old offsets are not skipped.
"""

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from dagster import (
    DagsterLogManager,
    RunConfig,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from dataset_assets.jobs import process_dataset
from dataset_assets.messaging.kafka import PROBE_TIMEOUT_S, KafkaResource, status_event
from dataset_assets.partitions import datasets_partitions
from dataset_assets.policy import DeploymentPolicy
from dataset_assets.request import DatasetRequest, RequestError, parse_request
from dataset_assets.sensors.switch import default_status
from dataset_assets.storage.resources import MetadataStoreResource

ERROR_PAYLOAD_BYTES = 10_000
SOURCE_TAG = "dataset_assets/source"

TOPIC_IDS = "@ids"
"""Cursor key of the topic ids; never a topic name (Kafka allows only [A-Za-z0-9._-])."""

Cursor = dict[str, dict[str, int]]


@dataclass(frozen=True)
class Source:
    """Where a request was read: its Kafka topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    def as_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


@dataclass(frozen=True)
class Accepted:
    request: DatasetRequest
    run_config: RunConfig
    source: Source


@dataclass
class RequestBatch:
    """What one tick read: valid requests by id (the first of a repeated id wins), rejected
    messages as (key, errors-topic value), and the next offset of every partition."""

    accepted: dict[str, Accepted] = field(default_factory=dict)
    rejected: list[tuple[bytes | None, dict[str, Any]]] = field(default_factory=list)
    positions: dict[int, int] | None = None
    topic_id: str | None = None
    read: int = 0


def load_cursor(text: str | None) -> tuple[Cursor, dict[str, str]]:
    """The sensor cursor as `{topic: {partition: next_offset}}` and the topic ids it was read
    under; both empty before the first tick."""
    if not text:
        return {}, {}
    try:
        cursor = json.loads(text)
        ids = {str(topic): str(topic_id) for topic, topic_id in cursor.pop(TOPIC_IDS, {}).items()}
        offsets = {
            str(topic): {str(part): int(offset) for part, offset in parts.items()}
            for topic, parts in cursor.items()
        }
        return offsets, ids
    except (ValueError, AttributeError, TypeError) as error:
        raise ValueError(
            f"sensor cursor {text[:200]!r} is not {{topic: {{partition: next_offset}}}} JSON "
            f"({error}): reset it in the UI"
        ) from None


def dump_cursor(cursor: Cursor, ids: Mapping[str, str], topic: str, batch: "RequestBatch") -> str:
    positions = batch.positions or {}
    updated: dict[str, Any] = {
        **cursor,
        topic: {str(part): offset for part, offset in sorted(positions.items())},
    }
    if batch.topic_id:
        updated[TOPIC_IDS] = {**ids, topic: batch.topic_id}
    return json.dumps(updated, sort_keys=True)


def read_requests(
    kafka: KafkaResource,
    policy: DeploymentPolicy,
    cursor: Cursor,
    ids: Mapping[str, str],
    log: DagsterLogManager,
) -> RequestBatch:
    """Read the requests topic from `cursor` until every partition is at its end or a budget
    (`sensor_time_budget_s`, `sensor_max_messages`) is spent.

    Partitions missing from the cursor (new ones) are read from the beginning. A topic whose id
    differs from the one in `ids`, or a partition that ends before its cursor offset (for
    brokers without topic ids), was recreated (a broker without durable storage restarted): it
    is read again from the beginning.
    """
    deadline = time.monotonic() + kafka.sensor_time_budget_s
    topic = kafka.requests_topic
    batch = RequestBatch()
    consumer = kafka.consumer()
    try:
        partitions = kafka.partitions(consumer, topic)
        if partitions is None:
            return batch
        saved = cursor.get(topic, {})
        batch.topic_id = kafka.topic_id(topic)
        if saved and batch.topic_id and ids.get(topic) not in (None, batch.topic_id):
            log.warning(
                f"{topic} was recreated (topic id {ids[topic]} is now {batch.topic_id}): "
                "reading it again from the beginning"
            )
            saved = {}
        positions = {part: saved.get(str(part), 0) for part in partitions}
        consumer.assign(
            [_start(kafka, consumer, topic, part, positions[part]) for part in partitions]
        )
        at_end: set[int] = set()
        while len(at_end) < len(partitions) and batch.read < kafka.sensor_max_messages:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.info(f"time budget spent after {batch.read} message(s); the next tick goes on")
                break
            message = consumer.poll(min(remaining, 1.0))
            if message is None:
                continue
            error = message.error()
            part = message.partition()
            if error is None:
                if message.offset() >= positions[part]:
                    _take(kafka, policy, message, batch, log)
                    positions[part] = message.offset() + 1
                    batch.read += 1
            elif error.code() != KafkaError._PARTITION_EOF:
                if error.fatal() or error.code() == KafkaError._ALL_BROKERS_DOWN:
                    raise kafka.unreachable(error)
                log.warning(f"Kafka at {kafka.servers}: {error}")
            elif message.offset() < positions[part]:
                log.warning(
                    f"{topic} partition {part} ends at offset {message.offset()}, before the "
                    f"cursor's {positions[part]}: the topic was recreated; reading it again"
                )
                positions[part] = 0
                consumer.seek(TopicPartition(topic, part, OFFSET_BEGINNING))
            else:
                at_end.add(part)
        batch.positions = positions
        return batch
    finally:
        consumer.close()


def _start(
    kafka: KafkaResource, consumer: Consumer, topic: str, part: int, offset: int
) -> TopicPartition:
    """Where to start fetching a partition: at the cursor, or earlier when the broker reports a
    smaller end (some brokers report the last batch's first offset + 1; messages before the cursor
    are skipped, so starting early only re-reads a few)."""
    if offset <= 0:
        return TopicPartition(topic, part, OFFSET_BEGINNING)
    try:
        _low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, part), timeout=PROBE_TIMEOUT_S, cached=False
        )
    except KafkaException as error:
        raise kafka.unreachable(error) from None
    return TopicPartition(topic, part, min(offset, high))


def _take(
    kafka: KafkaResource,
    policy: DeploymentPolicy,
    message: Message,
    batch: RequestBatch,
    log: DagsterLogManager,
) -> None:
    source = Source(message.topic(), message.partition(), message.offset())
    value = message.value()
    try:
        request = _parse(kafka, policy, value)
        run_config = request.to_run_config()
    except Exception as error:  # whatever a message makes fail rejects that message only
        reason = str(error) if isinstance(error, ValueError) else repr(error)
        text = (value or b"")[:ERROR_PAYLOAD_BYTES].decode("utf-8", errors="replace")
        batch.rejected.append(
            (message.key(), {"request": text, "error": reason, **source.as_dict()})
        )
        return
    if request.id in batch.accepted:
        log.info(f"request {request.id} at {source} repeats an earlier one in this tick: one run")
        return
    batch.accepted[request.id] = Accepted(request, run_config, source)


def _parse(kafka: KafkaResource, policy: DeploymentPolicy, value: bytes | None) -> DatasetRequest:
    if not value:
        raise RequestError("message has no value: send the request as a JSON object")
    if len(value) > kafka.max_message_bytes:
        raise RequestError(
            f"request is {len(value)} bytes, over the limit of {kafka.max_message_bytes} "
            "(max_message_bytes)"
        )
    request = parse_request(value)
    # The id comes from the request as sent, as on the CLI, before the policy tightens limits.
    return policy.apply(request.model_copy(update={"request_id": request.id}))


@sensor(
    job=process_dataset,
    minimum_interval_seconds=10,
    default_status=default_status(),
    description="Starts one process_dataset run per request on the Kafka requests topic; "
    "rejected requests go to the errors topic with the reason.",
)
def dataset_requests_sensor(
    context: SensorEvaluationContext,
    kafka: KafkaResource,
    metadata: MetadataStoreResource,
    policy: DeploymentPolicy,
) -> SensorResult:
    started = time.monotonic()
    cursor, ids = load_cursor(context.cursor)
    batch = read_requests(kafka, policy, cursor, ids, context.log)
    if batch.positions is None:
        return SensorResult(
            skip_reason=f"topic {kafka.requests_topic} does not exist on {kafka.servers}",
            cursor=context.cursor,
        )
    kafka.publish_many(kafka.errors_topic, batch.rejected)
    new_ids = [
        request_id
        for request_id in batch.accepted
        if not context.instance.has_dynamic_partition(datasets_partitions.name, request_id)
    ]
    for request_id in new_ids:
        accepted = batch.accepted[request_id]
        metadata.store.track_request(
            request_id,
            status="accepted",
            request=accepted.request.model_dump(mode="json"),
            source=accepted.source.as_dict(),
            error=None,
        )
    kafka.publish_many(
        kafka.status_topic,
        [(request_id, status_event(request_id, "accepted")) for request_id in new_ids],
    )
    run_requests = [
        RunRequest(
            run_key=request_id,
            partition_key=request_id,
            run_config=accepted.run_config,
            tags={SOURCE_TAG: str(accepted.source)},
        )
        for request_id, accepted in batch.accepted.items()
    ]
    context.log.info(
        f"read {batch.read} message(s) in {time.monotonic() - started:.1f} s: "
        f"{len(run_requests)} request(s), {len(new_ids)} new, {len(batch.rejected)} rejected"
    )
    return SensorResult(
        run_requests=run_requests,
        skip_reason=None if run_requests else f"no new requests on {kafka.requests_topic}",
        dynamic_partitions_requests=[datasets_partitions.build_add_request(new_ids)]
        if new_ids
        else [],
        cursor=dump_cursor(cursor, ids, kafka.requests_topic, batch),
    )
