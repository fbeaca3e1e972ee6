"""The local blob store: keys cannot escape, writes are atomic and idempotent."""

import pytest

from dataset_assets.storage.blobs import BlobKeyError, LocalBlobStore


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "a//b", "", "a\\b", "./a"])
def test_keys_that_would_escape_the_store_are_refused(tmp_path, key):
    store = LocalBlobStore(tmp_path / "blobs")
    with pytest.raises(BlobKeyError):
        store.put_bytes(key, b"x")


def test_writing_a_key_twice_keeps_one_blob_with_the_last_bytes(tmp_path):
    store = LocalBlobStore(tmp_path)
    store.put_bytes("originals/abc.jpg", b"one")
    store.put_bytes("originals/abc.jpg", b"two")
    assert list(store.list("originals/")) == ["originals/abc.jpg"]
    assert store.get_bytes("originals/abc.jpg") == b"two"


def test_copy_to_a_tier_shares_the_bytes_and_delete_prefix_removes_only_that_prefix(tmp_path):
    store = LocalBlobStore(tmp_path)
    store.put_bytes("processed/d/a.jpg", b"img")
    store.copy("processed/d/a.jpg", "datasets/d/cold/x/a.jpg", tier="cold")
    assert store.get_bytes("datasets/d/cold/x/a.jpg") == b"img"
    assert store.delete_prefix("datasets/d/") == 1
    assert store.exists("processed/d/a.jpg")
    assert not store.exists("datasets/d/cold/x/a.jpg")


def test_a_scratch_file_moves_in_by_rename_and_a_write_makes_its_folder(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    spool = tmp_path / "spool"
    spool.write_bytes(b"original")
    inode = spool.stat().st_ino
    store.move_file("originals/deep/abc.jpg", spool)
    assert not spool.exists()
    assert store.path("originals/deep/abc.jpg").stat().st_ino == inode
    store.put_bytes("thumbnails/new/folder/a.jpg", b"thumb")
    assert sorted(store.list("")) == ["originals/deep/abc.jpg", "thumbnails/new/folder/a.jpg"]
    assert not any(path.name.startswith(".tmp-") for path in (tmp_path / "blobs").rglob("*"))
