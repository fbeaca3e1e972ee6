"""The small reference that passes between stages instead of the images themselves."""

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Manifest:
    """What a stage produced for one dataset: how many images, a checksum over them, its figures.

    The images are in the blob store and their records in the metadata store; a downstream stage
    reads them from there, so this object stays a few hundred bytes whatever the dataset's size.
    """

    dataset: str
    stage: str
    count: int
    checksum: str
    summary: dict[str, Any] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> "Manifest":
        return cls(
            **{name: doc[name] for name in ("dataset", "stage", "count", "checksum", "summary")}
        )


def checksum(lines: Iterable[str]) -> str:
    """A digest over a stage's records in a stable order: equal outputs give equal checksums."""
    digest = hashlib.sha256()
    for line in lines:
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]
