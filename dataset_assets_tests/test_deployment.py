"""Executor choice, step sizes and step outputs: what changes between a laptop and a cluster."""

import itertools
import json
import re
from pathlib import Path

import pytest
from dagster import (
    DagsterInvalidDefinitionError,
    build_input_context,
    build_output_context,
    build_resources,
)

from dataset_assets.definitions import build_definitions
from dataset_assets.deployment import (
    COORDINATION_STEP_TAGS,
    K8S_MAX_CONCURRENT,
    SHARD_STEP_TAGS,
    deployment_executor,
)
from dataset_assets.stages.sharding import MAX_SHARDS, Shard, plan_shards
from dataset_assets.storage.blobs import LocalBlobStore
from dataset_assets.storage.environment import resources_from_env
from dataset_assets.storage.io_manager import STEP_OUTPUTS_PREFIX, StepOutputIOManager

QUANTITY = re.compile(r"^(?P<number>\d+(?:\.\d+)?)(?P<unit>m|Ki|Mi|Gi)?$")
UNITS = {None: 1, "m": 0.001, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _quantity(text: str) -> float:
    match = QUANTITY.match(text)
    assert match, f"not a Kubernetes quantity: {text!r}"
    return float(match["number"]) * UNITS[match["unit"]]


def _choices_and_default(environ: dict[str, str]) -> tuple[set[str], dict]:
    field = deployment_executor(environ).config_schema.as_field()
    return set(field.config_type.fields), field.default_value


def test_laptops_default_to_multiprocess_with_in_process_a_run_config_away() -> None:
    choices, default = _choices_and_default({})

    assert choices == {"multiprocess", "in_process"}
    assert default == {"multiprocess": {}}


def test_environment_selects_in_process_for_the_local_stack() -> None:
    choices, default = _choices_and_default({"DATASET_ASSETS_EXECUTOR": "in_process"})

    assert choices == {"multiprocess", "in_process"}
    assert default == {"in_process": {}}


def test_clusters_get_the_kubernetes_executor_with_a_pod_limit_per_run() -> None:
    pytest.importorskip("dagster_k8s", reason="needs `pip install dagster-k8s`")

    choices, default = _choices_and_default({"DATASET_ASSETS_EXECUTOR": "k8s"})
    _, limited = _choices_and_default(
        {"DATASET_ASSETS_EXECUTOR": "k8s", "DATASET_ASSETS_MAX_CONCURRENT": "40"}
    )

    assert choices == {"multiprocess", "in_process", "k8s"}
    assert default == {"k8s": {"max_concurrent": K8S_MAX_CONCURRENT}}
    assert limited == {"k8s": {"max_concurrent": 40}}


def test_max_concurrent_caps_local_processes_too() -> None:
    _, default = _choices_and_default({"DATASET_ASSETS_MAX_CONCURRENT": "3"})

    assert default == {"multiprocess": {"max_concurrent": 3}}


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DATASET_ASSETS_EXECUTOR": "celery"}, r"DATASET_ASSETS_EXECUTOR='celery': expected"),
        ({"DATASET_ASSETS_MAX_CONCURRENT": "0"}, r"DATASET_ASSETS_MAX_CONCURRENT='0'"),
        ({"DATASET_ASSETS_MAX_CONCURRENT": "many"}, r"DATASET_ASSETS_MAX_CONCURRENT='many'"),
    ],
)
def test_bad_executor_settings_fail_when_the_code_location_loads(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(DagsterInvalidDefinitionError, match=message):
        deployment_executor(environ)


def test_process_dataset_runs_on_the_deployment_executor(pipeline) -> None:
    job = build_definitions(pipeline.resources).resolve_job_def("process_dataset")

    assert job.executor_def.name == "dataset_assets_executor"


def test_shard_steps_get_whole_cores_and_planning_and_merge_steps_little(pipeline) -> None:
    job = build_definitions(pipeline.resources).resolve_job_def("process_dataset")
    tags = {
        node.name: json.loads(node.tags["dagster-k8s/config"])
        for node in job.all_node_defs
        if "dagster-k8s/config" in node.tags
    }

    assert tags == {
        "validate_shard": SHARD_STEP_TAGS["dagster-k8s/config"],
        "transform_shard": SHARD_STEP_TAGS["dagster-k8s/config"],
        "plan_validation_shards": COORDINATION_STEP_TAGS["dagster-k8s/config"],
        "merge_validation": COORDINATION_STEP_TAGS["dagster-k8s/config"],
        "plan_transform_shards": COORDINATION_STEP_TAGS["dagster-k8s/config"],
        "merge_transform": COORDINATION_STEP_TAGS["dagster-k8s/config"],
    }

    shard = SHARD_STEP_TAGS["dagster-k8s/config"]["container_config"]["resources"]
    small = COORDINATION_STEP_TAGS["dagster-k8s/config"]["container_config"]["resources"]
    for resources in (shard, small):
        for name, request in resources["requests"].items():
            assert _quantity(request) <= _quantity(resources["limits"][name])
    assert _quantity(shard["requests"]["cpu"]) >= 1
    for name in ("cpu", "memory"):
        assert _quantity(small["requests"][name]) < _quantity(shard["requests"][name])


@pytest.mark.parametrize(
    ("images", "per_shard", "shards"),
    [
        (1, 256, 1),
        (256, 256, 1),
        (257, 256, 2),
        (10_000, 256, 40),
        (10_000, 128, 79),
        (1_000_000, 256, MAX_SHARDS),
        (50_000_000, 128, MAX_SHARDS),
    ],
)
def test_shard_count_follows_dataset_size_within_tens_to_a_few_hundred(
    images: int, per_shard: int, shards: int
) -> None:
    plan = plan_shards(images, per_shard, {})

    assert len(plan) == shards
    assert plan[0].low == 0
    assert plan[-1].high == 1 << 16
    assert all(a.high == b.low for a, b in itertools.pairwise(plan))


def test_step_outputs_round_trip_through_the_projects_blob_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATASET_ASSETS_BLOB_ROOT", str(tmp_path / "blobs"))
    monkeypatch.setenv("DATASET_ASSETS_METADATA_URI", str(tmp_path / "metadata.db"))
    shard = Shard(3, 8, 24576, 32768, {"mode": "lenient"})
    output = build_output_context(
        run_id="run-1",
        step_key="validated_images.plan_validation_shards",
        name="result",
        mapping_key="shard_003",
    )

    with build_resources(resources_from_env()) as resources:
        manager = resources.io_manager
        manager.handle_output(output, shard)
        loaded = manager.load_input(build_input_context(upstream_output=output))

    assert isinstance(manager, StepOutputIOManager)
    assert loaded == shard
    blobs = LocalBlobStore(tmp_path / "blobs")
    assert list(blobs.list(f"{STEP_OUTPUTS_PREFIX}/run-1/")) == [
        f"{STEP_OUTPUTS_PREFIX}/run-1/validated_images.plan_validation_shards/result/shard_003"
        ".pickle"
    ]


def test_shard_threads_follow_the_containers_cpu_limit_not_the_nodes_cores(tmp_path):
    import os

    from dataset_assets.stages.pools import worker_count

    cores = len(os.sched_getaffinity(0))
    limit = tmp_path / "cpu.max"
    limit.write_text("100000 100000\n")
    assert worker_count(0, limit) == 1
    limit.write_text("max 100000\n")
    assert worker_count(0, limit) == cores
    assert worker_count(0, tmp_path / "no-cgroup") == cores
    assert worker_count(3, limit) == 3
