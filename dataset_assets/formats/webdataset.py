"""WebDataset output: the finished dataset as tar shards that stream straight into training."""

import io
import json
import tarfile
from pathlib import Path

from dataset_assets.formats.samples import Sample
from dataset_assets.storage.blobs import BlobStore


class WebDatasetWriter:
    """Writes samples (`<key>.<ext>`, `<key>.cls`, `<key>.json`) into tar shards of N samples.

    `.cls` is the class index (labels in sorted order, as torchvision's ImageFolder numbers them)
    so `webdataset`'s decoders read it as an int; `.json` is the image's record, label name and
    `file_name` from the dataset root included. `index.json` lists the shards and their sample
    counts in the `wids` shard-index format, for random access. Each shard is assembled in the
    step's scratch folder and uploaded when full, so at most one shard is on local disk and
    nothing is held in memory beyond the current sample.
    """

    def __init__(
        self, blobs: BlobStore, prefix: str, scratch: Path, shard_size: int, classes: list[str]
    ):
        self.blobs, self.prefix, self.scratch, self.shard_size = blobs, prefix, scratch, shard_size
        self.class_index = {label: index for index, label in enumerate(sorted(classes))}
        self.shards: list[dict[str, str | int]] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    def add(self, sample: Sample) -> None:
        if self._tar is None:
            self._tar = tarfile.open(self._path, "w")  # noqa: SIM115 - closed in _flush
        record = sample.record
        key = record["file_name"].rsplit(".", 1)[0].replace("/", "__").replace(".", "_")
        for name, data in (
            (f"{key}.{sample.extension}", sample.data),
            (f"{key}.cls", f"{self.class_index.get(record['label'], -1)}\n".encode()),
            (f"{key}.json", json.dumps(record, sort_keys=True).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            self._tar.addfile(info, io.BytesIO(data))
        self._count += 1
        if self._count == self.shard_size:
            self._flush()

    def close(self) -> list[str]:
        """Upload the last, partly filled shard and the index; the keys of every file written."""
        if self._tar is not None:
            self._flush()
        if not self.shards:
            return []
        index = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "shardlist": self.shards}
        keys = [f"{self.prefix}/{shard['url']}" for shard in self.shards]
        keys.append(
            self.blobs.put_bytes(f"{self.prefix}/index.json", json.dumps(index, indent=1).encode())
        )
        return keys

    @property
    def _path(self) -> Path:
        return self.scratch / f"shard-{len(self.shards):06d}.tar"

    def _flush(self) -> None:
        assert self._tar is not None
        self._tar.close()
        path = self._path
        self.blobs.put_file(f"{self.prefix}/{path.name}", path)
        self.shards.append({"url": path.name, "nsamples": self._count})
        path.unlink()
        self._tar, self._count = None, 0
