"""Coarse shards for the heavy per-image stages: planned from the image count, resumable.

Each image has a `bucket` (the first 16 bits of its id), so a shard is a bucket range: it selects
its images with one indexed range query, whatever the dataset's size. Tens to a few hundred shards
per dataset keep Dagster's fan-out cheap; a pool inside the shard (`pools`) keeps every
core busy.
"""

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from dagster import DynamicOutput, OpExecutionContext

from dataset_assets.stages.pools import PoolKind, pool_for, run_each, worker_count
from dataset_assets.stages.tracking import WAITING_STATUS, start_stage
from dataset_assets.storage.metadata import MetadataStore

BUCKETS = 1 << 16
MAX_SHARDS = 256


@dataclass(frozen=True)
class Shard:
    """A bucket range of one dataset plus the stage settings its worker needs.

    `ahead` holds the settings of a later stage that the worker may run in the same pass (the
    transform, for validation), or is empty.
    """

    index: int
    total: int
    low: int
    high: int
    settings: dict[str, Any] = field(default_factory=dict)
    ahead: dict[str, Any] = field(default_factory=dict)

    @property
    def mapping_key(self) -> str:
        return f"shard_{self.index:03d}"


def bucket_of(image_id: str) -> int:
    return int(image_id[:4], 16)


def plan_shards(
    count: int,
    images_per_shard: int,
    settings: dict[str, Any],
    max_shards: int = MAX_SHARDS,
    ahead: dict[str, Any] | None = None,
) -> list[Shard]:
    """Split the bucket space into as many equal ranges as the image count calls for."""
    total = max(1, min(max_shards, -(-count // images_per_shard)))
    edges = [round(i * BUCKETS / total) for i in range(total + 1)]
    return [
        Shard(i, total, edges[i], edges[i + 1], settings, dict(ahead or {})) for i in range(total)
    ]


def start_sharded_stage(
    context: OpExecutionContext,
    store: MetadataStore,
    stage: str,
    settings: dict[str, Any],
    count: int,
    images_per_shard: int,
    ahead: dict[str, Any] | None = None,
) -> Iterator[DynamicOutput[Shard]]:
    """Record the stage as running with its settings (where the merge step finds them), then
    one dynamic output per shard for the stage's shard op to fan out over."""
    start_stage(store, context.partition_key, stage, context.run.run_id, settings, count)
    for shard in plan_shards(count, images_per_shard, settings, ahead=ahead):
        yield DynamicOutput(shard, mapping_key=shard.mapping_key)


def process_shard(
    context: OpExecutionContext,
    store: MetadataStore,
    shard: Shard,
    *,
    stage: str,
    fields: tuple[str, ...],
    work: Callable[[dict[str, Any]], dict[str, Any]],
    on_crash: Callable[[dict[str, Any]], dict[str, Any]],
    workers: int,
    pool: PoolKind,
) -> dict[str, int]:
    """Run `work` on the shard's images the stage has still to do, and write back what it returns.

    Only images not yet done are selected, so a retried shard resumes where it stopped; results
    are written in bulk batches as they complete. `on_crash` gives the fields of an image that
    killed its worker process. Returns how many images reached each status.
    """
    todo = list(
        store.iter_images(
            context.partition_key,
            status=WAITING_STATUS[stage],
            bucket_range=(shard.low, shard.high),
            fields=("image_id", *fields),
        )
    )
    statuses: Counter[str] = Counter()
    count = worker_count(workers)

    def results() -> Iterator[tuple[str, dict[str, Any]]]:
        for doc, changes in run_each(work, todo, count, pool, on_crash):
            statuses[changes["status"]] += 1
            yield doc["image_id"], changes

    store.update_images(context.partition_key, results())
    context.log.info(
        f"{shard.mapping_key}: {len(todo)} images ({pool_for(pool, len(todo), count)}, "
        f"{count} workers), {dict(statuses)}"
    )
    return dict(statuses)
