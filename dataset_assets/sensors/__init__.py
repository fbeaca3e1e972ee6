"""Sensors that turn Kafka requests into runs and report each run's status back to Kafka."""

from dataset_assets.sensors.requests import dataset_requests_sensor
from dataset_assets.sensors.status import dataset_status_sensor

SENSORS = [dataset_requests_sensor, dataset_status_sensor]

__all__ = ["SENSORS", "dataset_requests_sensor", "dataset_status_sensor"]
