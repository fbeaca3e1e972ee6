"""Sensors that turn Kafka requests into runs and report each run's status back to Kafka."""

from dataset_assets.sensors.requests import dataset_requests_sensor
from dataset_assets.sensors.stages import dataset_stage_sensor
from dataset_assets.sensors.status import (
    dataset_run_failed_sensor,
    dataset_run_started_sensor,
    dataset_run_succeeded_sensor,
)

SENSORS = [
    dataset_requests_sensor,
    dataset_run_started_sensor,
    dataset_stage_sensor,
    dataset_run_succeeded_sensor,
    dataset_run_failed_sensor,
]

__all__ = [
    "SENSORS",
    "dataset_requests_sensor",
    "dataset_run_failed_sensor",
    "dataset_run_started_sensor",
    "dataset_run_succeeded_sensor",
    "dataset_stage_sensor",
]
