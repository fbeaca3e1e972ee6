"""Parquet output: image bytes and every metadata column, sharded, for `load_dataset("parquet")`."""

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dataset_assets.formats.samples import Sample
from dataset_assets.imaging.quality import ISSUE_THRESHOLDS
from dataset_assets.storage.blobs import BlobStore

ROW_GROUP_ROWS = 100
"""Rows per row group: what a streaming reader holds at once (Hugging Face writes image data in
groups of about this size)."""

SCHEMA = pa.schema(
    [
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("file_name", pa.string()),
        ("label", pa.string()),
        ("source", pa.string()),
        ("url", pa.string()),
        ("caption", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("format", pa.string()),
        ("sha256", pa.string()),
        ("phash", pa.string()),
        ("tier", pa.string()),
        ("issues", pa.struct([(name, pa.bool_()) for name in ISSUE_THRESHOLDS])),
        ("quality", pa.struct([(name, pa.float64()) for name in ISSUE_THRESHOLDS])),
        ("cluster", pa.string()),
    ],
    # Tells `datasets` that `image` is an Image feature, so rows decode to PIL images.
    metadata={"huggingface": json.dumps({"info": {"features": {"image": {"_type": "Image"}}}})},
)


class ParquetWriter:
    """Writes `parquet/<tier>-NNNNN.parquet` files of `shard_rows` images each.

    Rows are buffered one row group at a time, so memory holds at most `ROW_GROUP_ROWS` images;
    each tier has its own files, so `data_files={"hot": "parquet/hot-*.parquet"}` loads a tier as
    a split.
    """

    def __init__(self, blobs: BlobStore, prefix: str, scratch: Path, shard_rows: int):
        self.blobs, self.prefix, self.scratch, self.shard_rows = blobs, prefix, scratch, shard_rows
        self.written: list[str] = []
        self._shards: dict[str, int] = {}
        self._writer: pq.ParquetWriter | None = None
        self._path: Path | None = None
        self._tier = ""
        self._rows: list[dict[str, Any]] = []
        self._in_shard = 0

    def add(self, sample: Sample) -> None:
        if self._writer is not None and (
            sample.tier != self._tier or self._in_shard == self.shard_rows
        ):
            self._finish_shard()
        if self._writer is None:
            self._open_shard(sample.tier)
        name = sample.record["file_name"].rsplit("/", 1)[-1]
        self._rows.append({**sample.record, "image": {"bytes": sample.data, "path": name}})
        self._in_shard += 1
        if len(self._rows) == ROW_GROUP_ROWS:
            self._write_rows()

    def close(self) -> list[str]:
        if self._writer is not None:
            self._finish_shard()
        return self.written

    def _open_shard(self, tier: str) -> None:
        number = self._shards.get(tier, 0)
        self._shards[tier] = number + 1
        self._tier, self._in_shard = tier, 0
        self._path = self.scratch / f"{tier}-{number:05d}.parquet"
        self._writer = pq.ParquetWriter(self._path, SCHEMA)

    def _write_rows(self) -> None:
        assert self._writer is not None
        self._writer.write_batch(pa.RecordBatch.from_pylist(self._rows, schema=SCHEMA))
        self._rows = []

    def _finish_shard(self) -> None:
        assert self._writer is not None and self._path is not None
        if self._rows:
            self._write_rows()
        self._writer.close()
        self.written.append(self.blobs.put_file(f"{self.prefix}/{self._path.name}", self._path))
        self._path.unlink()
        self._writer = None
