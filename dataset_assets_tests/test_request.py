"""Parsing requests: the seed format, stage settings, and errors that name what is wrong."""

import pytest

from dataset_assets.request import (
    DatasetRequest,
    RequestError,
    TransformConfig,
    parse_request,
    request_from_run_config,
)

SEED = (
    '{"dataset_key": "images/kanagawa.zip", "operations": [{"Resize": {"scaling_factor": 0.5}},'
    ' "GrayScale", {"Noise": {"noise_level": 0.1}}]}'
)


def test_seed_request_parses_with_lenient_validation_by_default():
    request = parse_request(SEED)
    assert request.dataset_key == "images/kanagawa.zip"
    assert [next(iter(op)) if isinstance(op, dict) else op for op in request.operations] == [
        "Resize",
        "GrayScale",
        "Noise",
    ]
    configs = request.stage_configs()
    assert configs["validated_images"].mode == "lenient"
    assert configs["tiered_storage"].hot_storage_threshold == 1000


def test_request_id_defaults_to_a_stable_name_from_the_source_and_content():
    first, again = parse_request(SEED), parse_request(SEED)
    assert first.id == again.id
    assert first.id.startswith("kanagawa-")
    other = parse_request({"dataset_key": "images/kanagawa.zip", "operations": ["GrayScale"]})
    assert other.id != first.id


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"operations": []}, "dataset_key: Field required"),
        ({"dataset_key": "x", "operations": ["Sepia"]}, "unknown operation"),
        (
            {"dataset_key": "x", "operations": [{"Resize": {"scaling_factor": -1}}]},
            "scaling_factor",
        ),
        ({"dataset_key": "x", "validation_mode": "picky"}, "validation_mode"),
        ({"dataset_key": "x", "request_id": "../etc"}, "request_id"),
        ({"dataset_key": "x", "dedup": {"threshold": 99}}, "dedup.threshold"),
        ({"dataset_key": "x", "labels": {"source": "pattern"}}, "labels.pattern"),
        ({"dataset_key": "x", "colour": "blue"}, "colour"),
    ],
)
def test_bad_requests_name_the_field_and_the_value(payload, expected):
    with pytest.raises(RequestError, match=expected):
        parse_request(payload)


def test_unknown_operation_error_lists_the_known_operations():
    with pytest.raises(RequestError) as error:
        parse_request({"dataset_key": "x", "operations": ["Sepia"]})
    for known in ("Resize", "GrayScale", "Noise", "Tile", "Augment"):
        assert known in str(error.value)


def test_run_config_round_trips_to_the_same_request():
    request = parse_request(
        {
            "request_id": "kanagawa",
            "dataset_key": "images/kanagawa.zip",
            "operations": ["GrayScale"],
            "validation_mode": "strict",
            "dedup": {"threshold": 4},
            "tiering": {"hot_storage_threshold": 10},
            "transform": {"images_per_shard": 16},
        }
    )
    config = request.to_run_config().to_config_dict()
    rebuilt = request_from_run_config(config, "kanagawa")
    assert rebuilt.stage_configs() == request.stage_configs()


def test_transform_config_rejects_unknown_operations_at_config_time():
    with pytest.raises(ValueError, match="Sepia"):
        TransformConfig(operations=["Sepia"])


def test_request_model_forbids_query_operators_as_ids():
    with pytest.raises(RequestError):
        parse_request({"dataset_key": "x", "request_id": {"$gt": ""}})
    assert DatasetRequest(dataset_key="x", request_id="a.b-c_1").id == "a.b-c_1"
