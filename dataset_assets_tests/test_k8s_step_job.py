"""The Kubernetes Jobs that `k8s_job_executor` creates for the steps of a real run.

No cluster runs here, so the one call that would reach the Kubernetes API,
`DagsterKubernetesClient.create_namespaced_job_with_retries`, is replaced by a fake that keeps the
Job it was given and stops the run (the executor's clean-up call then fails fast against the
kubeconfig's closed loopback port). Everything before it is real: the Helm chart is rendered, the
code location's container context and image are those it hands to Dagster, the environment is
what Kubernetes would give the pod from a Secret, the instance has the `K8sRunLauncher` that the
dagster/dagster chart configures from helm/dagster-values.yaml, and a run of the sample dataset
produced the shards. Steps are then re-executed one at a time with the executor that
`DATASET_ASSETS_EXECUTOR=k8s` selects, and each Job is checked with kubernetes-validate.
"""

import base64
import json
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from dagster import (
    DagsterInstance,
    JobDefinition,
    ReexecutionOptions,
    deserialize_value,
    execute_job,
    instance_for_test,
    reconstructable,
)
from dagster._grpc.types import ExecuteStepArgs

from dataset_assets.definitions import build_definitions
from dataset_assets.deployment import (
    COORDINATION_STEP_TAGS,
    SHARD_STEP_TAGS,
    deployment_executor,
)
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import parse_request
from dataset_assets.storage.environment import resources_from_env

helm = pytest.importorskip("helm_python", reason="needs `pip install helm-python-sdk`")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="needs `pip install kubernetes-validate`"
)
k8s_client = pytest.importorskip("dagster_k8s.client", reason="needs `pip install dagster-k8s`")
kubernetes = pytest.importorskip("kubernetes", reason="needs `pip install dagster-k8s`")

HELM = Path(__file__).resolve().parents[1] / "helm"
KUBERNETES_VERSION = "1.33.0"
NAMESPACE = "dagster"
IMAGE = "registry.example.com/ml/dataset-assets:2026.11.25"
SHARD_STEP = "validated_images.validate_shard[shard_000]"
PLAN_STEP = "validated_images.plan_validation_shards"
INGEST_STEP = "raw_images"
CANARY = uuid.uuid4().hex
CREDENTIALS = {
    "aws-access-key-id": f"AKIA{CANARY[:16].upper()}",
    "aws-secret-access-key": f"aws-secret-{CANARY}",
    "kafka-username": f"kafka-user-{CANARY}",
    "kafka-password": f"kafka-password-{CANARY}",
}
"""Values of the `dataset-assets` Secret that must never show up anywhere Dagster records."""


class StepLaunched(Exception):
    """Raised by the fake API call once it holds the Job: there is no cluster to run it."""


def process_dataset_in_a_step_pod() -> JobDefinition:
    """`process_dataset` as a pod with the chart's environment loads it (DATASET_ASSETS_* set)."""
    job = build_definitions(resources_from_env()).resolve_job_def("process_dataset")
    return job.with_executor_def(deployment_executor())


def render_chart() -> dict[str, dict[str, Any]]:
    with helm.Chart.load(HELM / "dataset-assets") as chart:
        rendered = chart.render(
            {"image": {"repository": IMAGE.split(":")[0], "tag": IMAGE.split(":")[1]}},
            name="dataset-assets",
            namespace=NAMESPACE,
            is_install=True,
        )
    documents = (yaml.safe_load(text) for path, text in rendered.items() if path.endswith("yaml"))
    return {doc["kind"]: doc for doc in documents if doc}


def pod_environment(env: list[dict[str, Any]], secrets: Mapping[str, Mapping[str, str]]) -> dict:
    """What Kubernetes puts in the container's environment for `env`, reading `secrets`."""
    resolved = {}
    for entry in env:
        if "value" in entry:
            resolved[entry["name"]] = entry["value"]
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None and not ref.get("optional"):
            raise KeyError(f"secret {ref['name']} has no key {ref['key']}")
        if value is not None:
            resolved[entry["name"]] = value
    return resolved


def run_launcher_config(kubeconfig: Path) -> dict[str, Any]:
    """The `run_launcher` the dagster/dagster chart writes into dagster.yaml for these values."""
    values = yaml.safe_load((HELM / "dagster-values.yaml").read_text())
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    return {
        "module": "dagster_k8s",
        "class": "K8sRunLauncher",
        "config": {
            "load_incluster_config": False,
            "kubeconfig_file": str(kubeconfig),
            "job_namespace": NAMESPACE,
            "image_pull_policy": launcher["imagePullPolicy"],
            "service_account_name": "dagster",
            "dagster_home": "/opt/dagster/dagster_home",
            "instance_config_map": "dagster-instance",
            "postgres_password_secret": values["global"]["postgresqlSecretName"],
            "env_config_maps": ["dagster-pipeline-env"],
            "fail_pod_on_run_failure": launcher["failPodOnRunFailure"],
        },
    }


def write_kubeconfig(path: Path) -> Path:
    """A kubeconfig naming a cluster nobody listens on: only the fake API call is ever made."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "none", "user": {"token": "not-a-token"}}],
                "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
                "current-context": "none",
            }
        )
    )
    return path


@dataclass
class Launched:
    """The Jobs created for each re-executed step, with the instance that recorded the runs."""

    jobs: dict[str, dict[str, Any]]
    namespaces: dict[str, str]
    instance: DagsterInstance
    run_ids: list[str]
    chart_text: str
    secrets: dict[str, dict[str, str]]
    blob_bucket: str
    instance_home: Path


@pytest.fixture(scope="module")
def launched(
    tmp_path_factory: pytest.TempPathFactory, mongodb_uri: str, s3_endpoint: str, sample_dir: Path
) -> Iterator[Launched]:
    folder = tmp_path_factory.mktemp("k8s")
    objects = render_chart()
    (container,) = objects["Deployment"]["spec"]["template"]["spec"]["containers"]
    server_env = {entry["name"]: entry for entry in container["env"]}
    container_context = json.loads(server_env["DAGSTER_CLI_API_GRPC_CONTAINER_CONTEXT"]["value"])
    bucket = f"k8s-{CANARY[:12]}"
    secrets = {
        "dataset-assets": {
            **CREDENTIALS,
            "metadata-uri": mongodb_uri.replace("/?", f"/k8s_{CANARY[:8]}?appname={CANARY}&"),
            "blob-root": f"s3://{bucket}/datasets",
            "s3-endpoint-url": s3_endpoint,
        }
    }
    environment = pod_environment(container_context["k8s"]["env"], secrets)
    environment["DATASET_ASSETS_HOME"] = str(folder / "home")
    environment["DATASET_ASSETS_SOURCE_ROOTS"] = str(tmp_path_factory.getbasetemp())
    environment["AWS_REGION"] = "us-east-1"
    captured: dict[str, tuple[Any, str]] = {}

    def create_job(self, body: Any, namespace: str, **kwargs: Any) -> None:
        (container,) = body.spec.template.spec.containers
        step = next(env.value for env in container.env if env.name == "DAGSTER_RUN_STEP_KEY")
        captured[step] = (body, namespace)
        raise StepLaunched(body.metadata.name)

    with pytest.MonkeyPatch.context() as patch:
        for name, value in environment.items():
            patch.setenv(name, value)
        boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
            Bucket=bucket
        )
        kubeconfig = write_kubeconfig(folder / "kubeconfig")
        recon = reconstructable(process_dataset_in_a_step_pod)
        job = recon._replace(
            repository=recon.repository._replace(
                container_image=server_env["DAGSTER_CURRENT_IMAGE"]["value"],
                container_context=container_context,
            )
        )
        overrides = {"run_launcher": run_launcher_config(kubeconfig)}
        (folder / "dagster").mkdir()
        with instance_for_test(overrides=overrides, temp_dir=str(folder / "dagster")) as instance:
            request = parse_request(
                {"request_id": "k8s-sample", "dataset_key": str(sample_dir), "operations": []}
            )
            instance.add_dynamic_partitions(datasets_partitions.name, [request.id])
            run_config = request.to_run_config().to_config_dict()
            tags = {"dagster/partition": request.id}
            in_process = {**run_config, "execution": {"config": {"in_process": {}}}}
            with execute_job(job, instance, run_config=in_process, tags=tags) as parent:
                assert parent.success
            run_ids = [parent.run_id]
            patch.setattr(
                k8s_client.DagsterKubernetesClient, "create_namespaced_job_with_retries", create_job
            )
            for step in (SHARD_STEP, PLAN_STEP, INGEST_STEP):
                options = ReexecutionOptions(parent.run_id, step_selection=[step])
                with execute_job(
                    job, instance, run_config=run_config, tags=tags, reexecution_options=options
                ) as result:
                    assert not result.success
                    run_ids.append(result.run_id)
            serialize = kubernetes.client.ApiClient().sanitize_for_serialization
            yield Launched(
                jobs={step: serialize(body) for step, (body, _) in captured.items()},
                namespaces={step: namespace for step, (_, namespace) in captured.items()},
                instance=instance,
                run_ids=run_ids,
                chart_text=yaml.safe_dump_all(objects.values()),
                secrets=secrets,
                blob_bucket=bucket,
                instance_home=folder / "dagster",
            )


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def _env(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in _container(job)["env"]}


def test_each_step_becomes_one_valid_kubernetes_job_in_the_release_namespace(launched) -> None:
    assert set(launched.jobs) == {SHARD_STEP, PLAN_STEP, INGEST_STEP}
    for step, job in launched.jobs.items():
        kubernetes_validate.validate(job, KUBERNETES_VERSION, strict=True)
        assert job["kind"] == "Job"
        assert _env(job)["DAGSTER_RUN_STEP_KEY"]["value"] == step
        assert launched.namespaces[step] == NAMESPACE


def test_shard_step_pod_runs_the_code_location_image_on_its_own_step(launched) -> None:
    job = launched.jobs[SHARD_STEP]
    container = _container(job)
    arguments = _env(job)["DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"]["value"]
    step_args = deserialize_value(
        zlib.decompress(base64.b64decode(arguments)).decode(), as_type=ExecuteStepArgs
    )

    assert container["image"] == IMAGE
    assert container["args"] == ["dagster", "api", "execute_step"]
    assert step_args.step_keys_to_execute == [SHARD_STEP]
    assert step_args.run_id == launched.run_ids[1]
    assert step_args.job_origin.repository_origin.container_image == IMAGE
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_shard_step_pod_reads_stores_and_credentials_from_secret_refs(launched) -> None:
    env = _env(launched.jobs[SHARD_STEP])

    for name, key in [
        ("DATASET_ASSETS_METADATA_URI", "metadata-uri"),
        ("DATASET_ASSETS_BLOB_ROOT", "blob-root"),
        ("DATASET_ASSETS_S3_ENDPOINT_URL", "s3-endpoint-url"),
        ("AWS_ACCESS_KEY_ID", "aws-access-key-id"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-access-key"),
        ("DATASET_ASSETS_KAFKA_BOOTSTRAP", "kafka-bootstrap"),
        ("DATASET_ASSETS_KAFKA_USERNAME", "kafka-username"),
        ("DATASET_ASSETS_KAFKA_PASSWORD", "kafka-password"),
    ]:
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "dataset-assets"
        assert env[name]["valueFrom"]["secretKeyRef"]["key"] == key
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql",
        "key": "postgresql-password",
    }
    assert env["DATASET_ASSETS_EXECUTOR"]["value"] == "k8s"


def test_step_pod_resources_come_from_the_op_tags(launched) -> None:
    def tagged(tags: dict[str, Any]) -> dict[str, Any]:
        return tags["dagster-k8s/config"]["container_config"]["resources"]

    chart = yaml.safe_load((HELM / "dataset-assets" / "values.yaml").read_text())

    assert _container(launched.jobs[SHARD_STEP])["resources"] == tagged(SHARD_STEP_TAGS)
    assert _container(launched.jobs[PLAN_STEP])["resources"] == tagged(COORDINATION_STEP_TAGS)
    assert _container(launched.jobs[INGEST_STEP])["resources"] == chart["launchedPodResources"]


def test_step_pods_run_unprivileged_with_writable_scratch_only(launched) -> None:
    job = launched.jobs[SHARD_STEP]
    pod = job["spec"]["template"]["spec"]
    container = _container(job)
    mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert volumes[mounts["/tmp"]]["emptyDir"] == {}
    assert volumes[mounts["/opt/dagster/dagster_home/storage"]]["emptyDir"] == {}
    assert pod["serviceAccountName"] == "dagster"


def test_no_credential_reaches_manifests_run_config_logs_or_asset_metadata(launched) -> None:
    instance = launched.instance
    secret_values = [*CREDENTIALS.values(), launched.secrets["dataset-assets"]["metadata-uri"]]
    recorded = [launched.chart_text, json.dumps(launched.jobs)]
    for run_id in launched.run_ids:
        recorded.append(json.dumps(instance.get_run_by_id(run_id).run_config))
        recorded.extend(record.to_json() for record in instance.all_logs(run_id))
    stored = [path.read_bytes() for path in launched.instance_home.rglob("*") if path.is_file()]
    materializations = [
        record.to_json()
        for record in instance.all_logs(launched.run_ids[0])
        if record.dagster_event and record.dagster_event.is_step_materialization
    ]

    assert len(materializations) >= 7
    assert any(launched.blob_bucket in text for text in materializations)
    assert stored
    for value in [CANARY, *secret_values]:
        assert all(value not in text for text in recorded)
        assert all(value.encode() not in data for data in stored)
