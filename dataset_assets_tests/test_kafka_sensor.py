"""The Kafka request sensor and the status sensor, against a real broker (Tansu)."""

import json
import re
import time
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer
from dagster import (
    DagsterInstance,
    Definitions,
    EnvVar,
    SensorEvaluationContext,
    SensorResult,
    build_sensor_context,
    instance_for_test,
)

from dataset_assets.cli import main
from dataset_assets.definitions import QUALITY_CHECKS, STAGE_ASSETS
from dataset_assets.jobs import process_dataset
from dataset_assets.messaging import KafkaResource
from dataset_assets.partitions import datasets_partitions
from dataset_assets.policy import DeploymentPolicy
from dataset_assets.request import parse_request
from dataset_assets.sample_data import SAMPLE_EXPECTATIONS
from dataset_assets.sensors import SENSORS, dataset_requests_sensor, dataset_status_sensor
from dataset_assets.sensors.requests import TOPIC_IDS
from dataset_assets.stages.tracking import STAGES
from dataset_assets.storage.resources import MetadataStoreResource
from dataset_assets_tests.servers import QUIET, free_port, read_topic, start_tansu

POLICY = DeploymentPolicy(source_roots=["sets"])
"""Requests name sources under `sets/`; the sensor checks the policy, never opens the source."""

MALFORMED: dict[str, tuple[bytes, str]] = {
    "bad_json": (b'{"dataset_key": "sets/a", ', "not valid JSON"),
    "unknown_operation": (
        json.dumps({"dataset_key": "sets/a", "operations": ["Sepia"]}).encode(),
        "unknown operation 'Sepia'",
    ),
    "wrong_types": (
        json.dumps({"dataset_key": "sets/a", "seed": "abc"}).encode(),
        "seed: Input should be a valid integer",
    ),
    "oversized": (
        json.dumps({"dataset_key": "sets/" + "a" * 30_000}).encode(),
        "over the limit of 20000 (max_message_bytes)",
    ),
    "missing_dataset_key": (
        json.dumps({"operations": ["GrayScale"]}).encode(),
        "dataset_key: Field required",
    ),
}


def make_resource(bootstrap: str, name: str) -> KafkaResource:
    resource = KafkaResource(
        bootstrap_servers=bootstrap,
        requests_topic=f"{name}.requests",
        errors_topic=f"{name}.errors",
        status_topic=f"{name}.status",
        max_message_bytes=20_000,
    )
    assert resource.ensure_topics(partitions=3) == sorted(
        [resource.requests_topic, resource.errors_topic, resource.status_topic]
    )
    return resource


@pytest.fixture
def topics(kafka: str, request: pytest.FixtureRequest) -> KafkaResource:
    return make_resource(kafka, request.node.name.replace("_", "-")[:60])


@pytest.fixture
def metadata(tmp_path: Path) -> MetadataStoreResource:
    return MetadataStoreResource(uri=str(tmp_path / "metadata.db"))


def send(kafka: KafkaResource, messages: list[tuple[int, bytes]]) -> list[tuple[int, int]]:
    """Produce (partition, value) messages keyed "key-<index>"; their (partition, offset)."""
    producer = Producer({"bootstrap.servers": kafka.servers, **QUIET})
    positions: list[tuple[int, int]] = [(-1, -1)] * len(messages)

    def delivered(index: int, error: KafkaError | None, message: Any) -> None:
        assert error is None, error
        positions[index] = (message.partition(), message.offset())

    for index, (part, value) in enumerate(messages):
        producer.produce(
            kafka.requests_topic,
            value,
            key=f"key-{index}".encode(),
            partition=part,
            on_delivery=partial(delivered, index),
        )
    assert producer.flush(15) == 0
    return positions


def tick(
    kafka: KafkaResource,
    metadata: MetadataStoreResource,
    instance: DagsterInstance,
    cursor: str | None,
) -> SensorResult:
    context = build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"kafka": kafka, "metadata": metadata, "policy": POLICY},
    )
    return dataset_requests_sensor(context)


def apply(instance: DagsterInstance, result: SensorResult) -> None:
    """What the daemon does with a tick's partition requests before the next tick."""
    for added in result.dynamic_partitions_requests:
        instance.add_dynamic_partitions(added.partitions_def_name, list(added.partition_keys))


def request(request_id: str | None = None, **fields: Any) -> bytes:
    body = {"dataset_key": "sets/a", **fields}
    if request_id is not None:
        body["request_id"] = request_id
    return json.dumps(body).encode()


def test_servers_and_credentials_given_as_env_vars_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_KAFKA_SERVERS", "broker-a:9093,broker-b:9093")
    monkeypatch.setenv("TEST_KAFKA_PASSWORD", "s3cret")
    resource = KafkaResource(
        bootstrap_servers=EnvVar("TEST_KAFKA_SERVERS"),
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="datasets",
        sasl_password=EnvVar("TEST_KAFKA_PASSWORD"),
    )
    config = resource.client_config()
    assert config["bootstrap.servers"] == "broker-a:9093,broker-b:9093"
    assert config["sasl.password"] == "s3cret"
    assert (config["security.protocol"], config["sasl.mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
    assert "sasl.password" not in KafkaResource(bootstrap_servers="b:9092").client_config()


def test_a_burst_becomes_one_run_per_valid_request_and_one_error_per_malformed_one(
    topics: KafkaResource, metadata: MetadataStoreResource
) -> None:
    # The sensor never opens the source: any non-empty dataset_key is a valid request.
    assert parse_request({"dataset_key": "no/such/folder"}).dataset_key == "no/such/folder"
    kinds = list(MALFORMED)
    messages, expected_kind = [], {}
    for index in range(1000):
        if index % 20 == 7:
            expected_kind[index] = kinds[(index // 20) % len(kinds)]
            value = MALFORMED[expected_kind[index]][0]
        elif index % 2:
            value = request(operations=[{"Resize": {"scaling_factor": 0.5}}], seed=index)
        else:
            value = request(f"burst-{index}", operations=["GrayScale"])
        messages.append((index % 3, value))
    positions = send(topics, messages)
    topic = topics.requests_topic
    expected_ids = {
        parse_request(value).id
        for index, (_part, value) in enumerate(messages)
        if index not in expected_kind
    }
    assert len(expected_ids) == 950

    instance = DagsterInstance.ephemeral()
    cursor, run_requests, figures = None, [], []
    for _ in range(10):
        started = time.perf_counter()
        result = tick(topics, metadata, instance, cursor)
        figures.append((len(result.run_requests), time.perf_counter() - started))
        apply(instance, result)
        run_requests.extend(result.run_requests)
        if result.cursor == cursor:
            break
        cursor = result.cursor
    else:
        pytest.fail("the sensor was still reading after 10 ticks")
    print(
        "\nsensor ticks over 1,000 queued requests: "
        + ", ".join(f"{count} requests in {seconds:.2f} s" for count, seconds in figures)
    )

    assert len(run_requests) == 950
    assert {run.run_key for run in run_requests} == expected_ids
    assert all(run.partition_key == run.run_key for run in run_requests)
    assert set(instance.get_dynamic_partitions(datasets_partitions.name)) == expected_ids
    ends = {part: 1 + max(offset for p, offset in positions if p == part) for part in range(3)}
    saved = json.loads(cursor)
    assert saved.pop(TOPIC_IDS) == {topic: topics.topic_id(topic)}
    assert saved == {topic: {str(part): end for part, end in ends.items()}}

    first = next(run for run in run_requests if run.run_key == "burst-0")
    assert first.run_config["ops"]["raw_images"]["config"]["dataset_key"] == "sets/a"
    assert first.tags["dataset_assets/source"] == f"{topic}/{positions[0][0]}/{positions[0][1]}"

    errors = read_topic(topics, topics.errors_topic)
    assert len(errors) == 50
    by_key = {error["key"]: error["value"] for error in errors}
    for index, kind in expected_kind.items():
        value = by_key[f"key-{index}"]
        assert MALFORMED[kind][1] in value["error"], (kind, value["error"])
        assert (value["topic"], value["partition"], value["offset"]) == (topic, *positions[index])
        assert len(value["request"].encode()) <= 10_000
        assert MALFORMED[kind][0].decode().startswith(value["request"])

    accepted = read_topic(topics, topics.status_topic)
    assert {event["key"] for event in accepted} == expected_ids
    assert {event["value"]["event"] for event in accepted} == {"accepted"}
    tracked = metadata.store.get_request("burst-0")
    assert tracked["status"] == "accepted"
    assert tracked["source"] == {"topic": topic, "partition": 0, "offset": positions[0][1]}
    assert metadata.store.requests.count_documents({"status": "accepted"}) == 950


def test_a_replayed_or_resent_request_keeps_its_run_key_and_adds_no_partition(
    topics: KafkaResource, metadata: MetadataStoreResource
) -> None:
    topic = topics.requests_topic
    send(topics, [(0, request("again")), (1, request("again", seed=3)), (2, request())])
    instance = DagsterInstance.ephemeral()
    first = tick(topics, metadata, instance, None)
    content_id = parse_request(request()).id
    assert content_id.startswith("a-")
    keys = {"again", content_id}
    assert sorted(run.run_key for run in first.run_requests) == sorted(keys)
    (added,) = first.dynamic_partitions_requests
    assert set(added.partition_keys) == keys
    apply(instance, first)
    metadata.store.track_request("again", status="succeeded")

    replay = tick(topics, metadata, instance, None)
    assert sorted(run.run_key for run in replay.run_requests) == sorted(keys)
    assert replay.dynamic_partitions_requests == []
    assert metadata.store.get_request("again")["status"] == "succeeded"
    assert [event["value"]["event"] for event in read_topic(topics, topics.status_topic)] == [
        "accepted",
        "accepted",
    ]

    # The same id, or the same content without an id, at new offsets: the same run keys.
    send(topics, [(1, request("again", seed=4)), (0, request())])
    resent = tick(topics, metadata, instance, first.cursor)
    assert sorted(run.run_key for run in resent.run_requests) == sorted(keys)
    assert resent.dynamic_partitions_requests == []
    assert json.loads(resent.cursor)[topic] == {"0": 2, "1": 2, "2": 1}


def test_a_tick_that_fails_half_way_keeps_its_cursor_and_the_next_tick_repeats_it(
    topics: KafkaResource, metadata: MetadataStoreResource, monkeypatch: pytest.MonkeyPatch
) -> None:
    instance = DagsterInstance.ephemeral()
    send(topics, [(0, request("before"))])
    before = tick(topics, metadata, instance, None)
    apply(instance, before)
    send(topics, [(0, request("one")), (1, b"not json"), (2, request("two"))])

    # A real broker cannot be made to refuse one topic on cue, so the failure is injected.
    publish_many = KafkaResource.publish_many

    def errors_topic_down(self: KafkaResource, topic: str, messages: Any) -> int:
        if topic == self.errors_topic:
            raise ConnectionError(f"Kafka at {self.servers}: errors topic refused the message")
        return publish_many(self, topic, messages)

    monkeypatch.setattr(KafkaResource, "publish_many", errors_topic_down)
    context = build_sensor_context(
        instance=instance,
        cursor=before.cursor,
        resources={"kafka": topics, "metadata": metadata, "policy": POLICY},
    )
    with pytest.raises(ConnectionError, match="errors topic refused"):
        dataset_requests_sensor(context)
    assert context.cursor == before.cursor
    assert metadata.store.get_request("one") is None
    monkeypatch.undo()

    retried = tick(topics, metadata, instance, before.cursor)
    assert sorted(run.run_key for run in retried.run_requests) == ["one", "two"]
    assert [error["value"]["offset"] for error in read_topic(topics, topics.errors_topic)] == [0]
    assert json.loads(retried.cursor)[topics.requests_topic] == {"0": 2, "1": 1, "2": 1}


def test_a_tick_with_the_broker_down_names_it_and_a_restarted_broker_is_read_again(
    metadata: MetadataStoreResource, capsys: pytest.CaptureFixture[str]
) -> None:
    instance = DagsterInstance.ephemeral()
    port = free_port()
    with start_tansu(port) as bootstrap:
        kafka = make_resource(bootstrap, "restart")
        send(kafka, [(0, request(f"old-{index}")) for index in range(3)])
        first = tick(kafka, metadata, instance, None)
        apply(instance, first)
    assert len(first.run_requests) == 3

    with pytest.raises(ConnectionError, match=re.escape(f"Kafka at {bootstrap} is unreachable")):
        tick(kafka, metadata, instance, first.cursor)

    # Memory storage lost the topics: they are created again and refilled past the cursor's
    # offset 3 in partition 0. The new topic id tells the sensor to read from the beginning.
    with start_tansu(port):
        make_resource(bootstrap, "restart")
        send(kafka, [(0, request(f"new-{index}")) for index in range(5)])
        capsys.readouterr()
        resumed = tick(kafka, metadata, instance, first.cursor)
        again = tick(kafka, metadata, instance, resumed.cursor)
    assert [run.run_key for run in resumed.run_requests] == [f"new-{i}" for i in range(5)]
    assert json.loads(resumed.cursor)[kafka.requests_topic] == {"0": 5, "1": 0, "2": 0}
    warnings = [line for line in capsys.readouterr().err.splitlines() if "was recreated" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0], "one warning, on the first tick"
    assert again.run_requests == []


def test_a_missing_requests_topic_skips_the_tick_without_moving_the_cursor(
    kafka: str, metadata: MetadataStoreResource
) -> None:
    missing = KafkaResource(bootstrap_servers=kafka, requests_topic="never-created")
    cursor = json.dumps({"never-created": {"0": 4}})
    result = tick(missing, metadata, DagsterInstance.ephemeral(), cursor)
    assert result.run_requests == []
    assert result.skip_reason.skip_message == f"topic never-created does not exist on {kafka}"
    assert result.cursor == cursor


def test_the_daemon_launches_a_run_for_a_partition_added_in_the_same_tick(
    pipeline: Any, topics: KafkaResource
) -> None:
    defs = Definitions(
        assets=STAGE_ASSETS,
        asset_checks=QUALITY_CHECKS,
        jobs=[process_dataset],
        sensors=SENSORS,
        resources={**pipeline.resources, "kafka": topics},
    )
    Definitions.validate_loadable(defs)
    repository = defs.get_repository_def()
    sensor = repository.get_sensor_def(dataset_requests_sensor.name)
    send(topics, [(0, request("daemon"))])
    # The daemon evaluates with an instance reference, which resolves partitions as they will be
    # once the tick's own partition requests are applied.
    with (
        instance_for_test() as instance,
        SensorEvaluationContext(
            instance_ref=instance.get_ref(),
            last_tick_completion_time=None,
            last_run_key=None,
            cursor=None,
            log_key=None,
            repository_name=repository.name,
            repository_def=repository,
            sensor_name=sensor.name,
            resources={
                "kafka": topics,
                "metadata": pipeline.resources["metadata"],
                "policy": POLICY,
            },
        ) as context,
    ):
        data = sensor.evaluate_tick(context)
    (run,) = data.run_requests
    assert run.run_key == "daemon"
    assert run.tags["dagster/partition"] == "daemon"
    assert data.dynamic_partitions_requests[0].partition_keys == ["daemon"]


def status_events(kafka: KafkaResource) -> list[dict[str, Any]]:
    """The status topic's events, in the order each request's partition holds them."""
    events = []
    for message in read_topic(kafka, kafka.status_topic):
        assert message["value"]["request_id"] == message["key"] and message["value"]["at"]
        events.append(message["value"])
    return events


def lifecycle(events: list[dict[str, Any]], request_id: str) -> list[tuple[Any, ...]]:
    return [
        (event["event"], event.get("stage"), event["run_id"])
        for event in events
        if event["request_id"] == request_id
    ]


def test_the_status_sensor_publishes_each_lifecycle_in_order_and_tracks_the_status(
    pipeline: Any, sample_dir: Path, topics: KafkaResource
) -> None:
    store = pipeline.metadata
    resources = {"kafka": topics, "metadata": pipeline.resources["metadata"]}
    ok = pipeline.run({"request_id": "status-ok", "dataset_key": str(sample_dir)})
    assert ok.success
    bad = pipeline.run(
        {"request_id": "status-bad", "dataset_key": str(sample_dir), "validation_mode": "strict"}
    )
    assert not bad.success

    # One late tick sees both runs whole, as when the daemon was busy while they ran.
    first = dataset_status_sensor(
        build_sensor_context(instance=pipeline.instance, resources=resources)
    )
    events = status_events(topics)
    assert lifecycle(events, "status-ok") == [
        ("started", None, ok.run_id),
        *[("stage_done", stage, ok.run_id) for stage in STAGES],
        ("succeeded", None, ok.run_id),
    ]
    assert lifecycle(events, "status-bad") == [
        ("started", None, bad.run_id),
        ("stage_done", "raw_images", bad.run_id),
        ("failed", "validated_images", bad.run_id),
    ]
    by_kind = {(e["request_id"], e["event"], e.get("stage")): e for e in events}
    assert by_kind[("status-ok", "stage_done", "raw_images")]["counts"]["count"] == 28
    succeeded = by_kind[("status-ok", "succeeded", None)]
    assert succeeded["counts"]["processed_images"] == SAMPLE_EXPECTATIONS["kept"]
    assert succeeded["counts"] == store.get_request("status-ok")["metrics"]
    assert store.get_request("status-ok")["status"] == "succeeded"
    tracked = store.get_request("status-bad")
    assert tracked["status"] == "failed" and tracked["failed_stage"] == "validated_images"
    assert "3 rejected image(s)" in tracked["error"]
    assert by_kind[("status-bad", "failed", "validated_images")]["error"] == tracked["error"]

    again = dataset_status_sensor(
        build_sensor_context(instance=pipeline.instance, cursor=first.cursor, resources=resources)
    )
    assert again.cursor == first.cursor and again.skip_reason
    assert len(status_events(topics)) == len(events)


def test_ticks_of_one_record_each_publish_the_same_events_in_the_same_order(
    pipeline: Any, make_images: Any, kafka: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a batch of one, every stream is truncated on every tick: the merge must hold
    events back until all streams have passed them."""
    source = make_images({f"c/img_{i}.png": (60 + i, 50) for i in range(3)})
    runs = {
        rid: pipeline.run({"request_id": rid, "dataset_key": str(source)}) for rid in ("r0", "r1")
    }
    assert all(run.success for run in runs.values())

    def publish(kafka_resource: KafkaResource) -> tuple[dict[str, list[tuple[Any, ...]]], int]:
        """Each request's events as its partition holds them (Kafka orders only within a
        partition), and how many ticks published any."""
        resources = {"kafka": kafka_resource, "metadata": pipeline.resources["metadata"]}
        cursor, ticks = None, 0
        while True:
            context = build_sensor_context(
                instance=pipeline.instance, cursor=cursor, resources=resources
            )
            result = dataset_status_sensor(context)
            if result.skip_reason:
                break
            cursor, ticks = result.cursor, ticks + 1
        events = status_events(kafka_resource)
        return {request_id: lifecycle(events, request_id) for request_id in runs}, ticks

    whole, ticks = publish(make_resource(kafka, "one-batch"))
    assert ticks == 1
    monkeypatch.setattr("dataset_assets.sensors.status.BATCH", 1)
    one_by_one, ticks = publish(make_resource(kafka, "batches-of-one"))
    assert ticks == 2 * (len(STAGES) + 2)
    assert one_by_one == whole
    for request_id, run in runs.items():
        assert whole[request_id] == [
            ("started", None, run.run_id),
            *[("stage_done", stage, run.run_id) for stage in STAGES],
            ("succeeded", None, run.run_id),
        ]


def test_status_names_the_reason_a_request_was_rejected_on_the_errors_topic(
    kafka: str,
    metadata: MetadataStoreResource,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CLI reads the default topic names; no other test uses them on this broker.
    topics = KafkaResource(bootstrap_servers=kafka)
    topics.ensure_topics(partitions=3)
    send(topics, [(1, request("rejected-one", operations=["Sepia"]))])
    tick(topics, metadata, DagsterInstance.ephemeral(), None)
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DATASET_ASSETS_KAFKA_BOOTSTRAP", kafka)
    for name in ("DATASET_ASSETS_METADATA_URI", "DATASET_ASSETS_BLOB_ROOT"):
        monkeypatch.delenv(name, raising=False)

    assert main(["status", "rejected-one"]) == 1
    out = capsys.readouterr().out
    assert out.startswith("request rejected-one: rejected: ")
    assert "unknown operation 'Sepia'" in out
    assert f"(message {topics.requests_topic}/1/" in out
    assert main(["status", "rejected-one", "--watch"]) == 1
    assert "unknown operation 'Sepia'" in capsys.readouterr().out
    assert main(["status", "never-sent"]) == 1
    assert "no request 'never-sent'" in capsys.readouterr().err
