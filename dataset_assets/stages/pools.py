"""Where a shard's per-image work runs: in the step's own thread, in threads, or in processes.

Pillow releases the GIL while it decodes, resizes and encodes, but hashing, quality scores, numpy
noise and the Python around them hold it, so threads keep about one core busy however many the
machine has. A shard big enough to pay for it runs its images in worker processes instead: one
pool per step process, forked from a server that has already imported the imaging code, reused by
every shard of the run. Only image documents and small result dicts cross the process boundary;
each worker reads and writes the blobs itself.

A worker that dies (a decoder crashing on a hostile file) takes only its own image down: the
images it had in flight are run again one per fresh worker, and the one that kills its worker
again gets the stage's crash result instead of stopping the dataset.
"""

import multiprocessing
import os
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool, ProcessPoolExecutor
from functools import cache
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")

PoolKind = Literal["auto", "threads", "processes"]
PROCESS_MIN_IMAGES_PER_WORKER = 16
"""`auto` picks processes from this many images per worker: below it, starting the pool costs
more than the threads lose."""
CHUNK = 8
"""Images per task sent to a worker process, so the per-task round trip stays small."""
WORKER_MODULES = [
    "__main__",
    "dataset_assets.stages.per_image",
    "dataset_assets.imaging.verify",
]
"""Imported once by the fork server, so each worker starts with the imaging code loaded (and
with the main module, which a worker would otherwise import again on its own): `scipy.fftpack`
alone, which the perceptual hashes need, costs ~0.3 s."""
CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cores(cpu_max: Path = CPU_MAX) -> int:
    """The cores this process may really use.

    In a container the CPU limit (cgroup v2 `cpu.max`) counts, not the node's core count, so a
    2-CPU pod on a 64-core node counts 2, not 64.
    """
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()
    except (OSError, ValueError):
        return cores
    return cores if quota == "max" else max(1, min(cores, int(quota) // int(period)))


def worker_count(configured: int, cpu_max: Path = CPU_MAX) -> int:
    """Workers per shard: as configured, else one per usable core."""
    return configured or usable_cores(cpu_max)


def pool_for(
    kind: PoolKind, images: int, workers: int
) -> Literal["inline", "threads", "processes"]:
    """How a shard of `images` runs with `workers`: `auto` uses processes when the shard is
    large enough and more than one core is there to use."""
    if workers <= 1 or images <= 1:
        return "inline"
    if kind == "auto":
        return "processes" if images >= PROCESS_MIN_IMAGES_PER_WORKER * workers else "threads"
    return kind


def map_in_pool(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """Results of `fn` over `items` in threads as they complete, at most 2 x workers in flight.

    Bounded submission keeps memory flat however many items there are.
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


def run_each(
    fn: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    kind: PoolKind,
    on_crash: Callable[[T], R],
) -> Iterator[tuple[T, R]]:
    """`(item, fn(item))` for every item, run as `pool_for` decides; processes never number
    more than the usable cores, whatever `workers` says."""
    chosen = pool_for(kind, len(items), workers)
    if chosen == "processes":
        yield from map_in_processes(fn, items, min(workers, usable_cores()), on_crash)
    else:
        threads = workers if chosen == "threads" else 1
        yield from map_in_pool(lambda item: (item, fn(item)), items, threads)


def map_in_processes(
    fn: Callable[[T], R], items: Sequence[T], workers: int, on_crash: Callable[[T], R]
) -> Iterator[tuple[T, R]]:
    """`(item, fn(item))` from worker processes, in chunks, at most 2 x workers chunks in flight.

    `fn` and the items are pickled: `fn` must be a module-level function or a `partial` of one.
    When a worker dies, the chunks in flight run again one item per fresh worker, and the rest
    goes on in a fresh pool.
    """
    done = 0
    while done < len(items):
        lost: list[T] = []
        pool = _process_pool(workers)
        done = yield from _until_broken(pool, fn, items, done, workers, lost)
        if lost:
            del _pools[workers]
            pool.shutdown(wait=False, cancel_futures=True)
            yield from _one_by_one(fn, lost, on_crash)


def _until_broken(
    pool: ProcessPoolExecutor,
    fn: Callable[[T], R],
    items: Sequence[T],
    start: int,
    workers: int,
    lost: list[T],
) -> Generator[tuple[T, R], None, int]:
    """Results from `items[start:]` until the pool breaks (the chunks it lost go to `lost`);
    returns where the items not yet sent start."""
    pending: dict[Future[list[R]], Sequence[T]] = {}

    def collect(futures: Iterable[Future[list[R]]]) -> Iterator[tuple[T, R]]:
        for future in futures:
            chunk = pending.pop(future)
            try:
                yield from zip(chunk, future.result(), strict=True)
            except BrokenProcessPool:
                lost.extend(chunk)

    while start < len(items) and not lost:
        chunk = items[start : start + CHUNK]
        start += len(chunk)
        try:
            pending[pool.submit(_run_chunk, fn, chunk)] = chunk
        except BrokenProcessPool:
            lost.extend(chunk)
        if len(pending) >= 2 * workers:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            yield from collect(finished)
    yield from collect(list(pending))
    return start


def _run_chunk(fn: Callable[[T], R], chunk: Sequence[T]) -> list[R]:
    return [fn(item) for item in chunk]


def _one_by_one(
    fn: Callable[[T], R], items: Sequence[T], on_crash: Callable[[T], R]
) -> Iterator[tuple[T, R]]:
    """Each item again in a fresh worker of its own, so only the one that kills it is lost."""
    for item in items:
        with ProcessPoolExecutor(1, mp_context=_context()) as pool:
            try:
                yield item, pool.submit(fn, item).result()
            except BrokenProcessPool:
                yield item, on_crash(item)


@cache
def _context() -> ForkServerContext:
    """Fork-server workers: the parent's threads and open connections never reach a worker, and
    forking from the server (which imported `WORKER_MODULES` once) starts one in milliseconds."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WORKER_MODULES)
    return context


_pools: dict[int, ProcessPoolExecutor] = {}


def _process_pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ProcessPoolExecutor(workers, mp_context=_context())
    return _pools[workers]


def shutdown() -> None:
    """Stop the worker processes this process started, once its stages are done."""
    while _pools:
        _pools.popitem()[1].shutdown(cancel_futures=True)
