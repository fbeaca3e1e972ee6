"""Reading sources safely: archives that try to escape, links, hidden files, broken archives."""

import io
import os
import tarfile
import zipfile

import pytest

from dataset_assets.ingest.sources import SourceError, iter_entries, resolve_source


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
