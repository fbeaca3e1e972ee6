"""Hostile requests: every attack a requester can send, through Kafka (real Tansu) and the CLI.

Each one must be a clear, one-line request error before any run starts, and must not stop the
sensor from running the valid requests around it, exactly once each.
"""

import json
import random
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance

from dataset_assets.cli import main
from dataset_assets.request import MAX_JSON_DEPTH, compile_label_pattern, parse_request
from dataset_assets.storage.resources import MetadataStoreResource
from dataset_assets_tests.servers import read_topic
from dataset_assets_tests.test_kafka_sensor import (
    POLICY,
    apply,
    make_resource,
    send,
    tick,
)

SOURCES = POLICY.source_roots[0]
"""The sensor's one source root: requests name sources under it (the sensor never opens them)."""


def body(**fields: Any) -> dict[str, Any]:
    return {"dataset_key": f"{SOURCES}/a", **fields}


def nested(depth: int) -> str:
    return '{"dataset_key": "sets/a", "labels": ' + "[" * depth + "]" * depth + "}"


POISONS: dict[str, tuple[dict[str, Any] | str, str]] = {
    "invalid_regex": (
        body(labels={"source": "pattern", "pattern": "(?P<label>[a-z"}),
        "labels.pattern '(?P<label>[a-z' is not a pattern RE2 accepts",
    ),
    "backreference": (
        body(labels={"source": "pattern", "pattern": r"(?P<label>a)\1"}),
        "backreferences and lookarounds are not supported",
    ),
    "deep_json": (nested(5_000), f"nested deeper than {MAX_JSON_DEPTH} levels"),
    "huge_number": ('{"dataset_key": "sets/a", "seed": ' + "9" * 5_000 + "}", "not valid JSON"),
    "etc": ({"dataset_key": "/etc"}, "outside the folders requests may read"),
    "store_itself": ({"dataset_key": "../../"}, "outside the folders requests may read"),
    "other_bucket": ({"dataset_key": "s3://other/x.zip"}, "outside the S3 roots"),
    "parquet_list_outside": (
        {"dataset_key": "/tmp/urls.parquet"},
        "outside the folders requests may read",
    ),
    "parquet_list_other_bucket": (
        {"dataset_key": "s3://other/laion/part-0.parquet"},
        "outside the S3 roots",
    ),
    "private_hosts": (
        body(ingest={"allow_private_hosts": True}),
        "ingest.allow_private_hosts is deployment policy (DATASET_ASSETS_ALLOW_PRIVATE_HOSTS)",
    ),
    "augment_resize_8": (
        body(operations=[{"Augment": {"n": 8, "ops": [{"Resize": {"scaling_factor": 8}}]}}]),
        "output pixels",
    ),
    "rotate_8_times": (body(operations=[{"Rotate": {"degrees": 45}}] * 8), "output pixels"),
    "tile_of_1": (body(operations=[{"Tile": {"size": 1}}]), "outputs from a source image"),
    "huge_resize": (
        body(operations=[{"Resize": {"width": 65535, "height": 65535}}]),
        "output pixels",
    ),
    "unbounded_file_size": (
        body(ingest={"max_file_bytes": 10**12}),
        "ingest.max_file_bytes=1000000000000 is over the deployment's limit",
    ),
    "trailing_newline_id": (body(request_id="good-id\n"), "request_id 'good-id\\n' is not allowed"),
    "misspelt_setting": (
        body(validation={"min_widht": 64}),
        "validation.min_widht: unknown setting (did you mean 'min_width'?)",
    ),
    "misspelt_top_level": (body(operation=["GrayScale"]), "did you mean 'operations'?"),
    "negative_seed": (body(seed=-1), "seed: Input should be greater than or equal to 0"),
    "manifest_escape": (
        body(labels={"source": "manifest", "manifest": "../../etc/passwd"}),
        "labels.manifest names a file inside the dataset",
    ),
    "many_workers": (body(transform={"workers": 100_000}), "transform.workers"),
    "dedup_many_workers": (body(dedup={"workers": 9999}), "dedup.workers"),
    "dedup_pool": (body(dedup={"pool": "forkbomb"}), "dedup.pool: Input should be 'auto'"),
    "not_an_object": ("[1, 2, 3]", "request must be a JSON object"),
    "hundred_operations": (
        body(operations=["GrayScale"] * 100),
        "operations: List should have at most 64 items",
    ),
}
OPERATOR_MAY = {
    "etc",
    "store_itself",
    "other_bucket",
    "parquet_list_outside",
    "parquet_list_other_bucket",
}
"""Sources outside the roots: the CLI's own user is the operator, who may read any source."""


def encoded(payload: dict[str, Any] | str) -> bytes:
    return (payload if isinstance(payload, str) else json.dumps(payload)).encode()


def random_bytes(count: int) -> list[bytes]:
    generator = random.Random(10)
    return [generator.randbytes(generator.randint(1, 400)) for _ in range(count)]


@pytest.mark.parametrize("name", sorted(POISONS))
def test_every_poison_is_a_request_error_naming_the_cause(name: str) -> None:
    payload, expected = POISONS[name]
    with pytest.raises(ValueError) as raised:
        POLICY.apply(parse_request(encoded(payload)))
    assert expected in str(raised.value)


def test_a_nested_quantifier_pattern_runs_in_linear_time() -> None:
    """The pattern that took 65 s on one 31-character name with a backtracking engine."""
    request = parse_request(body(labels={"source": "pattern", "pattern": "(?P<label>(a+)+)$"}))
    pattern = request.stage_configs()["labels"].pattern
    compiled = compile_label_pattern(pattern)
    assert compiled.search("a" * 30 + "!") is None
    assert compiled.search("a" * 100_000 + "!") is None
    assert compiled.search("aaa").group("label") == "aaa"


def test_the_sensor_survives_every_poison_and_runs_every_valid_request_exactly_once(
    kafka: str, tmp_path: Path
) -> None:
    topics = make_resource(kafka, "hostile")
    metadata = MetadataStoreResource(uri=str(tmp_path / "metadata.db"))
    poisons = [encoded(payload) for payload, _ in POISONS.values()] + random_bytes(40)
    messages, valid = [], set()
    for index, poison in enumerate(poisons):
        request_id = f"valid-{index}"
        valid.add(request_id)
        messages.append((index % 3, json.dumps(body(request_id=request_id)).encode()))
        messages.append((index % 3, poison))
    send(topics, messages)

    instance = DagsterInstance.ephemeral()
    cursor, run_keys = None, []
    for _ in range(5):
        result = tick(topics, metadata, instance, cursor)
        apply(instance, result)
        run_keys += [run.run_key for run in result.run_requests]
        if result.cursor == cursor:
            break
        cursor = result.cursor

    assert sorted(run_keys) == sorted(valid), "each valid request runs once, none is lost"
    errors = read_topic(topics, topics.errors_topic)
    assert len(errors) == len(poisons)
    reasons = {error["value"]["error"] for error in errors}
    for name, (_, expected) in POISONS.items():
        assert any(expected in reason for reason in reasons), name
    assert all(error["value"]["error"] for error in errors)


@pytest.mark.parametrize("name", sorted(set(POISONS) - OPERATOR_MAY))
def test_the_cli_refuses_every_poison_in_one_line_and_starts_nothing(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("DATASET_ASSETS_HOME", str(home))
    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))
    monkeypatch.delenv("DATASET_ASSETS_SOURCE_ROOTS", raising=False)
    request_file = tmp_path / "request.json"
    request_file.write_bytes(encoded(POISONS[name][0]))

    code = main(["run", str(request_file)])

    err = capsys.readouterr().err
    assert code in (1, 2)
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    assert not home.exists(), "nothing was written and no run was started"
