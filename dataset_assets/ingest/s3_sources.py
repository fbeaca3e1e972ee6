"""Reading a dataset source on S3 (a prefix, a .zip or a tar archive) as the same entries as local.

`s3://bucket/photos/` yields every object under the prefix; `s3://bucket/photos.zip` is downloaded
to a local spool file in ranged parts, never held in memory (zip keeps its index at the end, so it
needs seeking); tar archives are read straight from the response stream, never stored. The safety
rules of local archives apply: entries that would escape the dataset are reported as
`unsafe_path`, links as `symlink`.
"""

import os
import re
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.client import BaseClient

from dataset_assets.ingest.sources import (
    ARCHIVE_SUFFIXES,
    URL_LIST_SUFFIXES,
    Entry,
    SourceError,
    is_hidden,
    tar_members,
    unsafe_reason,
    zip_entries,
)
from dataset_assets.storage.s3 import NOT_FOUND, MissingBucketError, error_code, s3_errors

BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
DOWNLOAD_CONFIG = TransferConfig(multipart_threshold=16 * 1024 * 1024)


@dataclass(frozen=True)
class S3Source:
    """A checked S3 source: an archive object when `key` names one, else every object under it."""

    bucket: str
    key: str
    url: str

    @property
    def is_zip(self) -> bool:
        return self.key.lower().endswith(".zip")

    @property
    def is_archive(self) -> bool:
        return _is_archive(self.key)

    def __str__(self) -> str:
        return self.url


def is_s3_url(value: str) -> bool:
    """Whether a `dataset_key` names an S3 source rather than a local path."""
    return value.startswith("s3://")


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/key` as `(bucket, key)`; the key may be empty (the whole bucket) or a prefix."""
    if not is_s3_url(url):
        raise SourceError(f"dataset_key {url!r} is not an s3:// URL")
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise SourceError(f"dataset_key {url!r} names no bucket: use s3://bucket/prefix/")
    if not BUCKET_NAME.fullmatch(bucket):
        raise SourceError(
            f"dataset_key {url!r}: {bucket!r} is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, dots and hyphens)"
        )
    return bucket, key


def resolve_s3_source(client: BaseClient, url: str) -> S3Source:
    """The source behind `url`, checked before any work starts: the archive exists, or the prefix
    holds at least one object.

    A wrong endpoint is a `ConnectionError` (worth retrying); a wrong bucket, key or prefix is a
    `SourceError` naming the URL (not worth retrying).
    """
    bucket, key = parse_s3_url(url)
    try:
        with s3_errors(client, bucket):
            if _is_archive(key):
                if not _object_exists(client, bucket, key):
                    raise SourceError(f"dataset_key {url!r}: no such object in bucket {bucket!r}")
                return S3Source(bucket, key, url)
            prefix = _folder(key)
            listing = client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            if listing.get("KeyCount", 0):
                return S3Source(bucket, prefix, url)
            if key and _object_exists(client, bucket, key):
                raise SourceError(
                    f"dataset_key {url!r} is an object but not an archive: "
                    f"use a prefix, one of {', '.join(ARCHIVE_SUFFIXES)}, "
                    f"or a list of image URLs ({', '.join(URL_LIST_SUFFIXES)})"
                )
            raise SourceError(f"dataset_key {url!r}: no objects under this prefix")
    except MissingBucketError as error:
        raise SourceError(f"dataset_key {url!r}: {error}") from None


def iter_s3_entries(client: BaseClient, source: S3Source, spool_dir: Path) -> Iterator[Entry]:
    """Entries in a stable order; read each one before asking for the next (tar is a stream).

    A zip archive is spooled to a temporary file in `spool_dir`, removed when iteration ends.
    """
    if source.is_zip:
        yield from _zip_object_entries(client, source, spool_dir)
    elif source.is_archive:
        yield from _tar_object_entries(client, source)
    else:
        yield from _prefix_entries(client, source)


def object_size(client: BaseClient, url: str) -> int:
    """The size of the object `url` names; a `SourceError` naming the URL when there is none."""
    bucket, key = parse_s3_url(url)
    try:
        with s3_errors(client, bucket):
            head = _head(client, bucket, key) if key else None
    except MissingBucketError as error:
        raise SourceError(f"dataset_key {url!r}: {error}") from None
    if head is None:
        raise SourceError(f"dataset_key {url!r}: no such object in bucket {bucket!r}")
    return head["ContentLength"]


def s3_text_lines(client: BaseClient, url: str) -> Iterator[str]:
    """The lines of a text object (a URL list), streamed from the response, ends kept."""
    object_size(client, url)
    bucket, key = parse_s3_url(url)
    with s3_errors(client, bucket):
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
    with closing(body):
        for line in body.iter_lines(keepends=True):
            yield line.decode("utf-8", errors="replace")


def _is_archive(key: str) -> bool:
    return not key.endswith("/") and key.lower().endswith(ARCHIVE_SUFFIXES)


def _folder(key: str) -> str:
    return key if not key or key.endswith("/") else f"{key}/"


def _head(client: BaseClient, bucket: str, key: str) -> dict | None:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except botocore.exceptions.ClientError as error:
        if error_code(error) in NOT_FOUND:
            return None
        raise


def _object_exists(client: BaseClient, bucket: str, key: str) -> bool:
    return _head(client, bucket, key) is not None


def _opener(client: BaseClient, bucket: str, key: str) -> Callable[[], BinaryIO]:
    def open_body() -> BinaryIO:
        with s3_errors(client, bucket):
            return client.get_object(Bucket=bucket, Key=key)["Body"]

    return open_body


def _key_problem(path: str) -> str | None:
    """Object keys may hold `..` or empty segments; as dataset paths they would escape or clash."""
    problem = unsafe_reason(path)
    if problem is None and "" in path.split("/"):
        problem = f"{path!r}: object key has an empty path segment"
    return problem


def _prefix_entries(client: BaseClient, source: S3Source) -> Iterator[Entry]:
    paginator = client.get_paginator("list_objects_v2")
    with s3_errors(client, source.bucket):
        for page in paginator.paginate(Bucket=source.bucket, Prefix=source.key):
            for item in page.get("Contents", []):
                path = item["Key"][len(source.key) :]
                if not path or path.endswith("/") or is_hidden(path):
                    continue
                problem = _key_problem(path)
                if problem:
                    yield Entry(path, item["Size"], reason="unsafe_path", message=problem)
                else:
                    yield Entry(
                        path, item["Size"], open=_opener(client, source.bucket, item["Key"])
                    )


def _zip_object_entries(client: BaseClient, source: S3Source, spool_dir: Path) -> Iterator[Entry]:
    handle, spool = tempfile.mkstemp(dir=spool_dir, prefix="source-", suffix=".zip")
    try:
        with os.fdopen(handle, "wb") as out, s3_errors(client, source.bucket):
            client.download_fileobj(source.bucket, source.key, out, Config=DOWNLOAD_CONFIG)
        if not zipfile.is_zipfile(spool):
            raise SourceError(f"{source.url}: not a readable zip archive")
        yield from zip_entries(Path(spool))
    finally:
        Path(spool).unlink(missing_ok=True)


def _tar_object_entries(client: BaseClient, source: S3Source) -> Iterator[Entry]:
    with s3_errors(client, source.bucket):
        body = client.get_object(Bucket=source.bucket, Key=source.key)["Body"]
    with closing(body):
        try:
            archive = tarfile.open(fileobj=body, mode="r|*")  # noqa: SIM115 - closed below
        except (tarfile.TarError, OSError) as error:
            raise SourceError(f"{source.url}: not a readable tar archive ({error})") from None
        with archive:
            yield from tar_members(archive)
