"""The Helm chart renders valid Kubernetes objects, takes credentials only from Secrets, and lints.

Rendering is `helm template` through helm-python-sdk (Helm's Go SDK, no cluster, no helm binary);
objects are checked against the Kubernetes 1.33 OpenAPI schemas by kubernetes-validate. Both are
optional test dependencies: without them the file is skipped. The values for the official
dagster/dagster chart (helm/dagster-values.yaml) are checked against this chart's output; the Jobs
that run pods create for steps are checked in test_k8s_step_job.py.
"""

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataset_assets_tests.source_env import names_read_by_package

helm = pytest.importorskip(
    "helm_python", reason="helm chart tests need `pip install helm-python-sdk`"
)
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="helm chart tests need `pip install kubernetes-validate`"
)

HELM = Path(__file__).resolve().parents[1] / "helm"
CHART = HELM / "dataset-assets"
KUBERNETES_VERSION = "1.33.0"
PRODUCTION = {
    "replicaCount": 2,
    "image": {
        "repository": "registry.example.com/ml/dataset-assets",
        "tag": "2026.11.25",
        "pullPolicy": "Always",
    },
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "serviceAccountName": "dataset-assets-s3",
    "secretEnv": {
        "DATASET_ASSETS_BLOB_ROOT": {"secretName": "dataset-stores", "key": "blob-root"},
        "DATASET_ASSETS_METADATA_URI": {"secretName": "dataset-mongo", "key": "uri"},
        # Helm merges maps: `optional: false` overrides the chart's `optional: true` default.
        "AWS_SECRET_ACCESS_KEY": {
            "secretName": "dataset-s3",
            "key": "secret-access-key",
            "optional": False,
        },
        "DATASET_ASSETS_KAFKA_USERNAME": None,
        "DATASET_ASSETS_KAFKA_PASSWORD": None,
    },
    "env": {
        "DATASET_ASSETS_KEEP_WORKSPACE": 1,
        "AWS_REGION": "eu-west-1",
        "DATASET_ASSETS_SENSORS": "running",
    },
    "executor": {"kind": "k8s", "maxConcurrent": 32},
    "launchedPodResources": {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "3Gi"},
    },
    "resources": {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    },
    "nodeSelector": {"node.kubernetes.io/instance-type": "m7i.xlarge"},
    "tolerations": [
        {"key": "workload", "operator": "Equal", "value": "data", "effect": "NoSchedule"}
    ],
    "affinity": {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {
                            "matchLabels": {"app.kubernetes.io/name": "dataset-assets"}
                        },
                    },
                }
            ]
        }
    },
    "podAnnotations": {"prometheus.io/scrape": "false"},
    "service": {"annotations": {"example.com/owner": "ml-platform"}},
}
GRPC_COMMAND = ["dagster", "api", "grpc", "-m", "dataset_assets.definitions"]
GRPC_COMMAND += ["-h", "0.0.0.0", "-p", "3030"]


def _render(values: dict[str, Any] | None, namespace: str = "dagster") -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name="dataset-assets", namespace=namespace, is_install=True)


def _objects(rendered: dict[str, str]) -> dict[str, dict[str, Any]]:
    objects = {}
    for path, text in rendered.items():
        if path.endswith(".yaml"):
            for document in yaml.safe_load_all(text):
                if document:
                    objects[document["kind"]] = document
    return objects


def _container(objects: dict[str, dict[str, Any]]) -> dict[str, Any]:
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    return container


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container["env"]}


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["defaults", "production"])
def test_every_rendered_object_is_valid_kubernetes(values: dict[str, Any] | None) -> None:
    objects = _objects(_render(values))

    assert sorted(objects) == ["Deployment", "Service"]
    for document in objects.values():
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_code_server_runs_the_grpc_api_as_a_non_root_user() -> None:
    objects = _objects(_render(None))
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    container = _container(objects)

    assert container["command"] == GRPC_COMMAND
    assert container["ports"] == [{"name": "grpc", "containerPort": 3030, "protocol": "TCP"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert {"/opt/dagster/dagster_home", "/tmp"} <= mounts
    assert _env(container)["DAGSTER_HOME"]["value"] == "/opt/dagster/dagster_home"


def test_readiness_probe_asks_the_grpc_server_on_its_port() -> None:
    probe = _container(_objects(_render(None)))["readinessProbe"]

    assert probe["exec"]["command"] == ["dagster", "api", "grpc-health-check", "-p", "3030"]
    assert probe["periodSeconds"] >= 10


def test_service_exposes_the_grpc_port_of_the_code_server_pods() -> None:
    objects = _objects(_render(None))
    service, deployment = objects["Service"], objects["Deployment"]

    assert service["spec"]["ports"] == [
        {"name": "grpc", "port": 3030, "targetPort": "grpc", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_project_settings_come_from_secret_key_refs_only() -> None:
    env = _env(_container(_objects(_render(PRODUCTION))))

    for name, ref in PRODUCTION["secretEnv"].items():
        if ref is None:
            assert name not in env
            continue
        assert "value" not in env[name]
        assert env[name]["valueFrom"] == {
            "secretKeyRef": {"name": ref["secretName"], "key": ref["key"]}
        }
    assert env["DATASET_ASSETS_KEEP_WORKSPACE"]["value"] == "1"


def test_no_secret_value_appears_in_rendered_output() -> None:
    text = "\n".join(_render(PRODUCTION).values())

    assert "kind: Secret" not in text
    for credential_like in ("mongodb://", "s3://", "AKIA"):
        assert credential_like not in text


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["defaults", "production"])
def test_credentials_reach_every_pod_only_as_secret_key_refs(values: dict[str, Any] | None) -> None:
    env = _env(_container(_objects(_render(values))))
    context = json.loads(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"]["value"])
    launched = {entry["name"]: entry for entry in context["k8s"]["env"]}
    credentials = re.compile(r"PASSWORD|SECRET|USERNAME|ACCESS_KEY|_URI$|BLOB_ROOT|BOOTSTRAP")

    named = [name for name in env if credentials.search(name)]
    assert {"DATASET_ASSETS_METADATA_URI", "AWS_SECRET_ACCESS_KEY"} <= set(named)
    for entries in (env, launched):
        for name in named:
            assert set(entries[name]) == {"name", "valueFrom"}
            assert set(entries[name]["valueFrom"]) == {"secretKeyRef"}


def test_plain_env_cannot_shadow_a_secret_setting() -> None:
    leaked = {"env": {"DATASET_ASSETS_METADATA_URI": "mongodb://admin:hunter2@mongo:27017/db"}}

    with pytest.raises(helm.HelmRenderError, match=r"env\.DATASET_ASSETS_METADATA_URI"):
        _render(leaked)


def test_secret_setting_without_a_key_is_refused() -> None:
    incomplete = {"secretEnv": {"KAFKA_SASL_PASSWORD": {"secretName": "kafka-client"}}}

    with pytest.raises(helm.HelmRenderError, match=r"secretEnv\.KAFKA_SASL_PASSWORD\.key"):
        _render(incomplete)


def test_production_overrides_reach_the_pod_spec() -> None:
    objects = _objects(_render(PRODUCTION))
    deployment = objects["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    container = _container(objects)

    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == "registry.example.com/ml/dataset-assets:2026.11.25"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == PRODUCTION["resources"]
    assert pod["nodeSelector"] == PRODUCTION["nodeSelector"]
    assert pod["tolerations"] == PRODUCTION["tolerations"]
    assert pod["affinity"] == PRODUCTION["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["serviceAccountName"] == "dataset-assets-s3"
    assert objects["Service"]["metadata"]["annotations"] == {"example.com/owner": "ml-platform"}


def test_run_pods_inherit_image_and_secret_refs_through_the_container_context() -> None:
    container_context = pytest.importorskip("dagster_k8s.container_context")
    env = _env(_container(_objects(_render(PRODUCTION, namespace="ml-data"))))

    assert env["DAGSTER_CURRENT_IMAGE"]["value"] == (
        "registry.example.com/ml/dataset-assets:2026.11.25"
    )
    raw = json.loads(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"]["value"])
    context = container_context.K8sContainerContext.create_from_config(raw)
    run_config = context.run_k8s_config
    run_env = {entry["name"]: entry for entry in run_config.container_config["env"]}

    assert context.namespace == "ml-data"
    assert run_config.container_config["image_pull_policy"] == "Always"
    assert run_config.pod_spec_config["service_account_name"] == "dataset-assets-s3"
    assert run_env["DATASET_ASSETS_METADATA_URI"]["value_from"] == {
        "secret_key_ref": {"name": "dataset-mongo", "key": "uri"}
    }


def test_notes_tell_how_to_register_the_code_location() -> None:
    rendered = _render(None, namespace="ml-data")
    notes = next(text for path, text in rendered.items() if path.endswith("NOTES.txt"))

    assert "host: dataset-assets.ml-data.svc.cluster.local" in notes
    assert "DATASET_ASSETS_METADATA_URI <- secret dataset-assets, key metadata-uri" in notes


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["defaults", "production"])
def test_chart_passes_strict_lint(values: dict[str, Any] | None) -> None:
    report = helm.lint(CHART, values, strict=True, kube_version="v1.30.0")

    assert report["total_charts_linted"] == 1
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_default_secret_refs_cover_kafka_mongodb_and_s3_with_optional_credentials() -> None:
    env = _env(_container(_objects(_render(None))))
    refs = {
        name: entry["valueFrom"]["secretKeyRef"]
        for name, entry in env.items()
        if "valueFrom" in entry
    }

    assert {ref["name"] for ref in refs.values()} == {"dataset-assets"}
    assert {name for name, ref in refs.items() if not ref.get("optional")} == {
        "DATASET_ASSETS_METADATA_URI",
        "DATASET_ASSETS_BLOB_ROOT",
    }
    assert {
        "DATASET_ASSETS_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "DATASET_ASSETS_KAFKA_BOOTSTRAP",
        "DATASET_ASSETS_KAFKA_USERNAME",
        "DATASET_ASSETS_KAFKA_PASSWORD",
    } <= set(refs)


@pytest.mark.parametrize(
    ("values", "kind", "limit"),
    [
        (None, "k8s", "16"),
        (PRODUCTION, "k8s", "32"),
        ({"executor": {"kind": "multiprocess"}}, "multiprocess", "16"),
    ],
    ids=["defaults", "production", "multiprocess"],
)
def test_executor_choice_reaches_the_code_server_and_every_launched_pod(
    values: dict[str, Any] | None, kind: str, limit: str
) -> None:
    env = _env(_container(_objects(_render(values))))
    context = json.loads(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"]["value"])
    launched = {entry["name"]: entry.get("value") for entry in context["k8s"]["env"]}

    for settings in ({name: entry.get("value") for name, entry in env.items()}, launched):
        assert settings["DATASET_ASSETS_EXECUTOR"] == kind
        assert settings["DATASET_ASSETS_MAX_CONCURRENT"] == limit


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        (
            {"kind": "celery"},
            r"executor\.kind=celery: expected one of k8s, multiprocess, in_process",
        ),
        ({"maxConcurrent": 0}, r"executor\.maxConcurrent=0"),
    ],
)
def test_invalid_executor_settings_are_refused(executor: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmRenderError, match=message):
        _render({"executor": executor})


def test_launched_pods_get_resources_security_and_scratch_volumes_from_the_context() -> None:
    container_context = pytest.importorskip("dagster_k8s.container_context")
    env = _env(_container(_objects(_render(PRODUCTION))))
    raw = json.loads(env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"]["value"])
    context = container_context.K8sContainerContext.create_from_config(raw)
    mounts = {
        mount["mount_path"] for mount in context.run_k8s_config.container_config["volume_mounts"]
    }

    assert (
        context.run_k8s_config.container_config["resources"] == PRODUCTION["launchedPodResources"]
    )
    assert context.run_k8s_config.container_config["security_context"]["read_only_root_filesystem"]
    assert context.run_k8s_config.pod_spec_config["security_context"]["run_as_user"] == 1000
    assert mounts == {"/tmp", "/opt/dagster/dagster_home/storage"}


def test_launched_pods_get_nothing_when_include_config_in_launched_runs_is_off() -> None:
    off = {"includeConfigInLaunchedRuns": {"enabled": False}}
    env = _env(_container(_objects(_render(off))))

    assert "DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT" not in env
    assert env["DATASET_ASSETS_EXECUTOR"]["value"] == "k8s"


def test_official_chart_values_point_at_this_code_location_on_postgres() -> None:
    values = yaml.safe_load((HELM / "dagster-values.yaml").read_text())
    objects = _objects(_render(None))
    (server,) = values["dagsterWebserver"]["workspace"]["servers"]
    launcher = values["runLauncher"]
    postgresql = values["postgresql"]

    assert server["host"] == objects["Service"]["metadata"]["name"]
    assert server["port"] == objects["Service"]["spec"]["ports"][0]["port"]
    assert server["name"] == "dataset_assets"
    assert values["dagster-user-deployments"] == {"enabled": True, "enableSubchart": False}
    assert launcher["type"] == "K8sRunLauncher"
    assert set(launcher["config"]) == {"k8sRunLauncher"}
    assert postgresql["enabled"] is False
    assert postgresql["postgresqlScheme"] == "postgresql+psycopg2"
    assert "postgresqlPassword" not in postgresql
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["defaults", "production"])
def test_every_project_variable_the_chart_sets_is_one_the_code_reads(
    values: dict[str, Any] | None,
) -> None:
    env = _env(_container(_objects(_render(values))))
    read = names_read_by_package(CHART.parents[1] / "dataset_assets")

    assert {name for name in env if name.startswith("DATASET_ASSETS_")} <= read
