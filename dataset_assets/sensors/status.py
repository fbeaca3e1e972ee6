"""Each request's lifecycle on the status topic, in the order it happened.

One sensor reads the Dagster event log: the start of each `process_dataset` run, each stage's
materialization and the run's end. It publishes them sorted by storage id from a single cursor,
so a request's events always arrive as `started`, one `stage_done` per stage, then `succeeded` or
`failed`, however late a tick runs. (Separate sensors per run status would race each other: the
one that ticks first publishes first.)

The stages know nothing of Kafka, so a deployment without it runs the same stages. The request's
tracking document is written before each event is published and the cursor moves only after the
broker confirms them, so a tick that fails half way is repeated whole by the next one. A new
cursor starts at the beginning of the event log: the first ticks in an instance with history
replay it, `BATCH` records per stream per tick, and consumers keyed by request id see the same
final status again.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    EventLogRecord,
    RunStatusChangeRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from dataset_assets.failures import run_failure_cause
from dataset_assets.jobs import process_dataset
from dataset_assets.messaging.kafka import KafkaResource, status_event
from dataset_assets.sensors.switch import default_status
from dataset_assets.stages.tracking import STAGES
from dataset_assets.storage.metadata import MetadataStore
from dataset_assets.storage.resources import MetadataStoreResource

PARTITION_TAG = "dagster/partition"
BATCH = 200
RUN_EVENTS = {
    DagsterEventType.RUN_START: "started",
    DagsterEventType.RUN_SUCCESS: "succeeded",
    DagsterEventType.RUN_FAILURE: "failed",
    DagsterEventType.RUN_CANCELED: "failed",
}


@dataclass(frozen=True)
class _Stream:
    """One query of the event log: a run status change or one stage's materializations."""

    name: str
    run_event: DagsterEventType | None = None
    stage: str | None = None

    def fetch(self, instance: DagsterInstance, after: int | None) -> Sequence[EventLogRecord]:
        if self.run_event is not None:
            records_filter = RunStatusChangeRecordsFilter(self.run_event, after_storage_id=after)
            return instance.fetch_run_status_changes(records_filter, BATCH, ascending=True).records
        asset_filter = AssetRecordsFilter(asset_key=AssetKey(self.stage), after_storage_id=after)
        return instance.fetch_materializations(asset_filter, BATCH, ascending=True).records


STREAMS = [_Stream(event.value, run_event=event) for event in RUN_EVENTS] + [
    _Stream(stage, stage=stage) for stage in STAGES
]


@sensor(
    minimum_interval_seconds=5,
    default_status=default_status(),
    description="Publishes each request's 'started', 'stage_done' (with the stage's count and "
    "duration), 'succeeded' (with the dataset's counts) and 'failed' (with the failing stage and "
    "its error) on the status topic, in order, and tracks the status in the metadata store.",
)
def dataset_status_sensor(
    context: SensorEvaluationContext, kafka: KafkaResource, metadata: MetadataStoreResource
) -> SensorResult:
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    runs: dict[str, DagsterRun | None] = {}
    messages = []
    for stream, record in _in_order(context.instance, cursor):
        cursor[stream.name] = record.storage_id
        if record.run_id not in runs:
            runs[record.run_id] = context.instance.get_run_by_id(record.run_id)
        event = _event(context.instance, metadata.store, stream, record, runs[record.run_id])
        if event is not None:
            messages.append((event["request_id"], event))
    kafka.publish_many(kafka.status_topic, messages)
    return SensorResult(
        skip_reason=None if messages else "no run started, stage finished or run ended",
        cursor=json.dumps(cursor, sort_keys=True),
    )


def _in_order(
    instance: DagsterInstance, cursor: dict[str, int]
) -> list[tuple[_Stream, EventLogRecord]]:
    """The records after the cursor, merged in storage order up to where the first full batch
    stops: beyond it a truncated stream may hold events that precede the others', so they wait
    for the next tick rather than go out of order.

    Run status changes are read first: a run's materializations are stored before its end, so
    every stage of a run whose end this tick sees is visible to the queries after it.
    """
    fetched = {stream: stream.fetch(instance, cursor.get(stream.name)) for stream in STREAMS}
    horizon = min(
        (records[-1].storage_id for records in fetched.values() if len(records) == BATCH),
        default=float("inf"),
    )
    merged = [
        (stream, record)
        for stream, records in fetched.items()
        for record in records
        if record.storage_id <= horizon
    ]
    return sorted(merged, key=lambda item: item[1].storage_id)


def _event(
    instance: DagsterInstance,
    store: MetadataStore,
    stream: _Stream,
    record: EventLogRecord,
    run: DagsterRun | None,
) -> dict[str, Any] | None:
    """The status event for one record, after writing its status to the tracking document."""
    if stream.stage is not None:
        request_id = record.partition_key
        if request_id is None:
            return None
        materialization = record.asset_materialization
        figures = materialization.metadata if materialization else {}
        counts = {name: figures[name].value for name in ("count", "duration_s") if name in figures}
        return status_event(
            request_id, "stage_done", record.run_id, stage=stream.stage, counts=counts
        )
    if run is None or run.job_name != process_dataset.name or PARTITION_TAG not in run.tags:
        return None
    request_id = run.tags[PARTITION_TAG]
    kind = RUN_EVENTS[stream.run_event]
    if kind == "started":
        tracked = store.get_request(request_id) or {}
        # The run's first stage may already have recorded a later status.
        status = {} if tracked.get("run_id") == run.run_id else {"status": "started"}
        store.track_request(request_id, run_id=run.run_id, **status)
        return status_event(request_id, kind, run.run_id)
    if kind == "succeeded":
        store.track_request(request_id, status=kind, run_id=run.run_id, error=None)
        counts = (store.get_request(request_id) or {}).get("metrics")
        return status_event(request_id, kind, run.run_id, counts=counts)
    stage, error = run_failure_cause(instance, run.run_id, record.event_log_entry.dagster_event)
    store.track_request(request_id, status=kind, run_id=run.run_id, error=error, failed_stage=stage)
    return status_event(request_id, kind, run.run_id, stage=stage, error=error)
