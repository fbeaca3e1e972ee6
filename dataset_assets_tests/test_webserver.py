"""`dagster dev` on this project: the asset graph, the partitions and each stage's metadata."""

import pytest

from dataset_assets.cli import main
from dataset_assets.stages.tracking import STAGES
from dataset_assets_tests.servers import graphql, start_dagster_dev

ASSET_QUERY = """{
  assetNodes { assetKey { path } partitionKeys dependencyKeys { path } }
  assetOrError(assetKey: {path: ["quality_report"]}) {
    ... on Asset { assetMaterializations(limit: 1) { partition metadataEntries { label } } }
  }
}"""


@pytest.fixture
def dagster_dev(tmp_path, monkeypatch, sample_dir):
    """A run through the CLI, then `dagster dev` on the same DAGSTER_HOME."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(tmp_path / "home"))
    assert main(["run", str(sample_dir), "--request-id", "ui-demo"]) == 0
    with start_dagster_dev({}) as port:
        yield port


def test_dagster_dev_shows_the_stages_the_partition_and_the_report_metadata(dagster_dev):
    data = graphql(dagster_dev, ASSET_QUERY)
    nodes = {"/".join(node["assetKey"]["path"]): node for node in data["assetNodes"]}
    assert set(nodes) == set(STAGES)
    assert all(node["partitionKeys"] == ["ui-demo"] for node in nodes.values())
    assert nodes["labels"]["dependencyKeys"] == [{"path": ["processed_images"]}]
    (materialization,) = data["assetOrError"]["assetMaterializations"]
    assert materialization["partition"] == "ui-demo"
    labels = {entry["label"] for entry in materialization["metadataEntries"]}
    assert {"report", "quality_score", "metrics", "count", "checksum"} <= labels
