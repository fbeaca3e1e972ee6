"""Blob stores: where image bytes live, addressed by keys such as `originals/<sha256>.jpg`.

Stages write each blob as soon as it is produced and pass only keys along. Writing a key twice with
the same bytes is harmless, so a retried step never duplicates or corrupts anything.
"""

import itertools
import os
import secrets
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

Tier = Literal["hot", "cold"]


class BlobKeyError(ValueError):
    """A key that would escape the store's namespace (absolute, `..`, empty parts)."""


def check_key(key: str) -> str:
    """Keys are relative POSIX paths without `..`, so no request can write outside its prefix."""
    path = PurePosixPath(key)
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in {"", ".", ".."} for part in key.split("/"))
        or path.is_absolute()
    ):
        raise BlobKeyError(f"blob key {key!r} is not a safe relative path")
    return key


class BlobStore(ABC):
    """The one interface every stage uses for image bytes; local and S3 differ only behind it."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> str: ...

    @abstractmethod
    def put_file(self, key: str, path: Path) -> str:
        """Store a local file's content under `key` (the file is left in place)."""

    def move_file(self, key: str, path: Path) -> str:
        """Store a scratch file under `key`; the file is gone afterwards."""
        self.put_file(key, path)
        path.unlink(missing_ok=True)
        return key

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def open(self, key: str) -> BinaryIO:
        """A readable binary stream of the blob, for content too large to hold at once."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str) -> Iterator[str]: ...

    @abstractmethod
    def copy(self, source: str, destination: str, tier: Tier = "hot") -> str:
        """Copy within the store; `tier="cold"` puts the copy in the cheaper storage class."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one blob; a missing one is not an error (retries delete twice)."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int: ...

    @abstractmethod
    def location(self, key: str) -> str:
        """Where a user finds the blob: a file path or an s3:// URL."""


_TEMP_TOKEN = secrets.token_hex(4)
_temp_numbers = itertools.count()


def temp_path(target: Path) -> Path:
    """A name beside `target` that no other writer uses: process id, a random token and a
    counter, with no `mkstemp` (random names and a retry loop) per blob."""
    return target.with_name(f".tmp-{os.getpid()}-{_TEMP_TOKEN}-{next(_temp_numbers)}")


class LocalBlobStore(BlobStore):
    """Blobs as files under one directory: the embedded default, no server needed.

    Writes go to a temporary file in the same directory and are renamed into place, so a reader
    never sees half a blob and a crashed write leaves nothing under the key. A folder is made
    only when a write finds it missing, not checked before every write.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def _write(self, key: str, fill: Callable[[BinaryIO], object]) -> str:
        target = self.path(key)
        temp = temp_path(target)
        try:
            out = open(temp, "xb")  # noqa: SIM115 - closed below, after the folder fallback
        except FileNotFoundError:
            target.parent.mkdir(parents=True, exist_ok=True)
            out = open(temp, "xb")  # noqa: SIM115
        try:
            with out:
                fill(out)
            os.replace(temp, target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return key

    def put_bytes(self, key: str, data: bytes) -> str:
        return self._write(key, lambda out: out.write(data))

    def put_file(self, key: str, path: Path) -> str:
        def fill(out: BinaryIO) -> None:
            with open(path, "rb") as source:
                shutil.copyfileobj(source, out, 1024 * 1024)

        return self._write(key, fill)

    def move_file(self, key: str, path: Path) -> str:
        """A rename when the scratch file is on the store's filesystem: ingest copies nothing."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(path, target)
        except OSError:
            return super().move_file(key, path)
        return key

    def get_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def open(self, key: str) -> BinaryIO:
        return open(self.path(key), "rb")

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.is_dir():
            return
        for directory, _, files in os.walk(base):
            for name in sorted(files):
                if not name.startswith(".tmp-"):
                    yield Path(directory, name).relative_to(self.root).as_posix()

    def copy(self, source: str, destination: str, tier: Tier = "hot") -> str:
        """Hard-link when possible: a tiered copy of a local blob costs no space."""
        target = self.path(destination)
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_path(target)
        try:
            os.link(self.path(source), temp)
        except OSError:
            shutil.copyfile(self.path(source), temp)
        os.replace(temp, target)
        return destination

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.list(prefix))
        for key in keys:
            self.path(key).unlink(missing_ok=True)
        return len(keys)

    def location(self, key: str) -> str:
        return str(self.path(key)) if key else str(self.root)
