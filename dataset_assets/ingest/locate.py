"""Where a request's `dataset_key` points: a local path, or an object or prefix on S3.

A key that is not an existing local path and not an `s3://` URL, like the seed's
`images/kanagawa.zip`, is looked up in `DATASET_ASSETS_SOURCE_BUCKET` when that is set.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from botocore.client import BaseClient

from dataset_assets.ingest.s3_sources import is_s3_url, iter_s3_entries, resolve_s3_source
from dataset_assets.ingest.sources import Entry, SourceError, iter_entries, resolve_source

ClientFactory = Callable[[], BaseClient]


def source_url(dataset_key: str) -> str:
    """The key as given, or `s3://<default bucket>/<key>` when only the bucket can hold it."""
    bucket = os.environ.get("DATASET_ASSETS_SOURCE_BUCKET")
    if is_s3_url(dataset_key) or not bucket or Path(dataset_key).expanduser().exists():
        return dataset_key
    return f"s3://{bucket}/{dataset_key.lstrip('/')}"


def check_source(dataset_key: str, s3: ClientFactory) -> str:
    """Raise `SourceError` naming the key unless the source exists; returns where it is."""
    url = source_url(dataset_key)
    if is_s3_url(url):
        return str(resolve_s3_source(s3(), url))
    return str(resolve_source(url))


def open_entries(dataset_key: str, s3: ClientFactory, scratch: Path) -> Iterator[Entry]:
    """The source's entries; S3 archives that need seeking are spooled into `scratch`."""
    url = source_url(dataset_key)
    if is_s3_url(url):
        client = s3()
        return iter_s3_entries(client, resolve_s3_source(client, url), scratch)
    return iter_entries(resolve_source(url))


__all__ = ["SourceError", "check_source", "open_entries", "source_url"]
