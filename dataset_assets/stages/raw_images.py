"""Ingest: every file of the source becomes a content-addressed blob and one image record."""

import hashlib
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from dagster import AssetExecutionContext, Failure, asset

from dataset_assets.ingest.locate import check_source, open_entries
from dataset_assets.ingest.sources import Entry, SourceError
from dataset_assets.manifest import Manifest
from dataset_assets.partitions import datasets_partitions
from dataset_assets.policy import DeploymentPolicy
from dataset_assets.request import IngestConfig
from dataset_assets.stages.policies import IO_RETRY
from dataset_assets.stages.progress import StageProgress
from dataset_assets.stages.request_settings import stage_config
from dataset_assets.stages.sharding import bucket_of
from dataset_assets.stages.tracking import finish_stage, start_stage
from dataset_assets.storage.blobs import BlobStore
from dataset_assets.storage.metadata import MetadataStore
from dataset_assets.storage.resources import (
    BlobStoreResource,
    MetadataStoreResource,
    WorkspaceResource,
)

CHUNK = 1024 * 1024
EXTENSION = re.compile(r"[a-z0-9]{1,10}")
ENTRY_FAULTS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, tarfile.TarError)
"""What reading one file can raise; it rejects that file (a `ConnectionError` still fails the
step, to be retried)."""
LATER_FIELDS = (
    "reject_reason",
    "reject_message",
    "reject_stage",
    "validation",
    "cluster",
    "cluster_kind",
    "duplicate_of",
    "distance",
    "outputs",
    "transform_key",
    "label",
    "tier",
    "final_keys",
)


def image_id_for(dataset: str, source: str) -> str:
    """Stable per dataset and source path: a re-run updates the same record."""
    return hashlib.sha256(f"{dataset}\x00{source}".encode()).hexdigest()[:24]


def store_entry(entry: Entry, blobs: BlobStore, spool: Path, max_bytes: int) -> dict[str, Any]:
    """Stream one entry into the blob store under its sha256; the fields of its image record."""
    if entry.reason:
        return {
            "status": "rejected",
            "reject_reason": entry.reason,
            "reject_message": entry.message,
        }
    if entry.size is not None and entry.size > max_bytes:
        return _too_large(entry.path, entry.size, max_bytes)
    digest = hashlib.sha256()
    size = 0
    with entry.open() as stream, open(spool, "wb") as out:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                return _too_large(entry.path, size, max_bytes)
            digest.update(chunk)
            out.write(chunk)
    sha256 = digest.hexdigest()
    extension = PurePosixPath(entry.path).suffix.lower().lstrip(".")
    extension = extension if EXTENSION.fullmatch(extension) else "bin"
    key = f"originals/{sha256}.{extension}"
    if not blobs.exists(key):
        blobs.move_file(key, spool)
    return {"status": "ingested", "sha256": sha256, "size_bytes": size, "blob_key": key}


def _too_large(path: str, size: int, limit: int) -> dict[str, Any]:
    return {
        "status": "rejected",
        "reject_reason": "file_too_large",
        "reject_message": f"{path}: {size} bytes or more exceeds the limit of {limit} bytes",
    }


@asset(
    partitions_def=datasets_partitions,
    io_manager_key="manifest_io_manager",
    retry_policy=IO_RETRY,
    group_name="dataset",
    kinds={"python"},
)
def raw_images(
    context: AssetExecutionContext,
    config: IngestConfig,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
    workspace: WorkspaceResource,
    policy: DeploymentPolicy,
) -> Manifest:
    """Every file of the request's source, stored once by content, one record per file.

    The settings come from the request stored with the partition unless run config gives them.
    The whole request is checked here first, against the deployment policy too, so a bad
    operation, setting or source fails the run before anything is written. Hidden files are
    skipped; label manifests and other text files are kept as sidecars for the labels stage;
    unsafe entries, links and files that cannot be read (a bad CRC, a lying size) are recorded
    as rejected, one by one.
    """
    dataset = context.partition_key
    store = metadata.store
    config = stage_config(context, "raw_images", config, store, policy)
    try:
        source = check_source(config.dataset_key, blobs.s3_client)
    except SourceError as error:
        raise Failure(
            description=f"request {dataset!r} cannot run: {error}", allow_retries=False
        ) from None
    store.track_request(dataset, error=None)
    started = start_stage(store, dataset, "raw_images", context.run.run_id)
    progress = StageProgress(store, dataset, "raw_images", context.run.run_id)
    blob_store = blobs.store
    counts = {"ingested": 0, "rejected": 0, "sidecars": 0, "bytes": 0}

    def records():
        with workspace.step_dir(context.run.run_id, "raw_images") as scratch:
            spool = scratch / "entry"
            downloads = config.downloads(policy.allow_private_hosts)
            entries = open_entries(config.dataset_key, blobs.s3_client, scratch, downloads)
            limited = _limited(entries, config.dataset_key, config.max_files)
            for entry in progress.counted(limited):
                try:
                    if entry.is_sidecar and not entry.reason:
                        _store_sidecar(entry, blob_store, dataset, config.max_file_bytes)
                        counts["sidecars"] += 1
                        continue
                    fields = store_entry(entry, blob_store, spool, config.max_file_bytes)
                except ConnectionError:
                    raise
                except ENTRY_FAULTS as error:
                    fields = _unreadable(entry.path, error)
                counts[fields["status"]] += 1
                counts["bytes"] += fields.get("size_bytes", 0)
                image_id = image_id_for(dataset, entry.path)
                yield (
                    image_id,
                    {
                        **fields,
                        "source": entry.path,
                        **({"origin": entry.origin} if entry.origin else {}),
                        **({"caption": entry.caption} if entry.caption else {}),
                        "bucket": bucket_of(image_id),
                        "ingest_run": context.run.run_id,
                        **({"reject_stage": "ingest"} if fields["status"] == "rejected" else {}),
                    },
                )

    store.update_images(dataset, records(), upsert=True, unset=LATER_FIELDS)
    stale = store.delete_stale_images(dataset, context.run.run_id)
    total = counts["ingested"] + counts["rejected"]
    if total == 0:
        raise Failure(
            description=f"request {dataset!r}: no files found in {config.dataset_key!r}",
            allow_retries=False,
        )
    return finish_stage(
        context,
        store,
        dataset=dataset,
        stage="raw_images",
        count=total,
        summary={**counts, "stale_removed": stale, "source": source},
        started=started,
        status=("ingested", "rejected"),
    )


def purge_rejected_originals(store: MetadataStore, blobs: BlobStore, dataset: str) -> int:
    """Delete the stored originals of the dataset's rejected files that no image kept anywhere
    still uses, so a file that is not a usable image (text, a secret, a bomb) does not stay in
    the blob store. Originals are shared by content: a blob another record still names is kept.
    The records keep their key, reason and message. Returns how many blobs were deleted."""
    removed = 0
    rejected = store.iter_images(dataset, status="rejected", fields=("blob_key",))
    for key in {doc["blob_key"] for doc in rejected if doc.get("blob_key")}:
        if not store.blob_in_use(key):
            blobs.delete(key)
            removed += 1
    return removed


def _limited(entries: Iterator[Entry], dataset_key: str, max_files: int) -> Iterator[Entry]:
    """The source's entries, failing the run once there are more than `max_files`, and naming
    the source when it cannot be read on (a truncated or corrupt archive)."""
    count = 0
    while True:
        try:
            entry = next(entries, None)
        except ConnectionError:
            raise
        except ENTRY_FAULTS as error:
            raise Failure(
                description=f"{dataset_key!r} cannot be read after {count} file(s): "
                f"{type(error).__name__}: {error}",
                allow_retries=False,
            ) from None
        if entry is None:
            return
        count += 1
        if count > max_files:
            raise Failure(
                description=f"{dataset_key!r} holds more than {max_files:,} files, the limit "
                "(ingest.max_files, DATASET_ASSETS_MAX_FILES)",
                allow_retries=False,
            )
        yield entry


def _unreadable(path: str, error: BaseException) -> dict[str, Any]:
    return {
        "status": "rejected",
        "reject_reason": "unreadable",
        "reject_message": f"{path}: {type(error).__name__}: {error}",
    }


def _store_sidecar(entry: Entry, blobs: BlobStore, dataset: str, max_bytes: int) -> None:
    if entry.size is not None and entry.size <= max_bytes:
        with entry.open() as stream:
            blobs.put_bytes(f"sidecars/{dataset}/{entry.path}", stream.read(max_bytes + 1))
