"""WebDataset output: the finished dataset as tar shards that stream straight into training."""

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from dataset_assets.storage.blobs import BlobStore


class WebDatasetWriter:
    """Writes samples (`<key>.<ext>`, `<key>.cls`, `<key>.json`) into tar shards of N samples.

    Each shard is assembled in the step's scratch folder and uploaded when full, so at most one
    shard is on local disk and nothing is held in memory beyond the current sample.
    """

    def __init__(self, blobs: BlobStore, prefix: str, scratch: Path, shard_size: int):
        self.blobs, self.prefix, self.scratch, self.shard_size = blobs, prefix, scratch, shard_size
        self.shards: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def add(self, key: str, image: bytes, extension: str, label: str, meta: dict[str, Any]) -> None:
        if self._tar is None:
            self._tar = tarfile.open(self._path, "w")  # noqa: SIM115 - closed in _flush
        for name, data in (
            (f"{key}.{extension}", image),
            (f"{key}.cls", f"{label}\n".encode()),
            (f"{key}.json", json.dumps(meta, sort_keys=True).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        if self._count == self.shard_size:
            self._flush()

    def close(self) -> list[str]:
        """Upload the last, partly filled shard; the keys of every shard written."""
        if self._tar is not None:
            self._flush()
        return self.shards

    @property
    def _path(self) -> Path:
        return self.scratch / f"shard-{len(self.shards):06d}.tar"

    def _flush(self) -> None:
        assert self._tar is not None
        self._tar.close()
        path = self._path
        self.shards.append(self.blobs.put_file(f"{self.prefix}/{path.name}", path))
        path.unlink()
        self._tar, self._count = None, 0
