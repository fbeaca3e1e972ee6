"""Blobs in an S3 bucket (AWS, MinIO or any S3-compatible server), behind the `BlobStore` interface.

Stages see the same keys as with the local store; here they live under `s3://bucket/prefix/`. S3
failures that a user must act on are turned into plain errors that name the endpoint and bucket:
an unreachable endpoint is a `ConnectionError` (retried by the stage's retry policy), a missing
bucket is a `MissingBucketError`, a missing key a `FileNotFoundError` as with local files.
"""

import mimetypes
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.client import BaseClient
from botocore.config import Config

from dataset_assets.storage.blobs import BlobStore, Tier, check_key

if TYPE_CHECKING:
    from dagster_aws.s3 import S3Resource

MiB = 1024 * 1024
GiB = 1024 * MiB
UPLOAD_CONFIG = TransferConfig(multipart_threshold=16 * MiB, multipart_chunksize=16 * MiB)
COPY_CONFIG = TransferConfig(multipart_threshold=5 * GiB, multipart_chunksize=512 * MiB)
DELETE_BATCH = 1000
NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


class MissingBucketError(LookupError):
    """The configured bucket does not exist on the endpoint: a setup problem, not worth retrying."""


def s3_client(
    endpoint_url: str | None = None,
    region_name: str | None = None,
    *,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    profile_name: str | None = None,
    use_ssl: bool = True,
    verify: bool | None = None,
    use_unsigned_session: bool = False,
    max_attempts: int = 3,
) -> BaseClient:
    """An S3 client that gives up on a dead endpoint in seconds instead of minutes.

    botocore waits 60 s per connection attempt by default; here a connection must open within
    5 s, a read may stall for 60 s, and a request is tried `max_attempts` times in total.
    """
    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        signature_version=UNSIGNED if use_unsigned_session else None,
    )
    session = boto3.session.Session(profile_name=profile_name)
    return session.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=region_name,
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        use_ssl=use_ssl,
        verify=verify,
        config=config,
    )


def s3_client_from_resource(resource: "S3Resource") -> BaseClient:
    """A client with every setting of a Dagster `S3Resource`, plus the short connect timeout.

    The resource is the place to configure S3 (its fields accept `EnvVar`s and show in the UI):

        resource = S3Resource(
            endpoint_url=EnvVar("S3_ENDPOINT_URL"),
            region_name="us-east-1",
            aws_access_key_id=EnvVar("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=EnvVar("AWS_SECRET_ACCESS_KEY"),
        )
        store = S3BlobStore(s3_client_from_resource(resource), bucket="datasets", prefix="v1")

    `S3BlobStore(resource.get_client(), ...)` works as well, with botocore's 60 s connect timeout.
    """
    return s3_client(**s3_client_settings(resource))


def s3_client_settings(resource: "S3Resource") -> dict[str, Any]:
    """The `s3_client` arguments a Dagster `S3Resource` configures."""
    return {
        "endpoint_url": resource.endpoint_url,
        "region_name": resource.region_name,
        "aws_access_key_id": resource.aws_access_key_id,
        "aws_secret_access_key": resource.aws_secret_access_key,
        "aws_session_token": resource.aws_session_token,
        "profile_name": resource.profile_name,
        "use_ssl": resource.use_ssl,
        "verify": resource.verify,
        "use_unsigned_session": resource.use_unsigned_session,
        "max_attempts": resource.max_attempts,
    }


def error_code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextmanager
def s3_errors(client: BaseClient, bucket: str) -> Iterator[None]:
    """Turn botocore's connection and missing-bucket errors into ones that name what to fix."""
    try:
        yield
    except botocore.exceptions.ConnectionError as error:
        raise ConnectionError(
            f"S3 endpoint {client.meta.endpoint_url} is unreachable (bucket {bucket!r}): {error}"
        ) from error
    except botocore.exceptions.ClientError as error:
        if error_code(error) == "NoSuchBucket":
            raise MissingBucketError(
                f"S3 bucket {bucket!r} does not exist at {client.meta.endpoint_url}"
            ) from None
        raise


@cache
def reopened_s3_store(
    settings: tuple[tuple[str, Any], ...], bucket: str, prefix: str, cold_storage_class: str
) -> "S3BlobStore":
    """A store sent to a worker process: one client per worker, however many tasks name it."""
    kwargs = dict(settings)
    return S3BlobStore(s3_client(**kwargs), bucket, prefix, cold_storage_class, kwargs)


class S3BlobStore(BlobStore):
    """Blobs as objects under `s3://bucket/prefix/`; every key is checked before it is used.

    Prefixes passed to `list` and `delete_prefix` name folders, as in the local store, so deleting
    `datasets/d1` never touches `datasets/d10/`.
    """

    def __init__(
        self,
        client: BaseClient,
        bucket: str,
        prefix: str = "",
        cold_storage_class: str = "STANDARD_IA",
        client_settings: Mapping[str, Any] | None = None,
    ):
        """`client_settings`, the `s3_client` arguments `client` was made with, let the store
        travel to a worker process, which opens a client of its own from them."""
        self.client = client
        self.bucket = bucket
        self.prefix = check_key(prefix.strip("/")) if prefix.strip("/") else ""
        self.cold_storage_class = cold_storage_class
        self.client_settings = dict(client_settings) if client_settings is not None else None

    def __reduce__(self) -> tuple[Any, ...]:
        if self.client_settings is None:
            raise TypeError(
                "an S3BlobStore made from a bare client cannot be sent to another process: "
                "create it with client_settings"
            )
        settings = tuple(sorted(self.client_settings.items()))
        return reopened_s3_store, (settings, self.bucket, self.prefix, self.cold_storage_class)

    def object_key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _folder(self, prefix: str) -> str:
        folder = prefix.strip("/")
        if folder:
            return self.object_key(folder) + "/"
        return f"{self.prefix}/" if self.prefix else ""

    def _errors(self) -> AbstractContextManager[None]:
        return s3_errors(self.client, self.bucket)

    def check_reachable(self) -> None:
        """Fail fast, before a run does any work, when the endpoint or the bucket is wrong."""
        try:
            with self._errors():
                self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as error:
            if error_code(error) in NOT_FOUND:
                raise MissingBucketError(
                    f"S3 bucket {self.bucket!r} does not exist at {self.client.meta.endpoint_url}"
                ) from None
            raise

    def put_bytes(self, key: str, data: bytes) -> str:
        with self._errors():
            self.client.put_object(
                Bucket=self.bucket, Key=self.object_key(key), Body=data, ContentType=_type(key)
            )
        return key

    def put_file(self, key: str, path: Path) -> str:
        """Files over 16 MiB go up in parallel parts, so a large image never sits in memory."""
        try:
            with self._errors():
                self.client.upload_file(
                    str(path),
                    self.bucket,
                    self.object_key(key),
                    ExtraArgs={"ContentType": _type(key)},
                    Config=UPLOAD_CONFIG,
                )
        except boto3.exceptions.S3UploadFailedError as error:
            if "NoSuchBucket" in str(error):
                raise MissingBucketError(
                    f"S3 bucket {self.bucket!r} does not exist at {self.client.meta.endpoint_url}"
                ) from None
            raise
        return key

    def get_bytes(self, key: str) -> bytes:
        with self.open(key) as body:
            return body.read()

    def open(self, key: str) -> BinaryIO:
        try:
            with self._errors():
                return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))["Body"]
        except botocore.exceptions.ClientError as error:
            if error_code(error) in NOT_FOUND:
                raise FileNotFoundError(f"{self.location(key)}: no such blob") from None
            raise

    def exists(self, key: str) -> bool:
        try:
            with self._errors():
                self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except botocore.exceptions.ClientError as error:
            if error_code(error) in NOT_FOUND:
                return False
            raise
        return True

    def list(self, prefix: str) -> Iterator[str]:
        folder = self._folder(prefix)
        skip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        with self._errors():
            for page in paginator.paginate(Bucket=self.bucket, Prefix=folder):
                for item in page.get("Contents", []):
                    yield item["Key"][skip:]

    def copy(self, source: str, destination: str, tier: Tier = "hot") -> str:
        """A server-side copy; objects over 5 GiB, which S3 cannot copy in one call, go in parts."""
        extra = {"StorageClass": self.cold_storage_class} if tier == "cold" else {}
        try:
            with self._errors():
                self.client.copy(
                    {"Bucket": self.bucket, "Key": self.object_key(source)},
                    self.bucket,
                    self.object_key(destination),
                    ExtraArgs=extra,
                    Config=COPY_CONFIG,
                )
        except botocore.exceptions.ClientError as error:
            if error_code(error) in NOT_FOUND:
                raise FileNotFoundError(f"{self.location(source)}: no such blob") from None
            raise
        return destination

    def delete(self, key: str) -> None:
        with self._errors():
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [self.object_key(key) for key in self.list(prefix)]
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start : start + DELETE_BATCH]
            with self._errors():
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            if response.get("Errors"):
                failed = response["Errors"][0]
                raise OSError(
                    f"s3://{self.bucket}/{failed['Key']}: delete failed ({failed.get('Message')})"
                )
        return len(keys)

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key) if key else self._folder('')}"


def _type(key: str) -> str:
    """A content type, so a report or image opened from the bucket shows in a browser."""
    return mimetypes.guess_type(key)[0] or "application/octet-stream"
