"""Reading a dataset source (folder, .zip, .tar, .tar.gz) as a stream of entries, safely.

Nothing is extracted to disk under the entry's own name: each entry is read as a byte stream and
stored under its content hash, so an archive entry named `../../etc/passwd` cannot write anywhere.
Such entries, and symbolic links, are still reported (as `unsafe_path` / `symlink`) so the user sees
why a file did not make it into the dataset.
"""

import os
import stat
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath
from typing import BinaryIO

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
URL_LIST_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")
SIDECAR_SUFFIXES = frozenset({".csv", ".json", ".jsonl", ".txt", ".md", ".yaml", ".yml", ".xml"})


class SourceError(ValueError):
    """The source itself cannot be read: missing, unsupported or not an archive."""


@dataclass(frozen=True)
class Entry:
    """One file of the source: its path inside the dataset and how to read it, or why not."""

    path: str
    size: int | None
    open: Callable[[], BinaryIO] | None = None
    reason: str | None = None
    message: str | None = None
    origin: str | None = None
    """Where the file was fetched from, when that is not the dataset itself (a URL)."""
    caption: str | None = None
    """The text a URL list gives with the image (its `caption` column)."""

    @property
    def is_sidecar(self) -> bool:
        """Label manifests and notes travel with images but are not images themselves."""
        return PurePosixPath(self.path).suffix.lower() in SIDECAR_SUFFIXES


def resolve_source(dataset_key: str) -> Path:
    """The local path of a source, checked before any work starts."""
    path = Path(dataset_key).expanduser()
    if not path.exists():
        raise SourceError(
            f"dataset_key {dataset_key!r}: no such file or directory ({path.resolve()})"
        )
    if path.is_dir():
        return path
    if not path.name.lower().endswith(ARCHIVE_SUFFIXES):
        raise SourceError(
            f"dataset_key {dataset_key!r} is a file but not an archive: "
            f"use a folder, one of {', '.join(ARCHIVE_SUFFIXES)}, "
            f"or a list of image URLs ({', '.join(URL_LIST_SUFFIXES)})"
        )
    return path


def iter_entries(source: Path) -> Iterator[Entry]:
    """Entries in a stable order; read each one before asking for the next (tar is a stream)."""
    if source.is_dir():
        yield from _folder_entries(source)
    elif source.name.lower().endswith(".zip"):
        yield from zip_entries(source)
    else:
        yield from _tar_entries(source)


def is_hidden(path: str) -> bool:
    parts = PurePosixPath(path).parts
    return any((p.startswith(".") and p != "..") or p == "__MACOSX" for p in parts)


def unsafe_reason(name: str) -> str | None:
    """Why a file name cannot name a file of the dataset, or None: every source's entries, and
    names a request gives (a label manifest), pass this one check."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"{printable(name)!r}: file name is not valid UTF-8"
    if "\\" in name or "\x00" in name:
        return f"{name!r}: file name holds a backslash or NUL"
    path = PurePosixPath(name)
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        return f"{name!r}: path is absolute"
    if ".." in path.parts:
        return f"{name!r}: path escapes the dataset with '..'"
    return None


def printable(name: str) -> str:
    """`name` with bytes that are not UTF-8 (which Python keeps as surrogates) spelt as `\\xff`."""
    try:
        raw = name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = name.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _folder_entries(root: Path) -> Iterator[Entry]:
    for directory, subdirs, files in os.walk(root, followlinks=False):
        subdirs.sort()
        base = Path(directory)
        for name in sorted(files + [d for d in subdirs if (base / d).is_symlink()]):
            full = base / name
            relative = full.relative_to(root).as_posix()
            if is_hidden(relative):
                continue
            problem = unsafe_reason(relative)
            if problem:
                yield Entry(printable(relative), None, reason="unsafe_path", message=problem)
            elif full.is_symlink():
                yield Entry(
                    relative,
                    None,
                    reason="symlink",
                    message=f"{relative}: symbolic link not followed",
                )
            elif full.is_file():
                yield Entry(relative, full.stat().st_size, open=partial(full.open, "rb"))
        subdirs[:] = [d for d in subdirs if not (base / d).is_symlink()]


def first_of_each_name(entries: Iterator[Entry]) -> Iterator[Entry]:
    """Archive entries with a name seen before become their own rejected entry.

    Tar and zip both allow two members with one name; each must stay a record of its own rather
    than overwrite the first one's. The repeat gets the path `name#k` (the k-th member of that
    name) and the reason `duplicate_name`. The names held are no more than the archive readers
    already hold for their member lists.
    """
    seen: dict[str, int] = {}
    for entry in entries:
        count = seen.get(entry.path, 0) + 1
        seen[entry.path] = count
        if count == 1:
            yield entry
        else:
            yield Entry(
                f"{entry.path}#{count}",
                entry.size,
                reason="duplicate_name",
                message=f"{entry.path}: member {count} of the archive with this name; "
                "the first one is kept",
            )


def zip_entries(path: Path) -> Iterator[Entry]:
    """Entries of a zip archive in name order, links and escapes reported, names made unique."""
    yield from first_of_each_name(_zip_members(path))


def _zip_members(path: Path) -> Iterator[Entry]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise SourceError(f"{path}: not a readable zip archive ({error})") from None
    with archive:
        for info in sorted(archive.infolist(), key=lambda i: i.filename):
            name = info.filename
            if info.is_dir() or is_hidden(name):
                continue
            problem = unsafe_reason(name)
            if problem:
                yield Entry(name, info.file_size, reason="unsafe_path", message=problem)
            elif stat.S_ISLNK(info.external_attr >> 16):
                yield Entry(
                    name, None, reason="symlink", message=f"{name}: symbolic link in archive"
                )
            else:
                yield Entry(name, info.file_size, open=lambda i=info: archive.open(i))


def _tar_entries(path: Path) -> Iterator[Entry]:
    try:
        archive = tarfile.open(path, mode="r|*")  # noqa: SIM115 - closed by the `with` below
    except (tarfile.TarError, OSError) as error:
        raise SourceError(f"{path}: not a readable tar archive ({error})") from None
    with archive:
        yield from tar_members(archive)


def tar_members(archive: tarfile.TarFile) -> Iterator[Entry]:
    """Entries of an open tar stream, local or downloading, with links and escapes reported and
    names made unique."""
    yield from first_of_each_name(_tar_stream(archive))


def _tar_stream(archive: tarfile.TarFile) -> Iterator[Entry]:
    for member in archive:
        name = member.name
        if member.isdir() or is_hidden(name):
            continue
        problem = unsafe_reason(name)
        if problem:
            yield Entry(printable(name), member.size, reason="unsafe_path", message=problem)
        elif member.issym() or member.islnk():
            yield Entry(
                name,
                None,
                reason="symlink",
                message=f"{name}: link to {member.linkname!r} in archive not followed",
            )
        elif not member.isfile():
            yield Entry(name, None, reason="not_a_file", message=f"{name}: device or fifo")
        else:
            yield Entry(name, member.size, open=lambda m=member: archive.extractfile(m))
