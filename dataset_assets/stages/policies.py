"""Retry policies per kind of step: I/O-bound steps retry more, and longer, than CPU-bound ones.

Every stage is idempotent (content-addressed blobs, upserted records, resumable by status), so a
retry only redoes what the failed attempt did not finish.
"""

from dagster import Backoff, Jitter, RetryPolicy

IO_RETRY = RetryPolicy(
    max_retries=4, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
"""Reads sources and writes blobs: network and storage hiccups pass within seconds."""

CPU_RETRY = RetryPolicy(
    max_retries=2, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
"""Decodes and transforms images: a retry helps after a lost worker, not after bad data."""

METADATA_RETRY = RetryPolicy(
    max_retries=3, delay=1, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)
"""Works mostly against the metadata store: short waits cover a store restart or failover."""
