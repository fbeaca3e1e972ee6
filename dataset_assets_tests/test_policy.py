"""Deployment policy against request settings: a request may tighten a limit, never loosen one."""

from pathlib import Path

import pytest

from dataset_assets.failures import failure_cause
from dataset_assets.policy import DeploymentPolicy, policy_from_env
from dataset_assets.request import RequestError, parse_request
from dataset_assets_tests.conftest import Pipeline


def applied(policy: DeploymentPolicy, **fields: object) -> dict:
    request = policy.apply(parse_request({"dataset_key": "s3://raw/set/", **fields}))
    return {"ingest": request.ingest, "validation": request.validation}


def test_limits_a_request_leaves_out_are_the_smaller_of_default_and_ceiling() -> None:
    policy = DeploymentPolicy(source_roots=["s3://raw"], max_file_bytes=1000, max_pixels=10**9)
    limits = applied(policy)
    assert limits["ingest"]["max_file_bytes"] == 1000
    assert limits["validation"]["max_pixels"] == 50_000_000
    assert limits["ingest"]["download_workers"] == 16


def test_a_request_may_tighten_a_limit_but_not_loosen_it() -> None:
    policy = DeploymentPolicy(source_roots=["s3://raw"], max_file_bytes=1000)
    assert applied(policy, ingest={"max_file_bytes": 10})["ingest"]["max_file_bytes"] == 10
    with pytest.raises(RequestError, match=r"ingest\.max_file_bytes=1001 is over the deployment"):
        applied(policy, ingest={"max_file_bytes": 1001})
    with pytest.raises(RequestError, match=r"ingest\.download_workers=65 is over"):
        applied(policy, ingest={"download_workers": 65})


def test_worst_case_outputs_are_checked_against_the_ceilings() -> None:
    policy = DeploymentPolicy(source_roots=["s3://raw"], max_outputs_per_image=100)
    tiles = [{"Tile": {"size": 256}}]
    with pytest.raises(RequestError, match="could make 6,241 outputs"):
        applied(policy, operations=tiles)
    small = {"max_width": 1024, "max_height": 1024, "max_pixels": 1024 * 1024}
    assert applied(policy, operations=tiles, validation=small)
    rotate = [{"Resize": {"max_side": 2048}}, {"Rotate": {"degrees": [-30, 30]}}]
    assert applied(DeploymentPolicy(source_roots=["s3://raw"]), operations=rotate)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("s3://raw/set/", True),
        ("s3://raw", True),
        ("s3://raw-copy/set/", False),
        ("s3://inbox/in/today.zip", True),
        ("s3://inbox/other/today.zip", False),
        ("s3://inbox/in/../other/x.zip", False),
    ],
)
def test_s3_sources_are_read_only_under_the_configured_prefixes(url: str, allowed: bool) -> None:
    policy = DeploymentPolicy(source_roots=["s3://raw", "s3://inbox/in/"])
    assert (policy.source_problem(url) is None) == allowed


def test_local_sources_are_read_only_under_the_roots_even_through_links(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "set").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    policy = DeploymentPolicy(source_roots=[str(root)])
    assert policy.source_problem(str(root / "set")) is None
    assert "outside the folders" in policy.source_problem(str(root / "escape"))
    assert "outside the folders" in policy.source_problem(str(root / "set" / ".." / ".."))
    assert "none are configured" in DeploymentPolicy().source_problem(str(root / "set"))
    assert DeploymentPolicy(operator=True).source_problem("/etc") is None


def test_the_environment_sets_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATASET_ASSETS_SOURCE_ROOTS", "/data/in, s3://raw/")
    monkeypatch.setenv("DATASET_ASSETS_SOURCE_BUCKET", "seed")
    monkeypatch.setenv("DATASET_ASSETS_ALLOW_PRIVATE_HOSTS", "1")
    monkeypatch.setenv("DATASET_ASSETS_MAX_FILE_BYTES", "4096")
    policy = policy_from_env()
    assert policy.source_roots == ["/data/in", "s3://raw/", "s3://seed/"]
    assert policy.allow_private_hosts and not policy.operator
    assert policy.max_file_bytes == 4096
    monkeypatch.setenv("DATASET_ASSETS_MAX_PIXELS", "many")
    with pytest.raises(ValueError, match=r"DATASET_ASSETS_MAX_PIXELS='many' is not an integer"):
        policy_from_env()


def test_a_run_from_run_config_is_checked_again_and_writes_nothing(
    pipeline: Pipeline, sample_dir: Path
) -> None:
    """The UI's launchpad and `dagster job execute` skip the sensor: the first stage applies
    the policy itself."""
    pipeline.resources["policy"] = DeploymentPolicy()

    result = pipeline.run({"request_id": "outside", "dataset_key": str(sample_dir)})

    assert not result.success
    stage, cause = failure_cause(result.all_events)
    assert stage == "raw_images"
    assert "is a local path outside the folders requests may read" in cause
    assert list(pipeline.blobs.list("originals/")) == []
    assert pipeline.metadata.count_images("outside") == 0
