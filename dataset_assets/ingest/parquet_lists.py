"""Parquet URL lists, the form large image collections come in (LAION-style metadata, what
img2dataset reads and writes): a `url` column and optional `label` and `caption` columns.

The file is read one row group at a time and only those columns, so a list of millions of rows
costs the memory of one row group. On S3 the object is read by byte ranges (Parquet keeps its index
in a footer, so it needs seeking): the footer and then each row group, never the whole object.
"""

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pyarrow.parquet as pq
from botocore.client import BaseClient

from dataset_assets.ingest.s3_sources import object_size, parse_s3_url
from dataset_assets.ingest.sources import Entry, SourceError
from dataset_assets.ingest.urls import UrlRow, url_row
from dataset_assets.storage.s3 import s3_errors

COLUMNS = ("url", "label", "caption")
BATCH_ROWS = 4096


class S3RangeFile(io.RawIOBase):
    """A read-only, seekable view of an S3 object that fetches the byte ranges it is asked for."""

    def __init__(self, client: BaseClient, url: str):
        self.client, self.size, self.position = client, object_size(client, url), 0
        self.bucket, self.key = parse_s3_url(url)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        end = min(self.size, self.position + len(buffer))
        if end <= self.position:
            return 0
        with s3_errors(self.client, self.bucket):
            body = self.client.get_object(
                Bucket=self.bucket, Key=self.key, Range=f"bytes={self.position}-{end - 1}"
            )["Body"]
        data = body.read()
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def open_parquet_list(url: str, client: BaseClient | None) -> BinaryIO | Path:
    """The list to read: a local path, or a ranged view of the S3 object (`client` given).

    The view is unbuffered: Parquet asks for whole ranges (the footer, each column chunk), so
    each read is one ranged GET of exactly what is needed."""
    if client is None:
        path = Path(url).expanduser()
        if not path.is_file():
            raise SourceError(f"URL list {url!r}: no such file")
        return path
    return S3RangeFile(client, url)


def read_parquet_list(source: BinaryIO | Path, name: str) -> Iterator[UrlRow | Entry]:
    """The rows of a Parquet URL list in file order, numbered from 1; fails on the first row
    asked for when the file is not Parquet or has no `url` column, before any download."""
    try:
        parquet = pq.ParquetFile(source)
    except Exception as error:
        raise SourceError(f"URL list {name!r} is not a Parquet file ({error})") from None
    columns = {field.name.lower(): field.name for field in parquet.schema_arrow}
    if "url" not in columns:
        found = ", ".join(parquet.schema_arrow.names) or "none"
        raise SourceError(f"URL list {name!r} has no 'url' column (columns: {found})")
    wanted = {column: columns[column] for column in COLUMNS if column in columns}
    number = 0
    for group in range(parquet.num_row_groups):  # one at a time: iter_batches alone reads ahead
        batches = parquet.iter_batches(
            batch_size=BATCH_ROWS, columns=list(wanted.values()), row_groups=[group]
        )
        for batch in batches:
            for record in batch.to_pylist():
                number += 1
                values = {column: record[name] for column, name in wanted.items()}
                yield url_row(number, str(values.pop("url") or ""), values)
