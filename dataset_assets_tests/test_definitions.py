"""The definitions load, and the graph a reviewer sees stays what it is meant to be."""

import itertools

from dagster import AssetKey

from dataset_assets.definitions import defs
from dataset_assets.partitions import datasets_partitions
from dataset_assets.stages.tracking import STAGES

GRAPH = [
    "raw_images",
    "validated_images",
    "deduplicated_images",
    "processed_images",
    "labels",
    "tiered_storage",
    "quality_report",
]


def test_the_stage_order_the_code_tracks_is_the_asset_graph():
    assert list(STAGES) == GRAPH


def test_every_stage_is_a_partitioned_asset_in_one_chain():
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert keys == set(GRAPH)
    for upstream, downstream in itertools.pairwise(GRAPH):
        assert graph.get(AssetKey(downstream)).parent_keys == {AssetKey(upstream)}
    for stage in GRAPH:
        assert graph.get(AssetKey(stage)).partitions_def == datasets_partitions


def test_process_dataset_job_selects_every_stage_and_every_check():
    job = defs.resolve_job_def("process_dataset")
    assert {key.to_user_string() for key in job.asset_layer.executable_asset_keys} == set(GRAPH)
    checks = {key.name for key in job.asset_layer.asset_graph.asset_check_keys}
    assert checks == {"invalid_ratio", "duplicate_ratio", "processed_images_not_empty"}


def test_every_step_of_the_job_has_a_retry_policy_and_io_steps_retry_more():
    job = defs.resolve_job_def("process_dataset")
    policies = {
        op.name: op.retry_policy
        for op in job.graph.iterate_op_defs()
        if not op.name.endswith(("_ratio", "_not_empty"))
    }
    assert len(policies) == 11
    assert all(policy is not None for policy in policies.values()), policies
    assert policies["raw_images"].max_retries > policies["transform_shard"].max_retries
