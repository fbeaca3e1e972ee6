"""`dagster dev` on this project: the asset graph, the partitions and each stage's metadata."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dataset_assets.cli import main
from dataset_assets.stages.tracking import STAGES
from dataset_assets_tests.servers import free_port, stop

ASSET_QUERY = """{
  assetNodes { assetKey { path } partitionKeys dependencyKeys { path } }
  assetOrError(assetKey: {path: ["quality_report"]}) {
    ... on Asset { assetMaterializations(limit: 1) { partition metadataEntries { label } } }
  }
}"""


def _graphql(port: int, query: str) -> dict:
    body = json.dumps({"query": query}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", body, {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture
def dagster_dev(tmp_path, monkeypatch, sample_dir):
    """A run through the CLI, then `dagster dev` on the same DAGSTER_HOME, stopped by SIGTERM."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(tmp_path / "home"))
    assert main(["run", str(sample_dir), "--request-id", "ui-demo"]) == 0
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    process = subprocess.Popen(
        [
            str(dagster),
            "dev",
            "-m",
            "dataset_assets.definitions",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("dagster dev did not answer on /server_info") from None
                time.sleep(0.5)
        yield port
    finally:
        stop(process, timeout=30)


def test_dagster_dev_shows_the_stages_the_partition_and_the_report_metadata(dagster_dev):
    data = _graphql(dagster_dev, ASSET_QUERY)
    nodes = {"/".join(node["assetKey"]["path"]): node for node in data["assetNodes"]}
    assert set(nodes) == set(STAGES)
    assert all(node["partitionKeys"] == ["ui-demo"] for node in nodes.values())
    assert nodes["labels"]["dependencyKeys"] == [{"path": ["processed_images"]}]
    (materialization,) = data["assetOrError"]["assetMaterializations"]
    assert materialization["partition"] == "ui-demo"
    labels = {entry["label"] for entry in materialization["metadataEntries"]}
    assert {"report", "quality_score", "metrics", "count", "checksum"} <= labels
