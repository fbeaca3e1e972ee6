"""One output image of a finished dataset, as every format writer sees it."""

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

from dataset_assets.imaging.quality import ISSUE_THRESHOLDS


@dataclass
class Sample:
    """An image's record (its fields in `manifest.jsonl`) and its bytes, read at most once.

    `record["file_name"]` is the image's path relative to the dataset root, e.g.
    `hot/cats/tabby_0a1b2c3d.jpg`; formats that embed the image share one read of the blob.
    """

    record: dict[str, Any]
    read: Callable[[], bytes] = field(repr=False)

    @cached_property
    def data(self) -> bytes:
        return self.read()

    @property
    def tier(self) -> str:
        return self.record["tier"]

    @property
    def extension(self) -> str:
        return self.record["file_name"].rsplit(".", 1)[-1]


class FormatWriter(Protocol):
    """What every format writer does: take the samples in order, then upload its files."""

    def add(self, sample: Sample) -> None: ...

    def close(self) -> list[str]:
        """The keys of the files written."""
        ...


def image_record(doc: dict[str, Any], output: dict[str, Any], tier: str) -> dict[str, Any]:
    """The per-image columns every format carries: label, source, size, hashes, quality, cluster.

    `quality` has every issue score (0 best, 1 worst) and `issues` says which of them were flagged,
    so a training job can filter on them without the metadata store. Every column has the same
    type on every row (an empty string, never null, for a missing URL or cluster), because
    Hugging Face `datasets` infers each tier's `metadata.jsonl` types separately and refuses to
    join tiers whose types differ.
    """
    found = doc.get("validation") or {}
    scores, flagged = found.get("issues") or {}, set(found.get("flagged") or ())
    return {
        "file_name": f"{tier}/{output['name']}",
        "label": doc.get("label") or "",
        "source": doc["source"],
        "url": doc.get("origin") or "",
        "caption": doc.get("caption") or "",
        "width": output["width"],
        "height": output["height"],
        "format": output["format"],
        "sha256": doc.get("sha256") or "",
        "phash": found.get("phash") or "",
        "tier": tier,
        "issues": {name: name in flagged for name in ISSUE_THRESHOLDS},
        "quality": {name: float(scores.get(name, 0.0)) for name in ISSUE_THRESHOLDS},
        "cluster": doc.get("cluster") or "",
    }
