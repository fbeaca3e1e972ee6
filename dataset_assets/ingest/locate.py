"""Where a request's `dataset_key` points: a local path, an object or prefix on S3, or a list of
image URLs (local or on S3).

A key that is not an existing local path and not an `s3://` URL, like the seed's
`images/kanagawa.zip`, is looked up in `DATASET_ASSETS_SOURCE_BUCKET` when that is set.
"""

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from botocore.client import BaseClient

from dataset_assets.ingest.parquet_lists import open_parquet_list, read_parquet_list
from dataset_assets.ingest.s3_sources import (
    is_s3_url,
    iter_s3_entries,
    resolve_s3_source,
    s3_text_lines,
)
from dataset_assets.ingest.sources import Entry, SourceError, iter_entries, resolve_source
from dataset_assets.ingest.urls import (
    DownloadSettings,
    UrlRow,
    checked_url_list,
    is_url_list,
    iter_url_entries,
    open_url_list,
    read_url_list,
)

ClientFactory = Callable[[], BaseClient]


def source_url(dataset_key: str) -> str:
    """The key as given, or `s3://<default bucket>/<key>` when only the bucket can hold it."""
    bucket = os.environ.get("DATASET_ASSETS_SOURCE_BUCKET")
    if is_s3_url(dataset_key) or not bucket or Path(dataset_key).expanduser().exists():
        return dataset_key
    return f"s3://{bucket}/{dataset_key.lstrip('/')}"


def _names_url_list(url: str) -> bool:
    return is_url_list(url) and (is_s3_url(url) or not Path(url).expanduser().is_dir())


def _url_rows(url: str, s3: ClientFactory) -> Iterator[UrlRow | Entry]:
    """The rows of a URL list; the first one asked for fails when the list is unusable."""
    if url.lower().endswith(".parquet"):
        return read_parquet_list(open_parquet_list(url, s3() if is_s3_url(url) else None), url)
    lines = s3_text_lines(s3(), url) if is_s3_url(url) else open_url_list(Path(url).expanduser())
    return read_url_list(checked_url_list(lines, url), url)


def check_source(dataset_key: str, s3: ClientFactory) -> str:
    """Raise `SourceError` naming the key unless the source exists; returns where it is."""
    url = source_url(dataset_key)
    if _names_url_list(url):
        rows = _url_rows(url, s3)
        next(rows, None)
        rows.close()
        return url
    if is_s3_url(url):
        return str(resolve_s3_source(s3(), url))
    return str(resolve_source(url))


def open_entries(
    dataset_key: str, s3: ClientFactory, scratch: Path, downloads: DownloadSettings
) -> Iterator[Entry]:
    """The source's entries; S3 archives that need seeking, and downloads, are spooled into
    `scratch`."""
    url = source_url(dataset_key)
    if _names_url_list(url):
        return iter_url_entries(_url_rows(url, s3), downloads, scratch)
    if is_s3_url(url):
        client = s3()
        return iter_s3_entries(client, resolve_s3_source(client, url), scratch)
    return iter_entries(resolve_source(url))


__all__ = ["SourceError", "check_source", "open_entries", "source_url"]
