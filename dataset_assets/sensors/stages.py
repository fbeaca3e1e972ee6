"""'stage_done' events: each stage's materialization of a request, published as it lands.

The stages themselves know nothing of Kafka: this sensor reads their materializations from the
Dagster instance, so a deployment without Kafka runs the same stages, and the events carry the
same count and duration the UI shows.
"""

import json

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    SensorEvaluationContext,
    SensorResult,
    sensor,
)

from dataset_assets.messaging.kafka import KafkaResource, status_event
from dataset_assets.sensors.switch import default_status
from dataset_assets.stages.tracking import STAGES

BATCH = 200


@sensor(
    minimum_interval_seconds=5,
    default_status=default_status(),
    description="Publishes 'stage_done' with the stage's count and duration for each stage of "
    "each request, in order, on the status topic.",
)
def dataset_stage_sensor(context: SensorEvaluationContext, kafka: KafkaResource) -> SensorResult:
    cursor: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    events = []
    for stage in STAGES:
        records = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey(stage), after_storage_id=cursor.get(stage)),
            limit=BATCH,
            ascending=True,
        ).records
        for record in records:
            metadata = record.asset_materialization.metadata if record.asset_materialization else {}
            counts = {
                name: metadata[name].value for name in ("count", "duration_s") if name in metadata
            }
            if record.partition_key:
                events.append(
                    (record.timestamp, record.partition_key, stage, record.run_id, counts)
                )
            cursor[stage] = record.storage_id
    kafka.publish_many(
        kafka.status_topic,
        [
            (request_id, status_event(request_id, "stage_done", run_id, stage=stage, counts=counts))
            for _, request_id, stage, run_id, counts in sorted(events)
        ],
    )
    return SensorResult(
        skip_reason=None if events else "no stage finished since the last tick",
        cursor=json.dumps(cursor, sort_keys=True),
    )
