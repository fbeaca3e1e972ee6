"""The Helm chart renders valid Kubernetes objects, takes credentials only from Secrets, and lints.

Rendering is `helm template` through helm-python-sdk (Helm's Go SDK, no cluster, no helm binary);
objects are checked against the Kubernetes 1.33 OpenAPI schemas by kubernetes-validate. Both are
optional test dependencies: without them the file is skipped.
"""

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip(
    "helm_python", reason="helm chart tests need `pip install helm-python-sdk`"
)
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="helm chart tests need `pip install kubernetes-validate`"
)

CHART = Path(__file__).resolve().parents[1] / "helm" / "dataset-assets"
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
        "AWS_SECRET_ACCESS_KEY": {"secretName": "dataset-s3", "key": "secret-access-key"},
    },
    "env": {"DATASET_ASSETS_KEEP_WORKSPACE": 1, "AWS_REGION": "eu-west-1"},
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
        assert "value" not in env[name]
        assert env[name]["valueFrom"] == {
            "secretKeyRef": {"name": ref["secretName"], "key": ref["key"]}
        }
    assert env["DATASET_ASSETS_KEEP_WORKSPACE"]["value"] == "1"


def test_no_secret_value_appears_in_rendered_output() -> None:
    text = "\n".join(_render(PRODUCTION).values())

    assert "kind: Secret" not in text
    for credential_like in ("mongodb://", "s3://", "password", "PASSWORD"):
        assert credential_like not in text


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
