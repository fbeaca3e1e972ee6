"""Where a run's steps execute: in one process, a process per step, or a Kubernetes Job per step.

`DATASET_ASSETS_EXECUTOR` (`multiprocess`, the default, `in_process` or `k8s`) picks the executor
when the code location loads, and `DATASET_ASSETS_MAX_CONCURRENT` caps the steps, or pods, that
one run has in flight. A run can still pick another executor in its run config:

    execution:
      config:
        in_process: {}                    # or multiprocess: {max_concurrent: 2}, or k8s: {...}

`k8s` is offered only where `DATASET_ASSETS_EXECUTOR=k8s`, so laptops and step processes never
import the Kubernetes client. On Kubernetes each step is a Job whose CPU and memory come from the
op's `dagster-k8s/config` tag: the shard steps get whole cores, the planning and merge steps little.

Step pods share no disk: the outputs of the steps inside a stage (the shard list, each shard's
counts) go to the blob store through the project's `io_manager` (`StepOutputIOManager`), the same
on a laptop and on a cluster.
"""

import os
from collections.abc import Mapping
from typing import Any

from dagster import (
    DagsterInvalidDefinitionError,
    Executor,
    ExecutorDefinition,
    ExecutorRequirement,
    Field,
    InitExecutorContext,
    Selector,
    executor,
    in_process_executor,
    multiprocess_executor,
)

EXECUTOR_ENV = "DATASET_ASSETS_EXECUTOR"
MAX_CONCURRENT_ENV = "DATASET_ASSETS_MAX_CONCURRENT"
EXECUTOR_KINDS = ("multiprocess", "in_process", "k8s")
DEFAULT_EXECUTOR = "multiprocess"
K8S_MAX_CONCURRENT = 16
"""Pods in flight per run on Kubernetes unless `DATASET_ASSETS_MAX_CONCURRENT` says otherwise."""


def k8s_step_tags(requests: Mapping[str, str], limits: Mapping[str, str]) -> dict[str, Any]:
    """Op tags that size the step's pod under `k8s_job_executor` (ignored by other executors)."""
    resources = {"requests": dict(requests), "limits": dict(limits)}
    return {"dagster-k8s/config": {"container_config": {"resources": resources}}}


SHARD_STEP_TAGS = k8s_step_tags(
    requests={"cpu": "2", "memory": "2Gi"}, limits={"cpu": "2", "memory": "4Gi"}
)
"""`validate_shard` and `transform_shard`: worker processes decoding and encoding images.

Two cores per pod, so two workers: the count follows the pod's cgroup CPU limit, not its node's
cores. Memory covers the interpreter (~220 MiB) plus each worker and a few decoded images.
"""

COORDINATION_STEP_TAGS = k8s_step_tags(
    requests={"cpu": "250m", "memory": "512Mi"}, limits={"cpu": "1", "memory": "1Gi"}
)
"""Planning and merge steps: metadata-store queries and counts, no image in memory."""


def _choices(include_k8s: bool) -> dict[str, ExecutorDefinition]:
    choices = {"multiprocess": multiprocess_executor, "in_process": in_process_executor}
    if include_k8s:
        try:
            from dagster_k8s import k8s_job_executor
        except ImportError as error:
            raise DagsterInvalidDefinitionError(
                f"{EXECUTOR_ENV}=k8s needs the dagster-k8s package "
                "(pip install dagster-k8s==0.29.27, as the container image does)"
            ) from error
        choices["k8s"] = k8s_job_executor
    return choices


def _configured_limit(environ: Mapping[str, str]) -> int | None:
    configured = environ.get(MAX_CONCURRENT_ENV, "").strip()
    if not configured:
        return None
    if not configured.isdigit() or int(configured) < 1:
        raise DagsterInvalidDefinitionError(
            f"{MAX_CONCURRENT_ENV}={configured!r}: expected a whole number of steps, at least 1"
        )
    return int(configured)


def deployment_executor(environ: Mapping[str, str] = os.environ) -> ExecutorDefinition:
    """The executor of `process_dataset`: a choice of executors, defaulting to the deployment's.

    Run config selects one of them like Dagster's default executor does (`multiprocess: {}`,
    `in_process: {}`, and `k8s: {...}` on Kubernetes); without `execution` config the kind named
    by `DATASET_ASSETS_EXECUTOR` runs. Unless the run config sets `max_concurrent`, a run keeps
    at most `DATASET_ASSETS_MAX_CONCURRENT` steps in flight (`K8S_MAX_CONCURRENT` pods with k8s,
    a process per core with multiprocess, when unset).
    """
    kind = environ.get(EXECUTOR_ENV, "").strip() or DEFAULT_EXECUTOR
    if kind not in EXECUTOR_KINDS:
        raise DagsterInvalidDefinitionError(
            f"{EXECUTOR_ENV}={kind!r}: expected one of {', '.join(EXECUTOR_KINDS)}"
        )
    choices = _choices(include_k8s=kind == "k8s")
    configured = _configured_limit(environ)
    limits = {"multiprocess": configured, "k8s": configured or K8S_MAX_CONCURRENT}
    default = {"max_concurrent": limits[kind]} if limits.get(kind) else {}

    def requirements(config: Mapping[str, Any]) -> list[ExecutorRequirement]:
        (chosen, settings), *_ = config.items()
        return list(choices[chosen].get_requirements(settings))

    @executor(
        name="dataset_assets_executor",
        config_schema=Field(
            Selector({name: choice.config_schema.as_field() for name, choice in choices.items()}),
            default_value={kind: default},
            description=f"Where steps run; the deployment's default is {kind!r} ({EXECUTOR_ENV}).",
        ),
        requirements=requirements,
    )
    def chosen_executor(init_context: InitExecutorContext) -> Executor:
        (chosen, settings), *_ = init_context.executor_config.items()
        if limits.get(chosen) and settings.get("max_concurrent") is None:
            settings = {**settings, "max_concurrent": limits[chosen]}
        definition = choices[chosen]
        return definition.executor_creation_fn(
            InitExecutorContext(
                job=init_context.job,
                executor_def=definition,
                executor_config=settings,
                instance=init_context.instance,
            )
        )

    return chosen_executor
