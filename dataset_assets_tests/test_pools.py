"""Per-image work in worker processes: the same dataset as threads, and a crash costs one image."""

import multiprocessing.forkserver
import pickle
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from dagster import DagsterInstance
from PIL import Image

from dataset_assets.stages import pools
from dataset_assets.stages.deduplicated_images import verify_pairs
from dataset_assets.stages.pools import pool_for, run_each
from dataset_assets.storage.environment import resources_from_env
from dataset_assets_tests.conftest import Pipeline
from dataset_assets_tests.crashing import FATAL, double, read_or_die
from dataset_assets_tests.photos import PHOTOS, photo, write_photos
from dataset_assets_tests.test_pipeline import SEED_OPERATIONS

EDITED = ("astronaut", "coffee", "moon")


@pytest.fixture(autouse=True, scope="module")
def fresh_fork_server_afterwards():
    """Stop this module's worker pool and the fork server after it: a later test in the same
    process that starts Dagster's multiprocess executor with the forkserver start method must
    get a server with the environment of its own time (stdlib's own tests stop it this way)."""
    yield
    pools.shutdown()
    multiprocessing.forkserver._forkserver._stop()


def build(root: Path, source: Path, pool: str, monkeypatch) -> tuple[dict, dict[str, bytes]]:
    """One run of the same request in its own home: each image's record and the dataset files."""
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(root))
    pipeline = Pipeline(root, resources_from_env(operator=True), DagsterInstance.ephemeral())
    request = {
        "request_id": "pools",
        "dataset_key": str(source),
        "operations": SEED_OPERATIONS,
        "validation": {"pool": pool, "workers": 2, "images_per_shard": 16},
        "transform": {"pool": pool, "workers": 2, "images_per_shard": 16},
        "dedup": {"pool": pool, "workers": 2},
    }
    assert pipeline.run(request).success
    skip = {"updated_at", "_id", "ingest_run", "run_id"}
    records = {
        doc["source"]: {key: value for key, value in doc.items() if key not in skip}
        for doc in pipeline.metadata.iter_images("pools")
    }
    return records, pipeline.outputs("pools")


def test_processes_build_the_same_dataset_as_threads(tmp_path, sample_dir, monkeypatch):
    """The sample (with its truncated, non-image and too-small files) plus real photographs and
    edited copies of three, once in worker processes and once in threads: the same records (the
    copies' verification evidence too) and byte-identical dataset files."""
    source = tmp_path / "source"
    shutil.copytree(sample_dir, source)
    write_photos(source, {f"photos/{name}.jpg": name for name in PHOTOS})
    (source / "copies").mkdir()
    for name in EDITED:
        photo(name).rotate(3, Image.Resampling.BICUBIC).save(source / f"copies/{name}.jpg")
    in_processes, files = build(tmp_path / "processes", source, "processes", monkeypatch)
    in_threads, expected = build(tmp_path / "threads", source, "threads", monkeypatch)

    assert in_processes == in_threads
    for name in EDITED:
        copy = in_processes[f"copies/{name}.jpg"]
        assert copy["status"] == "duplicate", name
        assert copy["evidence"]["method"] in ("orb-ransac", "ecc-aligned"), name
    statuses = Counter(doc["status"] for doc in in_threads.values())
    assert statuses["processed"] > 20 and statuses["rejected"] == 3
    images = [
        key
        for key in expected
        if key.split("/")[0] in ("hot", "cold") and not key.endswith("/metadata.jsonl")
    ]
    assert len(images) == statuses["processed"]
    assert files.keys() == expected.keys()
    assert all(files[key] == expected[key] for key in images)


def test_a_worker_that_dies_costs_only_its_own_item():
    items = list(range(40))
    results = dict(run_each(double, items, 2, "processes", on_crash=lambda item: -1))
    assert results == {item: -1 if item == FATAL else 2 * item for item in items}
    again = dict(run_each(double, [1, 2, 3], 2, "processes", on_crash=lambda item: -1))
    assert again == {1: 2, 2: 4, 3: 6}


def test_a_pair_whose_file_kills_its_worker_is_not_confirmed(tmp_path):
    rocket = photo("rocket")
    rocket.save(tmp_path / "rocket.jpg", quality=92)
    rocket.rotate(3, Image.Resampling.BICUBIC).save(tmp_path / "rotated.jpg", quality=85)
    rocket.save(tmp_path / "fatal.jpg", quality=92)
    files = [tmp_path / name for name in ("rocket.jpg", "rotated.jpg", "fatal.jpg")]
    rows = np.array([(0, 1), (0, 2), (1, 2)])
    flipped = np.zeros(3, dtype=bool)
    results = verify_pairs(read_or_die, files, rows, flipped, workers=2, pool="processes")
    assert results[0] is not None and results[0].method == "orb-ransac"
    assert results[1:] == [None, None]


@pytest.mark.parametrize(
    ("kind", "images", "workers", "chosen"),
    [
        ("auto", 100, 2, "processes"),
        ("auto", 20, 2, "threads"),
        ("auto", 100, 1, "inline"),
        ("threads", 100, 2, "threads"),
        ("processes", 2, 2, "processes"),
        ("processes", 1, 2, "inline"),
    ],
)
def test_auto_uses_processes_for_shards_worth_it(kind, images, workers, chosen):
    assert pool_for(kind, images, workers) == chosen


def test_s3_store_reopens_its_own_client_in_a_worker(s3_endpoint):
    """A store travels to a worker as its settings, and each worker opens one client."""
    from dataset_assets.storage.s3 import S3BlobStore, s3_client

    settings = {
        "endpoint_url": s3_endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    client = s3_client(**settings)
    client.create_bucket(Bucket="pools")
    store = S3BlobStore(client, "pools", "p", client_settings=settings)
    store.put_bytes("a.txt", b"seen in the worker")
    copy = pickle.loads(pickle.dumps(store))
    assert copy.get_bytes("a.txt") == b"seen in the worker"
    assert pickle.loads(pickle.dumps(store)) is copy
    with pytest.raises(TypeError, match="client_settings"):
        pickle.dumps(S3BlobStore(client, "pools"))
