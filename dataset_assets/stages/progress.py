"""Images done / total of a running stage, for `dataset-assets status --watch`.

Each stage of a run keeps one small document in the metadata store's `progress` collection
(dataset, stage, run_id, done, total): written when the stage starts, at most once a second
while it works, and when it finishes. Following a run so costs a few writes per stage, nothing
next to the per-image work. The sharded stages write nothing while their shards run: each
image's status already counts down (`WAITING_STATUS`), whichever process or pod ran its shard,
so their done count is read from the images.
"""

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from dataset_assets.storage.metadata import MetadataStore

REPORT_INTERVAL_S = 1.0

T = TypeVar("T")


def report_progress(
    store: MetadataStore,
    dataset: str,
    stage: str,
    run_id: str,
    done: int,
    total: int | None = None,
    **fields: Any,
) -> None:
    """Record that `stage` of run `run_id` has done `done` of `total` images (None: not known
    yet, as while ingest reads a stream)."""
    store.save_progress(dataset, stage, {"run_id": run_id, "done": done, "total": total, **fields})


class StageProgress:
    """Counts the images a stage has done and reports them every `interval_s` seconds."""

    def __init__(
        self,
        store: MetadataStore,
        dataset: str,
        stage: str,
        run_id: str,
        total: int | None = None,
        *,
        interval_s: float = REPORT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._where = (store, dataset, stage, run_id)
        self.total = total
        self.done = 0
        self._interval_s = interval_s
        self._clock = clock
        self._reported = clock()

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = self._clock()
        if now - self._reported >= self._interval_s:
            self._reported = now
            report_progress(*self._where, self.done, self.total)

    def counted(self, items: Iterable[T]) -> Iterator[T]:
        """The items, each counted as done once the caller asks for the next one."""
        for item in items:
            yield item
            self.advance()
