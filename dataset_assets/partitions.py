"""One dynamic partition per dataset request: every stage of a request shares its partition key."""

import re

from dagster import DynamicPartitionsDefinition

datasets_partitions = DynamicPartitionsDefinition(name="datasets")

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_request_id(value: str) -> str:
    """Partition keys name storage prefixes and Kafka keys, so only a safe alphabet is allowed."""
    if not REQUEST_ID_PATTERN.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"request_id {value!r} is not allowed: use 1-128 characters from A-Z a-z 0-9 . _ -"
        )
    return value
