"""Deduplication: exact and near-duplicate clusters, and which image of each cluster survives."""

import uuid
from array import array
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import chain
from typing import Any

import numpy as np
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    asset,
    asset_check,
)

from dataset_assets.imaging.candidates import candidate_pairs
from dataset_assets.imaging.hashing import WINDOWS
from dataset_assets.imaging.neardup import cluster_pairs, find_near_duplicate_pairs, hash_to_int
from dataset_assets.imaging.verify import Evidence, check_pair, forget_run
from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import DedupConfig
from dataset_assets.stages.gates import gate, gate_result
from dataset_assets.stages.policies import METADATA_RETRY
from dataset_assets.stages.pools import PoolKind, run_each, worker_count
from dataset_assets.stages.progress import StageProgress
from dataset_assets.stages.quality_report import stop_with_report
from dataset_assets.stages.request_settings import stage_config
from dataset_assets.stages.tracking import finish_stage, start_stage
from dataset_assets.storage.blobs import BlobStore
from dataset_assets.storage.metadata import MetadataStore
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource

PASSED = ("valid", "unique", "duplicate")
"""Statuses of images that passed validation: a retry recomputes clusters over all of them."""

_KEY_BATCH = 500

_BYTES_PER_PIXEL_TOLERANCE = 1.1
"""Bytes per pixel within 10% of the most rank alike for `keep: best`: the next criteria decide."""

CLUSTER_FIELDS = ("cluster", "cluster_kind", "duplicate_of", "distance", "evidence")


@dataclass
class HashTable:
    """Per-image columns as numpy arrays: all dedup holds in memory, ~130 bytes an image.

    Rows are in source-path order, so a row's index is also its rank for the keep policies.
    """

    image_ids: np.ndarray  # fixed-width bytes
    origin: np.ndarray  # int16: 0 = this dataset, k = the k-th dataset of `against`
    exact: np.ndarray  # uint64: first 64 bits of the file sha256
    pixels: np.ndarray  # uint64: first 64 bits of the decoded-pixel hash
    perceptual: np.ndarray  # uint64
    has_perceptual: np.ndarray  # bool
    mirror: np.ndarray  # uint64: the perceptual hash of the mirror image
    gradient: np.ndarray  # uint64: the difference hash
    windows: np.ndarray  # (n, len(WINDOWS)) uint64: hashes of the windows, for crops
    area: np.ndarray  # int64
    quality: np.ndarray  # int8: estimated encoding quality, 100 lossless, -1 unknown
    sharpness: np.ndarray  # float64
    size_bytes: np.ndarray  # int64

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, dict[str, Any]]]) -> "HashTable":
        """Build the columns from a stream of (origin, image record) without keeping records."""
        columns: dict[str, array] = {
            "origin": array("h"),
            "exact": array("Q"),
            "pixels": array("Q"),
            "perceptual": array("Q"),
            "has_perceptual": array("b"),
            "mirror": array("Q"),
            "gradient": array("Q"),
            "windows": array("Q"),
            "area": array("q"),
            "quality": array("b"),
            "sharpness": array("d"),
            "size_bytes": array("q"),
        }
        image_ids = bytearray()
        for origin, row in rows:
            found = row.get("validation") or {}
            columns["origin"].append(origin)
            image_ids += row["image_id"].encode().ljust(24, b" ")
            columns["exact"].append(_prefix(row.get("sha256")))
            columns["pixels"].append(_prefix(found.get("pixel_hash")))
            columns["perceptual"].append(_hash(found.get("phash")))
            columns["has_perceptual"].append(bool(found.get("phash")))
            columns["mirror"].append(_hash(found.get("mirror_hash")))
            columns["gradient"].append(_hash(found.get("gradient_hash")))
            windows = found.get("window_hashes") or ()
            columns["windows"].extend(_hash(value) for value in windows)
            columns["windows"].extend(0 for _ in range(len(WINDOWS) - len(windows)))
            quality = found.get("encoding_quality")
            columns["quality"].append(-1 if quality is None else int(quality))
            columns["area"].append((found.get("width") or 0) * (found.get("height") or 0))
            columns["sharpness"].append(found.get("sharpness") or 0.0)
            columns["size_bytes"].append(row.get("size_bytes") or 0)
        arrays = {
            name: np.frombuffer(column, dtype=column.typecode)
            if len(column)
            else np.empty(0, dtype=column.typecode)
            for name, column in columns.items()
        }
        return cls(
            image_ids=np.frombuffer(bytes(image_ids), dtype="S24"),
            origin=arrays["origin"].astype(np.int16),
            exact=arrays["exact"].astype(np.uint64),
            pixels=arrays["pixels"].astype(np.uint64),
            perceptual=arrays["perceptual"].astype(np.uint64),
            has_perceptual=arrays["has_perceptual"].astype(bool),
            mirror=arrays["mirror"].astype(np.uint64),
            gradient=arrays["gradient"].astype(np.uint64),
            windows=arrays["windows"].astype(np.uint64).reshape(-1, len(WINDOWS)),
            area=arrays["area"].astype(np.int64),
            quality=arrays["quality"].astype(np.int8),
            sharpness=arrays["sharpness"].astype(np.float64),
            size_bytes=arrays["size_bytes"].astype(np.int64),
        )

    def image_id(self, index: int) -> str:
        return self.image_ids[index].decode().rstrip()


def _prefix(value: str | None) -> int:
    return int(value[:16], 16) if value else 0


def _hash(value: str | None) -> int:
    return hash_to_int(value) if value else 0


def _equal_pairs(keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Pairs (first, other) for every group of equal keys: exact duplicates in linear time."""
    index = np.flatnonzero(valid)
    if index.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    _, first, inverse = np.unique(keys[index], return_index=True, return_inverse=True)
    leaders = index[first][inverse]
    pairs = np.stack([leaders, index], axis=1)
    return pairs[pairs[:, 0] != pairs[:, 1]].astype(np.int64)


Verifier = Callable[[np.ndarray, np.ndarray], list[Evidence | None]]
"""Confirms candidate pairs: rows `(i, j)` of table indices and a mirror flag per row."""


def find_clusters(
    table: HashTable, config: DedupConfig, verifier: Verifier | None = None
) -> list[dict[str, Any]]:
    """Clusters of two or more images, each with its keeper and members' kind and evidence.

    Exact pairs (same file or same pixels) and pairs within `threshold` bits of perceptual hash
    are duplicates outright. With a `verifier`, hash neighbours up to `candidate_radius` bits
    (and mirror matches with `flips`) are candidates, duplicates only once it confirms them.
    """
    n = len(table.image_ids)
    accepted = [
        _with_method(_equal_pairs(table.exact, table.exact != 0), "same file"),
        _with_method(_equal_pairs(table.pixels, table.pixels != 0), "same pixels"),
    ]
    if config.near:
        accepted.extend(_near_pairs(table, config, verifier))
    pairs = np.concatenate([rows for rows, _ in accepted]) if n else np.empty((0, 2), np.int64)
    evidence: dict[tuple[int, int], dict[str, Any]] = {}
    edited: set[int] = set()
    for rows, records in accepted:
        for (i, j), record in zip(rows.tolist(), records, strict=True):
            evidence.setdefault((min(i, j), max(i, j)), record)
            if record.get("edited") is not None:
                edited.add((i, j)[record["edited"]])
    labels = cluster_pairs(n, pairs)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    clusters = []
    for members in np.split(order, bounds):
        if members.size < 2 or table.origin[members].min() > 0:
            continue
        keeper = _keeper(table, members, config.keep, edited)
        clusters.append(
            {
                "keeper": int(keeper),
                "members": [
                    {
                        "index": int(i),
                        "kind": _kind(table, keeper, i),
                        "distance": int(
                            np.bitwise_count(table.perceptual[keeper] ^ table.perceptual[i])
                        ),
                        "evidence": _member_evidence(evidence, int(keeper), int(i), members),
                    }
                    for i in members
                    if i != keeper
                ],
            }
        )
    return clusters


def _with_method(rows: np.ndarray, method: str) -> tuple[np.ndarray, list[dict[str, Any]]]:
    return rows, [{"method": method}] * len(rows)


def _near_pairs(
    table: HashTable, config: DedupConfig, verifier: Verifier | None
) -> list[tuple[np.ndarray, list[dict[str, Any]]]]:
    """Near pairs with their evidence.

    Without verification, pairs within `threshold` bits of perceptual hash. With it, every hash
    neighbour up to `candidate_radius` (those within `threshold` too: quarters of one dark
    photo or two frames of a video hash alike) counts only once the verifier confirms it.
    """
    with_hash = np.flatnonzero(table.has_perceptual)
    perceptual = table.perceptual[with_hash]
    if verifier is None or not config.verify or config.candidate_radius <= config.threshold:
        close = find_near_duplicate_pairs(perceptual, config.threshold)
        distance = np.bitwise_count(perceptual[close[:, 0]] ^ perceptual[close[:, 1]])
        records = [{"method": "phash", "distance": int(d)} for d in distance.tolist()]
        return [(with_hash[close], records)]
    candidates = candidate_pairs(
        perceptual,
        table.gradient[with_hash],
        table.windows[with_hash],
        table.mirror[with_hash] if config.flips else None,
        config.candidate_radius,
        config.max_verified_pairs,
    )
    rows = with_hash[candidates.pairs]
    results = verifier(rows, candidates.flipped)
    confirmed = [k for k, result in enumerate(results) if result is not None]
    records = [
        {**results[k].as_record(), "hash_distance": int(candidates.distance[k])} for k in confirmed
    ]
    return [(rows[confirmed].reshape(-1, 2), records)]


def _member_evidence(
    evidence: dict[tuple[int, int], dict[str, Any]], keeper: int, member: int, members: np.ndarray
) -> dict[str, Any] | None:
    """What matched `member` to the keeper, or to the cluster member it was matched with.

    `edited` says whether `member` is the rotated or cropped side of that pair (None: not told).
    """
    others = [keeper, *(other for other in members.tolist() if other not in (keeper, member))]
    for other in others:
        pair = (min(other, member), max(other, member))
        record = evidence.get(pair)
        if record is None:
            continue
        if record.get("edited") is not None:
            record = {**record, "edited": pair[record["edited"]] == member}
        return record if other == keeper else {**record, "matched": int(other)}
    return None


def _keeper(table: HashTable, members: np.ndarray, policy: str, edited: set[int]) -> int:
    """best: the copy most likely to be the source; earliest: first by source path.

    The source has the most pixels (crops and downscales have fewer), then the best encoding
    (lossless, else the highest estimated JPEG quality: re-saves lose quality), then the most
    bytes per pixel (within `_BYTES_PER_PIXEL_TOLERANCE` of the most: one picture saved twice at
    one quality differs by a few percent), then not the side verification found rotated or
    cropped (`edited`); sharpness only breaks what is left, because compression artefacts read
    as sharp, and source order what sharpness leaves.
    An image of a dataset already built always wins: this dataset must not repeat it.
    """
    external = members[table.origin[members] > 0]
    if external.size:
        return int(external.min())
    if policy == "earliest":
        return int(members.min())
    left = members[table.area[members] == table.area[members].max()]
    left = left[table.quality[left] == table.quality[left].max()]
    bytes_per_pixel = table.size_bytes[left] / np.maximum(table.area[left], 1)
    left = left[bytes_per_pixel * _BYTES_PER_PIXEL_TOLERANCE >= bytes_per_pixel.max()]
    unedited = np.array([i for i in left.tolist() if i not in edited], dtype=np.int64)
    left = unedited if unedited.size else left
    return int(left[np.argmax(table.sharpness[left])])


def _kind(table: HashTable, keeper: int, other: int) -> str:
    same_file = table.exact[keeper] == table.exact[other] != 0
    same_pixels = table.pixels[keeper] == table.pixels[other] != 0
    return "exact" if same_file or same_pixels else "near"


def verify_pairs(
    read: Callable[[Hashable], bytes],
    keys: Mapping[int, Hashable] | Sequence[Hashable],
    rows: np.ndarray,
    flipped: np.ndarray,
    workers: int = 0,
    pool: PoolKind = "auto",
) -> list[Evidence | None]:
    """Evidence (or None) for each candidate pair `(i, j)` of `rows`, image `i` read as
    `read(keys[i])`; `flipped` marks mirror matches.

    Pairs run where `pools.run_each` puts them: OpenCV's intensity alignment holds the GIL, so
    threads verify on one core and processes on every core. A pair whose file kills its worker is
    simply not confirmed.
    """
    pairs = [
        (index, keys[i], keys[j], mirror)
        for index, ((i, j), mirror) in enumerate(zip(rows.tolist(), flipped.tolist(), strict=True))
    ]
    results: list[Evidence | None] = [None] * len(pairs)
    run = uuid.uuid4().hex
    check = partial(check_pair, read, run)
    try:
        for pair, evidence in run_each(check, pairs, worker_count(workers), pool, lambda _: None):
            results[pair[0]] = evidence
    finally:
        forget_run(run)
    return results


def _stage_verifier(
    store: MetadataStore,
    blobs: BlobStore,
    table: HashTable,
    datasets: list[str],
    config: DedupConfig,
) -> Verifier:
    """The verifier the stage runs: reads each candidate's original file from the blob store.

    Blob keys are looked up once, for the images in candidate pairs only, before the pairs go to
    the workers (the embedded metadata store is not shared across threads or processes).
    """

    def run(rows: np.ndarray, flipped: np.ndarray) -> list[Evidence | None]:
        keys: dict[int, str] = {}
        involved = np.unique(rows)
        for origin, dataset in enumerate(datasets):
            indices = involved[table.origin[involved] == origin].tolist()
            for start in range(0, len(indices), _KEY_BATCH):
                batch = {table.image_id(i): i for i in indices[start : start + _KEY_BATCH]}
                query = {"image_id": {"$in": list(batch)}}
                fields = ("image_id", "blob_key")
                for doc in store.iter_images(dataset, fields=fields, extra=query):
                    keys[batch[doc["image_id"]]] = doc["blob_key"]
        return verify_pairs(blobs.get_bytes, keys, rows, flipped, config.workers, config.pool)

    return run


@asset(
    partitions_def=datasets_partitions,
    io_manager_key="manifest_io_manager",
    retry_policy=METADATA_RETRY,
    group_name="dataset",
    kinds={"python", "numpy"},
)
def deduplicated_images(
    context: AssetExecutionContext,
    config: DedupConfig,
    metadata: MetadataStoreResource,
    blobs: BlobStoreResource,
    validated_images: Manifest,
) -> Manifest:
    """One image per cluster of exact (file or pixel hash) and near (perceptual hash) duplicates.

    Near duplicates are pairs whose 64-bit perceptual hashes differ in at most `threshold` bits,
    found with an exact multi-index search rather than all pairs. Clusters are the connected
    components of those pairs; the keep policy picks the survivor and every member records it.
    With `against`, images already kept by earlier datasets count too: a match there makes the
    image here a duplicate of that one.
    """
    dataset = context.partition_key
    store = metadata.store
    config = stage_config(context, "deduplicated_images", config, store)
    total = validated_images.count
    started = start_stage(store, dataset, "deduplicated_images", context.run.run_id, total=total)
    progress = StageProgress(store, dataset, "deduplicated_images", context.run.run_id, total)
    fields = ("image_id", "sha256", "size_bytes", "validation")
    own = progress.counted(store.iter_images(dataset, status=PASSED, fields=fields))
    rows = chain(
        ((0, row) for row in own),
        *(
            ((k, row) for row in store.iter_images(other, status="processed", fields=fields))
            for k, other in enumerate(config.against, start=1)
        ),
    )
    table = HashTable.from_rows(rows)
    sources = [dataset, *config.against]
    verifier = _stage_verifier(store, blobs.store, table, sources, config)
    clusters = find_clusters(table, config, verifier) if config.enabled else []
    store.set_status(dataset, PASSED, "unique", unset=CLUSTER_FIELDS)
    changes = []
    kinds = {"exact": 0, "near": 0}
    earlier = 0
    for cluster in clusters:
        keeper = cluster["keeper"]
        origin = int(table.origin[keeper])
        keeper_id = table.image_id(keeper)
        if origin:
            keeper_id = f"{config.against[origin - 1]}:{keeper_id}"
        else:
            changes.append((keeper_id, {"cluster": keeper_id, "distance": 0}))
        for member in cluster["members"]:
            if table.origin[member["index"]]:
                continue
            kinds[member["kind"]] += 1
            earlier += bool(origin)
            changes.append(
                (
                    table.image_id(member["index"]),
                    {
                        "status": "duplicate",
                        "cluster": keeper_id,
                        "cluster_kind": member["kind"],
                        "duplicate_of": keeper_id,
                        "distance": member["distance"],
                        "evidence": member["evidence"],
                    },
                )
            )
    store.update_images(dataset, changes)
    duplicates = kinds["exact"] + kinds["near"]
    total = int(np.count_nonzero(table.origin == 0))
    unique = total - duplicates
    ratio = round(duplicates / total, 4) if total else 0.0
    validation = (store.load_stage(dataset, "validated_images") or {}).get("summary") or {}
    return finish_stage(
        context,
        store,
        dataset=dataset,
        stage="deduplicated_images",
        count=unique,
        summary={
            "unique": unique,
            "duplicates": duplicates,
            "exact_duplicates": kinds["exact"],
            "near_duplicates": kinds["near"],
            "clusters": len(clusters),
            "in_earlier_datasets": earlier,
            "duplicate_ratio": ratio,
            "gate": gate(
                "duplicate_ratio",
                "dedup.max_duplicate_ratio",
                ratio,
                config.max_duplicate_ratio,
                validation.get("mode", "lenient"),
            ),
            "threshold": config.threshold if config.near else None,
        },
        started=started,
        status="unique",
    )


@asset_check(asset=deduplicated_images, partitions_def=datasets_partitions, blocking=True)
def duplicate_ratio(
    deduplicated_images: Manifest, metadata: MetadataStoreResource, blobs: BlobStoreResource
) -> AssetCheckResult:
    """Warns, or in strict mode (or when `dedup.max_duplicate_ratio` is set) stops, a dataset
    that is mostly copies of itself; a stopped run still writes its report."""
    summary = deduplicated_images.summary
    decision = summary["gate"]
    result = gate_result(
        decision,
        f"{summary['duplicates']} duplicates ({summary['exact_duplicates']} exact, "
        f"{summary['near_duplicates']} near) of {summary['unique'] + summary['duplicates']} "
        "images",
    )
    if not decision["passed"] and decision["blocking"]:
        stop_with_report(metadata.store, blobs.store, deduplicated_images.dataset, decision, result)
    return result
