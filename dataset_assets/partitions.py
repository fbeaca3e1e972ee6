"""One dynamic partition per dataset request: every stage of a request shares its partition key."""

import re
import warnings

from dagster import DynamicPartitionsDefinition, PreviewWarning

# The quality checks are partitioned like their assets on purpose (one result per request);
# Dagster 1.13 flags partitioned asset checks as a preview feature on every load. Every module
# that defines a check imports this one first.
warnings.filterwarnings(
    "ignore",
    message="Specifying a partitions_def on an AssetCheckSpec",
    category=PreviewWarning,
)

datasets_partitions = DynamicPartitionsDefinition(name="datasets")

REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,128}")


def check_request_id(value: str) -> str:
    """Partition keys name storage prefixes and Kafka keys, so only a safe alphabet is allowed."""
    if not REQUEST_ID_PATTERN.fullmatch(value) or value in {".", ".."}:
        raise ValueError(
            f"request_id {value!r} is not allowed: use 1-128 characters from A-Z a-z 0-9 . _ -"
        )
    return value
