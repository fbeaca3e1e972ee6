"""A request's run lifecycle on the status topic and in the metadata store.

The request id is the run's partition. Each sensor records the status in the request's tracking
document first and then publishes the event (keyed by request id), so a retried tick repeats the
same writes. Stage progress comes from the stages themselves.
"""

from dagster import (
    DagsterEvent,
    DagsterRunStatus,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SkipReason,
    run_failure_sensor,
    run_status_sensor,
)

from dataset_assets.jobs import process_dataset
from dataset_assets.messaging.kafka import KafkaResource
from dataset_assets.sensors.switch import default_status
from dataset_assets.storage.resources import MetadataStoreResource

PARTITION_TAG = "dagster/partition"


def _request_id(context: RunStatusSensorContext) -> str | None:
    return context.dagster_run.tags.get(PARTITION_TAG)


def _no_partition(context: RunStatusSensorContext) -> SkipReason:
    return SkipReason(f"run {context.dagster_run.run_id} has no partition: no request to report")


@run_status_sensor(
    run_status=DagsterRunStatus.STARTED,
    monitored_jobs=[process_dataset],
    name="dataset_run_started_sensor",
    default_status=default_status(),
    description="Publishes 'started' for each process_dataset run.",
)
def dataset_run_started_sensor(
    context: RunStatusSensorContext, kafka: KafkaResource, metadata: MetadataStoreResource
) -> SkipReason | None:
    request_id = _request_id(context)
    if request_id is None:
        return _no_partition(context)
    run_id = context.dagster_run.run_id
    store = metadata.store
    tracked = store.get_request(request_id) or {}
    if tracked.get("run_id") == run_id:
        # The run's stages already record their own, later status.
        store.track_request(request_id, run_id=run_id)
    else:
        store.track_request(request_id, status="started", run_id=run_id)
    kafka.publish_status(request_id, "started", run_id)
    return None


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[process_dataset],
    name="dataset_run_succeeded_sensor",
    default_status=default_status(),
    description="Publishes 'succeeded' with the dataset's counts for each process_dataset run.",
)
def dataset_run_succeeded_sensor(
    context: RunStatusSensorContext, kafka: KafkaResource, metadata: MetadataStoreResource
) -> SkipReason | None:
    request_id = _request_id(context)
    if request_id is None:
        return _no_partition(context)
    run_id = context.dagster_run.run_id
    store = metadata.store
    store.track_request(request_id, status="succeeded", run_id=run_id, error=None)
    counts = (store.get_request(request_id) or {}).get("metrics")
    kafka.publish_status(request_id, "succeeded", run_id, counts=counts)
    return None


@run_failure_sensor(
    monitored_jobs=[process_dataset],
    name="dataset_run_failed_sensor",
    default_status=default_status(),
    description="Publishes 'failed' with the failing stage and its error for each "
    "process_dataset run.",
)
def dataset_run_failed_sensor(
    context: RunFailureSensorContext, kafka: KafkaResource, metadata: MetadataStoreResource
) -> SkipReason | None:
    request_id = _request_id(context)
    if request_id is None:
        return _no_partition(context)
    run_id = context.dagster_run.run_id
    stage, error = failure_cause(context.get_step_failure_events(), context.failure_event)
    metadata.store.track_request(
        request_id, status="failed", run_id=run_id, error=error, failed_stage=stage
    )
    kafka.publish_status(request_id, "failed", run_id, stage=stage, error=error)
    return None


def failure_cause(
    step_failures: list[DagsterEvent], run_failure: DagsterEvent
) -> tuple[str | None, str]:
    """The stage that failed first and its root cause: a `Failure`'s description, else the
    innermost exception; the run failure's message when no step failed."""
    for event in step_failures:
        data = event.step_failure_data
        stage = (event.step_key or "").split(".")[0] or None
        if data.user_failure_data and data.user_failure_data.description:
            return stage, data.user_failure_data.description
        error = data.error
        while error is not None and error.cause is not None:
            error = error.cause
        if error is not None:
            lines = error.message.strip().splitlines() or [""]
            return stage, f"{error.cls_name}: {lines[-1]}"
    return None, run_failure.message or "run failed"
