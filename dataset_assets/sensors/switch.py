"""Whether the sensors start on their own: off by default, on in the local stack."""

import os

from dagster import DefaultSensorStatus


def default_status() -> DefaultSensorStatus:
    """`DATASET_ASSETS_SENSORS=running` starts every sensor when the code location loads."""
    if os.environ.get("DATASET_ASSETS_SENSORS", "").lower() == "running":
        return DefaultSensorStatus.RUNNING
    return DefaultSensorStatus.STOPPED
