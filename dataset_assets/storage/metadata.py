"""The metadata store: one document per image per dataset, plus workflow tracking per request.

It speaks the pymongo collection API to either MongoDB (`mongodb://...`) or the embedded,
file-backed neosqlite store, so the embedded default and production run the same queries.
Every write is an upsert keyed by identity (dataset + image_id, dataset + stage, request_id):
a retried step or a re-run partition leaves exactly one document per image.
"""

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import neosqlite
import pymongo
from pymongo import UpdateOne
from pymongo.errors import PyMongoError
from pymongo.uri_parser import parse_uri

BATCH_SIZE = 500
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def eq(value: Any) -> dict[str, str]:
    """An explicit `$eq` on the value as a string.

    A value from a request can then never act as a query operator, and the embedded store turns
    `$eq` into a plain indexed comparison (a bare value also matches inside arrays, which forces
    a scan of every record).
    """
    return {"$eq": str(value)}


def connect(uri: str, database: str = "dataset_assets") -> Any:
    """A pymongo-compatible database: MongoDB for mongodb:// URIs, else an embedded file.

    A database named in the URI (`mongodb://host/name`) wins over `database`.
    """
    if uri.startswith(("mongodb://", "mongodb+srv://")):
        options = {"serverSelectionTimeoutMS": 5000, "connectTimeoutMS": 5000}
        client = pymongo.MongoClient(uri, **{**options, **parse_uri(uri)["options"]})
        try:
            client.admin.command("ping")
        except PyMongoError as error:
            hosts = ", ".join(f"{host}:{port}" for host, port in parse_uri(uri)["nodelist"])
            raise ConnectionError(
                f"MongoDB at {hosts} is unreachable ({type(error).__name__}): check "
                "DATASET_ASSETS_METADATA_URI and that the server is running"
            ) from None
        return client[parse_uri(uri)["database"] or database]
    path = Path(uri.removeprefix("file:")).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return neosqlite.Connection(str(path), timeout=30.0)


class MetadataStore:
    """Typed access to the `images`, `stages`, `progress` and `requests` collections."""

    def __init__(self, database: Any):
        self.database = database
        self.embedded = isinstance(database, neosqlite.Connection)
        self.images = database["images"]
        self.stages = database["stages"]
        self.progress = database["progress"]
        self.requests = database["requests"]

    def ensure_indexes(self) -> None:
        """Unique indexes make every write an upsert by identity; the others serve stage reads."""
        self.images.create_index([("dataset", 1), ("image_id", 1)], unique=True)
        self.images.create_index([("dataset", 1), ("status", 1), ("bucket", 1)])
        self.images.create_index([("dataset", 1), ("source", 1)])
        self.images.create_index([("blob_key", 1)])
        self.stages.create_index([("dataset", 1), ("stage", 1)], unique=True)
        self.progress.create_index([("dataset", 1), ("stage", 1)], unique=True)
        self.requests.create_index([("request_id", 1)], unique=True)

    # images -------------------------------------------------------------------------------------

    def upsert_images(self, dataset: str, docs: Iterable[Mapping[str, Any]]) -> int:
        """Write image documents in batches; each document must carry its `image_id`."""
        return self.update_images(dataset, ((doc["image_id"], doc) for doc in docs), upsert=True)

    def update_images(
        self,
        dataset: str,
        changes: Iterable[tuple[str, Mapping[str, Any]]],
        *,
        upsert: bool = False,
        unset: Iterable[str] = (),
    ) -> int:
        """Apply `$set` changes per image id in bulk batches; returns how many were written."""
        removed = tuple(unset)
        written = 0
        batch: list[tuple[str, dict[str, Any], tuple[str, ...]]] = []
        for image_id, fields in changes:
            values = {**fields, "dataset": dataset, "updated_at": utcnow()}
            batch.append((image_id, values, tuple(key for key in removed if key not in fields)))
            if len(batch) >= BATCH_SIZE:
                written += self._flush(dataset, batch, upsert)
        if batch:
            written += self._flush(dataset, batch, upsert)
        return written

    def _flush(
        self, dataset: str, batch: list[tuple[str, dict[str, Any], tuple[str, ...]]], upsert: bool
    ) -> int:
        """One bulk write; on the embedded store also one transaction, which saves a commit per
        document and never leaves half a batch written."""
        if not self.embedded:
            self.images.bulk_write(self._requests(dataset, batch, upsert), ordered=False)
        else:
            with self.database.start_session() as session, session.start_transaction():
                if upsert or not self._plain_json:
                    requests = self._requests(dataset, batch, upsert)
                    self.images.bulk_write(requests, ordered=False, session=session)
                else:
                    self._set_in_sql(dataset, batch)
        count = len(batch)
        batch.clear()
        return count

    @staticmethod
    def _requests(
        dataset: str, batch: list[tuple[str, dict[str, Any], tuple[str, ...]]], upsert: bool
    ) -> list[UpdateOne]:
        return [
            UpdateOne(
                {"dataset": eq(dataset), "image_id": eq(image_id)},
                {"$set": values, **({"$unset": dict.fromkeys(removed, "")} if removed else {})},
                upsert=upsert,
            )
            for image_id, values, removed in batch
        ]

    @cached_property
    def _plain_json(self) -> bool:
        """Whether the embedded store keeps documents as JSON text (SQLite before 3.45, which
        has no JSONB), where SQL can update them in place."""
        row = self.database.db.execute(
            "SELECT type FROM pragma_table_info('images') WHERE name = 'data'"
        ).fetchone()
        return bool(row) and row[0].upper() == "TEXT"

    def _set_in_sql(
        self, dataset: str, batch: list[tuple[str, dict[str, Any], tuple[str, ...]]]
    ) -> None:
        """Updates of existing documents as SQL `json_set`/`json_remove` statements, one
        `executemany` per shape of change: neosqlite's own `update_one` reads, decodes and
        rewrites each document in Python, about ten times the cost."""
        shapes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[list[Any]]] = {}
        for image_id, values, removed in batch:
            rows = shapes.setdefault((tuple(values), removed), [])
            rows.append([*(json.dumps(value) for value in values.values()), dataset, image_id])
        for (keys, removed), rows in shapes.items():
            if not all(FIELD_NAME.fullmatch(key) for key in (*keys, *removed)):
                raise ValueError(f"image fields must be plain names: {keys + removed}")
            document = "json_set(data, " + ", ".join(f"'$.{key}', json(?)" for key in keys) + ")"
            if removed:
                document = (
                    f"json_remove({document}, " + ", ".join(f"'$.{k}'" for k in removed) + ")"
                )
            self.database.db.executemany(
                f"UPDATE images SET data = {document} WHERE json_extract(data, '$.dataset') = ? "
                "AND json_extract(data, '$.image_id') = ?",
                rows,
            )

    def set_status(
        self,
        dataset: str,
        current: str | Iterable[str],
        status: str,
        *,
        unset: Iterable[str] = (),
    ) -> int:
        """Move every image in `current` to `status`, page by page in bulk batches.

        Not `update_many`: the embedded store would load every matching record at once.
        """
        docs = self.iter_images(dataset, status=current, fields=("image_id",))
        return self.update_images(
            dataset, ((doc["image_id"], {"status": status}) for doc in docs), unset=unset
        )

    def iter_images(
        self,
        dataset: str,
        *,
        status: str | Iterable[str] | None = None,
        bucket_range: tuple[int, int] | None = None,
        fields: Iterable[str] | None = None,
        sort: str = "source",
        extra: Mapping[str, Any] | None = None,
        page_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Stream image documents page by page, ordered by a unique field (`source`, `image_id`).

        Each page is a fresh query after the last key seen, so callers may update the images they
        are reading, no cursor stays open for long, and nothing loads a whole collection.
        """
        query = self._query(dataset, status, bucket_range, extra)
        wanted = ("_id", sort, *fields) if fields else None
        # The embedded store applies a projection by deep-copying each whole document, which
        # costs twice the read; there the fields are picked here instead.
        projection = dict.fromkeys(wanted, 1) if wanted and not self.embedded else None
        last: str | None = None
        while True:
            page_query = query if last is None else {**query, sort: {"$gt": last}}
            page = list(self.images.find(page_query, projection).sort([(sort, 1)]).limit(page_size))
            if wanted and self.embedded:
                yield from ({key: doc[key] for key in wanted if key in doc} for doc in page)
            else:
                yield from page
            if len(page) < page_size:
                return
            last = page[-1][sort]

    def blob_in_use(self, blob_key: str) -> bool:
        """Whether any dataset's image that was not rejected names `blob_key` (originals are
        stored once by content and shared)."""
        query = {"blob_key": eq(blob_key), "status": {"$ne": "rejected"}}
        return self.images.find_one(query, {"_id": 1}) is not None

    def count_images(
        self,
        dataset: str,
        *,
        status: str | Iterable[str] | None = None,
        bucket_range: tuple[int, int] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        return self.images.count_documents(self._query(dataset, status, bucket_range, extra))

    def count_by(
        self, dataset: str, field: str, *, extra: Mapping[str, Any] | None = None
    ) -> dict[str, int]:
        """Counts per value of `field` (e.g. status, reject_reason), computed by the store."""
        match = self._query(dataset, None, None, extra)
        pipeline = [{"$match": match}, {"$group": {"_id": f"${field}", "n": {"$sum": 1}}}]
        return {
            str(row["_id"]): int(row["n"])
            for row in self.images.aggregate(pipeline)
            if row["_id"] is not None
        }

    def delete_stale_images(self, dataset: str, ingest_run: str) -> int:
        """Drop records of files no longer in the source, once a re-ingest saw every current one."""
        query = {"dataset": eq(dataset), "ingest_run": {"$ne": str(ingest_run)}}
        return self.images.delete_many(query).deleted_count

    @staticmethod
    def _query(
        dataset: str,
        status: str | Iterable[str] | None,
        bucket_range: tuple[int, int] | None,
        extra: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        query: dict[str, Any] = {"dataset": eq(dataset)}
        if isinstance(status, str):
            query["status"] = eq(status)
        elif status is not None:
            query["status"] = {"$in": [str(s) for s in status]}
        if bucket_range is not None:
            query["bucket"] = {"$gte": int(bucket_range[0]), "$lt": int(bucket_range[1])}
        query.update(extra or {})
        return query

    # stages and requests -------------------------------------------------------------------------

    def save_stage(self, dataset: str, stage: str, doc: Mapping[str, Any]) -> None:
        self.stages.update_one(
            {"dataset": eq(dataset), "stage": eq(stage)},
            {"$set": {**doc, "dataset": str(dataset), "stage": str(stage), "updated_at": utcnow()}},
            upsert=True,
        )

    def load_stage(self, dataset: str, stage: str) -> dict[str, Any] | None:
        return self.stages.find_one({"dataset": eq(dataset), "stage": eq(stage)}, {"_id": 0})

    def stage_docs(self, dataset: str) -> list[dict[str, Any]]:
        return list(self.stages.find({"dataset": eq(dataset)}, {"_id": 0}))

    def save_progress(self, dataset: str, stage: str, fields: Mapping[str, Any]) -> None:
        """Set fields of the stage's one progress document (images done / total of a run)."""
        self.progress.update_one(
            {"dataset": eq(dataset), "stage": eq(stage)},
            {"$set": {**fields, "dataset": str(dataset), "stage": str(stage)}},
            upsert=True,
        )

    def load_progress(self, dataset: str) -> list[dict[str, Any]]:
        return list(self.progress.find({"dataset": eq(dataset)}, {"_id": 0}))

    def track_request(self, request_id: str, **fields: Any) -> None:
        """Workflow tracking: status, current stage, progress and errors of one request."""
        now = utcnow()
        self.requests.update_one(
            {"request_id": eq(request_id)},
            {
                "$set": {**fields, "request_id": str(request_id), "updated_at": now},
                "$setOnInsert": {"created_at": now},
            },
            upsert=True,
        )

    def get_request(self, request_id: str) -> dict[str, Any] | None:
        return self.requests.find_one({"request_id": eq(request_id)}, {"_id": 0})
