"""Coarse shards for the heavy per-image stages, and the thread pool inside each shard.

Each image has a `bucket` (the first 16 bits of its id), so a shard is a bucket range: it selects
its images with one indexed range query, whatever the dataset's size. Tens to a few hundred shards
per dataset keep Dagster's fan-out cheap; a pool inside the shard keeps every core busy.
"""

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dagster import DynamicOutput, OpExecutionContext

from dataset_assets.stages.tracking import WAITING_STATUS, start_stage
from dataset_assets.storage.metadata import MetadataStore

BUCKETS = 1 << 16
MAX_SHARDS = 256

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Shard:
    """A bucket range of one dataset plus the stage settings its worker needs."""

    index: int
    total: int
    low: int
    high: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def mapping_key(self) -> str:
        return f"shard_{self.index:03d}"


def bucket_of(image_id: str) -> int:
    return int(image_id[:4], 16)


def plan_shards(
    count: int, images_per_shard: int, settings: dict[str, Any], max_shards: int = MAX_SHARDS
) -> list[Shard]:
    """Split the bucket space into as many equal ranges as the image count calls for."""
    total = max(1, min(max_shards, -(-count // images_per_shard)))
    edges = [round(i * BUCKETS / total) for i in range(total + 1)]
    return [Shard(i, total, edges[i], edges[i + 1], settings) for i in range(total)]


def start_sharded_stage(
    context: OpExecutionContext,
    store: MetadataStore,
    stage: str,
    settings: dict[str, Any],
    count: int,
    images_per_shard: int,
) -> Iterator[DynamicOutput[Shard]]:
    """Record the stage as running with its settings (where the merge step finds them), then
    one dynamic output per shard for the stage's shard op to fan out over."""
    start_stage(store, context.partition_key, stage, context.run.run_id, settings, count)
    for shard in plan_shards(count, images_per_shard, settings):
        yield DynamicOutput(shard, mapping_key=shard.mapping_key)


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def worker_count(configured: int, cpu_max: Path = CPU_MAX) -> int:
    """Threads per shard: as configured, else the cores this process may really use.

    In a container the CPU limit (cgroup v2 `cpu.max`) counts, not the node's core count, so a
    2-CPU pod on a 64-core node runs 2 threads, not 64.
    """
    if configured:
        return configured
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, int(quota) // int(period)))


def map_in_pool(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Results of `fn` over `items` as they complete, with at most 2 x workers in flight.

    Bounded submission keeps memory flat however many images a shard holds; Pillow releases the
    GIL while decoding, resizing and encoding, so threads scale with cores.
    """
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: set[Future[R]] = set()
        for item in items:
            pending.add(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        for future in pending:
            yield future.result()


def process_shard(
    context: OpExecutionContext,
    store: MetadataStore,
    shard: Shard,
    *,
    stage: str,
    fields: tuple[str, ...],
    work: Callable[[dict[str, Any]], dict[str, Any]],
    workers: int,
) -> dict[str, int]:
    """Run `work` on the shard's images the stage has still to do, and write back what it returns.

    Only images not yet done are selected, so a retried shard resumes where it stopped; results
    are written in bulk batches as they complete. Returns how many images reached each status.
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

    def results() -> Iterator[tuple[str, dict[str, Any]]]:
        done = map_in_pool(lambda doc: (doc["image_id"], work(doc)), todo, worker_count(workers))
        for image_id, changes in done:
            statuses[changes["status"]] += 1
            yield image_id, changes

    store.update_images(context.partition_key, results())
    context.log.info(f"{shard.mapping_key}: {len(todo)} images, {dict(statuses)}")
    return dict(statuses)
