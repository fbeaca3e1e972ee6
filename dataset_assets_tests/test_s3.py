"""The S3 blob store and S3 dataset sources, against a real S3 API server on loopback."""

import io
import re
import tarfile
import uuid
import zipfile

import numpy as np
import pytest
from dagster_aws.s3 import S3Resource
from PIL import Image

from dataset_assets.ingest.s3_sources import (
    is_s3_url,
    iter_s3_entries,
    parse_s3_url,
    resolve_s3_source,
)
from dataset_assets.ingest.sources import SourceError
from dataset_assets.storage import s3
from dataset_assets.storage.blobs import BlobKeyError
from dataset_assets.storage.s3 import (
    MissingBucketError,
    S3BlobStore,
    s3_client,
    s3_client_from_resource,
)
from dataset_assets_tests.images import photo
from dataset_assets_tests.servers import free_port

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def client(s3_endpoint: str):
    return s3_client(s3_endpoint, "us-east-1", **CREDENTIALS)


@pytest.fixture
def bucket(client) -> str:
    """A fresh bucket per test: the server keeps state for the whole module."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(client, bucket: str) -> S3BlobStore:
    return S3BlobStore(client, bucket, prefix="v1")


def image_bytes(seed: int, fmt: str = "PNG", size: tuple[int, int] = (48, 32)) -> bytes:
    out = io.BytesIO()
    photo(*size, seed=seed).save(out, fmt)
    return out.getvalue()


def object_keys(client, bucket: str) -> list[str]:
    return [item["Key"] for item in client.list_objects_v2(Bucket=bucket).get("Contents", [])]


def read_entries(entries) -> dict[str, tuple[str | None, bytes | None]]:
    found = {}
    for entry in entries:
        if entry.open:
            with entry.open() as stream:
                found[entry.path] = (entry.reason, stream.read())
        else:
            found[entry.path] = (entry.reason, None)
    return found


def test_blobs_round_trip_under_the_store_prefix(store, client, bucket):
    png, jpeg = image_bytes(1), image_bytes(2, "JPEG")
    store.put_bytes("originals/a.png", png)
    store.put_bytes("processed/d/b.jpg", jpeg)
    assert store.get_bytes("originals/a.png") == png
    with store.open("processed/d/b.jpg") as stream:
        assert Image.open(stream).size == (48, 32)
    assert store.exists("originals/a.png")
    assert not store.exists("originals/missing.png")
    assert list(store.list("originals/")) == ["originals/a.png"]
    assert list(store.list("")) == ["originals/a.png", "processed/d/b.jpg"]
    assert object_keys(client, bucket) == ["v1/originals/a.png", "v1/processed/d/b.jpg"]
    assert store.location("originals/a.png") == f"s3://{bucket}/v1/originals/a.png"
    head = client.head_object(Bucket=bucket, Key="v1/processed/d/b.jpg")
    assert head["ContentType"] == "image/jpeg"


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "", "a\\b", "./a"])
def test_keys_that_would_escape_the_store_are_refused(store, client, bucket, key):
    with pytest.raises(BlobKeyError):
        store.put_bytes(key, b"x")
    assert object_keys(client, bucket) == []


def test_writing_a_key_twice_keeps_one_object_with_the_last_bytes(store, client, bucket):
    store.put_bytes("originals/abc.png", image_bytes(1))
    store.put_bytes("originals/abc.png", image_bytes(2))
    assert object_keys(client, bucket) == ["v1/originals/abc.png"]
    assert store.get_bytes("originals/abc.png") == image_bytes(2)


def test_cold_copy_is_stored_in_the_cold_storage_class(client, bucket):
    store = S3BlobStore(client, bucket)
    glacier = S3BlobStore(client, bucket, cold_storage_class="GLACIER_IR")
    store.put_bytes("processed/d/a.png", image_bytes(3))
    store.copy("processed/d/a.png", "datasets/d/hot/a.png")
    store.copy("processed/d/a.png", "datasets/d/cold/a.png", tier="cold")
    glacier.copy("processed/d/a.png", "datasets/d/archive/a.png", tier="cold")

    def storage_class(key: str) -> str:
        return client.head_object(Bucket=bucket, Key=key).get("StorageClass", "STANDARD")

    assert storage_class("datasets/d/hot/a.png") == "STANDARD"
    assert storage_class("datasets/d/cold/a.png") == "STANDARD_IA"
    assert storage_class("datasets/d/archive/a.png") == "GLACIER_IR"
    assert store.get_bytes("datasets/d/cold/a.png") == image_bytes(3)


def test_copy_of_a_missing_blob_is_file_not_found(store):
    with pytest.raises(FileNotFoundError, match=r"v1/nope\.png"):
        store.copy("nope.png", "other.png")
    with pytest.raises(FileNotFoundError, match=r"v1/nope\.png"):
        store.get_bytes("nope.png")


def test_delete_prefix_removes_only_that_folder_in_batches(store, monkeypatch):
    monkeypatch.setattr(s3, "DELETE_BATCH", 2)
    for index in range(5):
        store.put_bytes(f"datasets/d1/{index}.png", image_bytes(index))
    store.put_bytes("datasets/d10/keep.png", image_bytes(9))
    assert store.delete_prefix("datasets/d1") == 5
    assert list(store.list("")) == ["datasets/d10/keep.png"]
    assert store.delete_prefix("datasets/d1/") == 0


def test_a_20_mb_file_goes_up_in_parts(store, client, bucket, tmp_path):
    pixels = np.random.default_rng(7).integers(0, 256, (2600, 2600, 3), dtype=np.uint8)
    large = tmp_path / "large.bmp"
    Image.fromarray(pixels).save(large)
    assert large.stat().st_size > 20_000_000
    store.put_file("originals/large.bmp", large)
    etag = client.head_object(Bucket=bucket, Key="v1/originals/large.bmp")["ETag"]
    assert etag.strip('"').endswith("-2")
    assert store.get_bytes("originals/large.bmp") == large.read_bytes()


def test_a_moved_scratch_file_is_uploaded_then_removed(store, client, bucket, tmp_path):
    spool = tmp_path / "spool"
    spool.write_bytes(image_bytes(4))
    store.move_file("originals/m.png", spool)
    assert not spool.exists()
    assert store.get_bytes("originals/m.png") == image_bytes(4)


def test_a_small_file_goes_up_in_one_put(store, client, bucket, tmp_path):
    small = tmp_path / "small.png"
    small.write_bytes(image_bytes(4))
    store.put_file("originals/small.png", small)
    etag = client.head_object(Bucket=bucket, Key="v1/originals/small.png")["ETag"]
    assert "-" not in etag
    assert store.get_bytes("originals/small.png") == small.read_bytes()


def test_an_unreachable_endpoint_is_a_connection_error_naming_it(bucket):
    dead = f"http://127.0.0.1:{free_port()}"
    store = S3BlobStore(s3_client(dead, "us-east-1", **CREDENTIALS), bucket)
    with pytest.raises(ConnectionError, match=re.escape(dead)):
        store.check_reachable()
    with pytest.raises(ConnectionError, match=bucket):
        store.put_bytes("originals/a.png", b"x")


def test_a_missing_bucket_is_an_error_naming_the_bucket(client, tmp_path):
    store = S3BlobStore(client, "no-such-bucket-here")
    with pytest.raises(MissingBucketError, match="no-such-bucket-here"):
        store.check_reachable()
    with pytest.raises(MissingBucketError, match="no-such-bucket-here"):
        store.put_bytes("originals/a.png", b"x")
    with pytest.raises(MissingBucketError, match="no-such-bucket-here"):
        list(store.list(""))
    (tmp_path / "a.png").write_bytes(image_bytes(5))
    with pytest.raises(MissingBucketError, match="no-such-bucket-here"):
        store.put_file("originals/a.png", tmp_path / "a.png")


def test_clients_from_an_s3_resource_reach_the_store(s3_endpoint, bucket):
    resource = S3Resource(endpoint_url=s3_endpoint, region_name="us-east-1", **CREDENTIALS)
    S3BlobStore(s3_client_from_resource(resource), bucket).put_bytes("a.png", image_bytes(6))
    plain = S3BlobStore(resource.get_client(), bucket)
    plain.check_reachable()
    assert plain.get_bytes("a.png") == image_bytes(6)


def test_a_prefix_source_yields_every_object_below_it_as_entries(client, bucket, tmp_path):
    objects = {
        "sets/one/cat/a.png": image_bytes(1),
        "sets/one/dog/b.jpg": image_bytes(2, "JPEG"),
        "sets/one/labels.csv": b"file,label\ncat/a.png,cat\n",
        "sets/one/.cache/x.png": image_bytes(3),
        "sets/one/cat/../../escape.png": image_bytes(4),
        "sets/one/": b"",
        "sets/oneother/c.png": image_bytes(5),
    }
    for key, data in objects.items():
        client.put_object(Bucket=bucket, Key=key, Body=data)
    source = resolve_s3_source(client, f"s3://{bucket}/sets/one")
    entries = list(iter_s3_entries(client, source, tmp_path))
    assert [entry.is_sidecar for entry in entries if entry.path.endswith(".csv")] == [True]
    assert read_entries(entries) == {
        "cat/../../escape.png": ("unsafe_path", None),
        "cat/a.png": (None, objects["sets/one/cat/a.png"]),
        "dog/b.jpg": (None, objects["sets/one/dog/b.jpg"]),
        "labels.csv": (None, objects["sets/one/labels.csv"]),
    }


def test_a_zip_source_is_spooled_and_read_with_the_archive_safety_rules(client, bucket, tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("cat/a.png", image_bytes(1))
        out.writestr("../../escape.png", image_bytes(2))
        link = zipfile.ZipInfo("cat/link.png")
        link.external_attr = 0o120777 << 16
        out.writestr(link, "/etc/passwd")
        out.writestr("__MACOSX/cat/._a.png", b"junk")
    client.put_object(Bucket=bucket, Key="uploads/set.zip", Body=archive.getvalue())
    spool = tmp_path / "spool"
    spool.mkdir()
    source = resolve_s3_source(client, f"s3://{bucket}/uploads/set.zip")
    assert read_entries(iter_s3_entries(client, source, spool)) == {
        "../../escape.png": ("unsafe_path", None),
        "cat/a.png": (None, image_bytes(1)),
        "cat/link.png": ("symlink", None),
    }
    assert list(spool.iterdir()) == []
    assert not (tmp_path.parent / "escape.png").exists()


def test_a_tar_gz_source_is_streamed_with_the_archive_safety_rules(client, bucket, tmp_path):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as out:
        for name, data in {"cat/a.png": image_bytes(1), "../up.png": image_bytes(2)}.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            out.addfile(member, io.BytesIO(data))
        link = tarfile.TarInfo("cat/link.png")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
    client.put_object(Bucket=bucket, Key="uploads/set.tar.gz", Body=archive.getvalue())
    source = resolve_s3_source(client, f"s3://{bucket}/uploads/set.tar.gz")
    assert read_entries(iter_s3_entries(client, source, tmp_path)) == {
        "cat/a.png": (None, image_bytes(1)),
        "../up.png": ("unsafe_path", None),
        "cat/link.png": ("symlink", None),
    }
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".zip", ".tgz"])
def test_an_archive_that_is_not_one_is_a_source_error_naming_the_url(
    client, bucket, tmp_path, suffix
):
    client.put_object(Bucket=bucket, Key=f"bad{suffix}", Body=image_bytes(1))
    url = f"s3://{bucket}/bad{suffix}"
    with pytest.raises(SourceError, match=re.escape(url)):
        list(iter_s3_entries(client, resolve_s3_source(client, url), tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["missing.zip", "missing/prefix/", "missing", ""])
def test_a_missing_key_or_prefix_is_a_source_error_naming_the_url(client, bucket, path):
    url = f"s3://{bucket}/{path}"
    with pytest.raises(SourceError, match=re.escape(url)):
        resolve_s3_source(client, url)


def test_a_single_object_that_is_not_an_archive_is_refused(client, bucket):
    client.put_object(Bucket=bucket, Key="photo.png", Body=image_bytes(1))
    with pytest.raises(SourceError, match="not an archive"):
        resolve_s3_source(client, f"s3://{bucket}/photo.png")


def test_a_missing_bucket_is_a_source_error_naming_it(client):
    with pytest.raises(SourceError, match="no-such-bucket-here"):
        resolve_s3_source(client, "s3://no-such-bucket-here/photos/")


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("/data/photos", "not an s3:// URL"),
        ("s3:/bucket/photos", "not an s3:// URL"),
        ("s3://", "names no bucket"),
        ("s3:///photos", "names no bucket"),
        ("s3://Bad_Bucket/photos", "not a valid S3 bucket name"),
    ],
)
def test_bad_s3_urls_are_refused_with_the_reason(url, problem):
    with pytest.raises(SourceError, match=problem):
        parse_s3_url(url)


def test_s3_urls_split_into_bucket_and_key():
    assert parse_s3_url("s3://my.bucket-1/a/b c#?.zip") == ("my.bucket-1", "a/b c#?.zip")
    assert parse_s3_url("s3://my-bucket") == ("my-bucket", "")
    assert is_s3_url("s3://my-bucket/x")
    assert not is_s3_url("/data/s3://x")
