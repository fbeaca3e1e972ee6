"""Reading sources safely: archives that try to escape, links, hidden files, broken archives."""

import io
import os
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from dataset_assets.failures import failure_cause
from dataset_assets.ingest.sources import SourceError, iter_entries, resolve_source
from dataset_assets_tests.conftest import Pipeline
from dataset_assets_tests.images import photo


def _read(entries):
    return {
        entry.path: (entry.reason, entry.open().read() if entry.open else None) for entry in entries
    }


def test_zip_slip_and_absolute_entries_are_rejected_as_unsafe(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("ok/a.png", b"A")
        out.writestr("../../escape.png", b"B")
        out.writestr("/abs.png", b"C")
    found = _read(iter_entries(resolve_source(str(archive))))
    assert found["ok/a.png"] == (None, b"A")
    assert found["../../escape.png"][0] == "unsafe_path"
    assert found["/abs.png"][0] == "unsafe_path"
    assert not (tmp_path.parent / "escape.png").exists()


def test_tar_links_and_escapes_are_rejected_and_files_stream(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        data = b"pixels"
        member = tarfile.TarInfo("cls/a.jpg")
        member.size = len(data)
        out.addfile(member, io.BytesIO(data))
        link = tarfile.TarInfo("cls/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        out.addfile(link)
        escape = tarfile.TarInfo("../up.jpg")
        escape.size = 1
        out.addfile(escape, io.BytesIO(b"x"))
    found = _read(iter_entries(resolve_source(str(archive))))
    assert found == {
        "cls/a.jpg": (None, b"pixels"),
        "cls/link.jpg": ("symlink", None),
        "../up.jpg": ("unsafe_path", None),
    }


def test_folder_symlinks_are_reported_not_followed_and_hidden_files_skipped(tmp_path):
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "a.png").write_bytes(b"A")
    (tmp_path / "cls" / ".DS_Store").write_bytes(b"junk")
    os.symlink("/etc/passwd", tmp_path / "cls" / "passwd.png")
    os.symlink(tmp_path / "cls", tmp_path / "loop")
    found = _read(iter_entries(resolve_source(str(tmp_path))))
    assert found == {
        "cls/a.png": (None, b"A"),
        "cls/passwd.png": ("symlink", None),
        "loop": ("symlink", None),
    }


def test_missing_source_names_the_path(tmp_path):
    with pytest.raises(SourceError, match="no-such-folder"):
        resolve_source(str(tmp_path / "no-such-folder"))


def test_a_file_that_is_not_an_archive_is_refused(tmp_path):
    single = tmp_path / "photo.jpg"
    single.write_bytes(b"x")
    with pytest.raises(SourceError, match="not an archive"):
        resolve_source(str(single))


def test_a_corrupt_zip_names_the_file(tmp_path):
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(SourceError, match=r"broken\.zip"):
        list(iter_entries(resolve_source(str(broken))))


def _png(seed: int) -> bytes:
    buffer = io.BytesIO()
    photo(64, 48, seed).save(buffer, "PNG")
    return buffer.getvalue()


def _damaged_zip(path: Path) -> Path:
    """Three PNGs; the central directory lies about one member's CRC and another's size."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for seed, name in enumerate(["good.png", "bad_crc.png", "lying_size.png"]):
            archive.writestr(f"c/{name}", _png(seed))
    data = bytearray(buffer.getvalue())
    entry = data.find(b"PK\x01\x02")
    while entry != -1:
        name_length = struct.unpack_from("<H", data, entry + 28)[0]
        name = bytes(data[entry + 46 : entry + 46 + name_length])
        if name == b"c/bad_crc.png":
            struct.pack_into("<I", data, entry + 16, 0x12345678)
        if name == b"c/lying_size.png":
            struct.pack_into("<I", data, entry + 24, 10)
        entry = data.find(b"PK\x01\x02", entry + 4)
    path.write_bytes(bytes(data))
    return path


def test_a_damaged_member_or_a_bad_name_rejects_that_file_alone(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    archive = _damaged_zip(tmp_path / "damaged.zip")
    folder = tmp_path / "folder"
    (folder / "c").mkdir(parents=True)
    (folder / "c" / "good.png").write_bytes(_png(5))
    (folder / "c" / "img.j\\pg").write_bytes(_png(6))
    (folder / "c" / "side\\car.txt").write_text("a note")
    with open(os.path.join(os.fsencode(folder / "c"), b"\xff\xfe.png"), "wb") as undecodable:
        undecodable.write(_png(7))

    tolerant = {"validation": {"max_invalid_ratio": 1}}
    zipped = pipeline.run({"request_id": "damaged-zip", "dataset_key": str(archive), **tolerant})
    listed = pipeline.run({"request_id": "bad-names", "dataset_key": str(folder), **tolerant})

    assert zipped.success and listed.success
    store = pipeline.metadata

    def outcome(dataset: str) -> dict[str, tuple[str, str | None]]:
        return {
            doc["source"]: (doc["status"], doc.get("reject_reason"))
            for doc in store.iter_images(dataset)
        }

    zip_outcome = outcome("damaged-zip")
    assert zip_outcome["c/bad_crc.png"] == ("rejected", "unreadable")
    assert zip_outcome["c/lying_size.png"] == ("rejected", "unreadable")
    assert zip_outcome["c/good.png"][0] != "rejected"
    rejected = store.iter_images("damaged-zip", status="rejected")
    messages = {doc["source"]: doc["reject_message"] for doc in rejected}
    assert "Bad CRC-32" in messages["c/bad_crc.png"]
    folder_outcome = outcome("bad-names")
    assert folder_outcome["c/img.j\\pg"] == ("rejected", "unsafe_path")
    assert folder_outcome["c/side\\car.txt"] == ("rejected", "unsafe_path")
    assert folder_outcome["c/\\xff\\xfe.png"] == ("rejected", "unsafe_path")
    assert folder_outcome["c/good.png"][0] != "rejected"
    originals = list(pipeline.blobs.list("originals/"))
    assert len(originals) == 2, "only the two readable images were stored"


def test_a_truncated_tar_gz_fails_naming_the_archive(pipeline: Pipeline, tmp_path: Path) -> None:
    archive = tmp_path / "cut.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for seed in range(4):
            data = _png(seed)
            info = tarfile.TarInfo(f"c/{seed}.png")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])

    result = pipeline.run({"request_id": "cut", "dataset_key": str(archive)})

    assert not result.success
    stage, cause = failure_cause(result.all_events)
    assert stage == "raw_images"
    assert str(archive) in cause and "cannot be read after" in cause


def test_rejected_files_leave_no_original_unless_a_kept_image_shares_it(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    shared = _png(8)
    first = tmp_path / "first" / "c"
    first.mkdir(parents=True)
    (first / "photo.png").write_bytes(shared)
    second = tmp_path / "second" / "c"
    second.mkdir(parents=True)
    (second / "same_photo.png").write_bytes(shared)
    (second / "secret.jpg").write_text("root:x:0:0:not an image\n")
    photo(200, 150, 9).save(second / "large.png")
    assert pipeline.run({"request_id": "keeps", "dataset_key": str(first.parent)}).success

    # The second request keeps the large photo and rejects the others: the small photo as too
    # small, the text as no image.
    strict_sizes = {"validation": {"max_invalid_ratio": 1, "min_width": 100}}
    result = pipeline.run(
        {"request_id": "rejects", "dataset_key": str(second.parent), **strict_sizes}
    )

    assert result.success
    store, blobs = pipeline.metadata, pipeline.blobs
    reasons = {d["source"]: d for d in store.iter_images("rejects", status="rejected")}
    assert reasons["c/secret.jpg"]["reject_reason"] == "not_an_image"
    assert reasons["c/same_photo.png"]["reject_reason"] == "too_small"
    assert not blobs.exists(reasons["c/secret.jpg"]["blob_key"])
    assert blobs.exists(reasons["c/same_photo.png"]["blob_key"]), "the first dataset keeps it"
    large = next(store.iter_images("rejects", status="processed"))["blob_key"]
    kept = {reasons["c/same_photo.png"]["blob_key"], large}
    assert set(blobs.list("originals/")) == kept
