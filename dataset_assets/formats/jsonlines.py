"""`manifest.jsonl` for the whole dataset and a Hugging Face `metadata.jsonl` in each tier."""

import json
from pathlib import Path
from typing import IO

from dataset_assets.formats.samples import Sample
from dataset_assets.storage.blobs import BlobStore


class ManifestWriter:
    """One JSON line per image: the dataset's manifest and the tiers' image-folder metadata.

    `manifest.jsonl` at the dataset root names each image by its path from the root
    (`hot/cats/x.jpg`). `hot/metadata.jsonl` and `cold/metadata.jsonl` carry the same columns
    with `file_name` relative to their tier folder, which is what
    `datasets.load_dataset("imagefolder", data_dir=...)` reads, so both the whole dataset and one
    tier load with every column.
    """

    def __init__(self, blobs: BlobStore, prefix: str, scratch: Path):
        self.blobs, self.prefix, self.scratch = blobs, prefix, scratch
        self._files: dict[str, IO[str]] = {}

    def _file(self, name: str) -> IO[str]:
        if name not in self._files:
            path = self.scratch / name.replace("/", "__")
            self._files[name] = open(path, "w")  # noqa: SIM115 - closed in close()
        return self._files[name]

    def add(self, sample: Sample) -> None:
        record = sample.record
        self._file("manifest.jsonl").write(json.dumps(record) + "\n")
        in_tier = {**record, "file_name": record["file_name"].split("/", 1)[1]}
        self._file(f"{sample.tier}/metadata.jsonl").write(json.dumps(in_tier) + "\n")

    def close(self) -> list[str]:
        self._file("manifest.jsonl")
        written = []
        for name, handle in self._files.items():
            handle.close()
            written.append(self.blobs.put_file(f"{self.prefix}/{name}", Path(handle.name)))
        return written
