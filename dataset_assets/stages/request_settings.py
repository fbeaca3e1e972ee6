"""The settings a stage runs with: the request stored with its partition, overridden by run config.

Registering a partition (the CLI, the Kafka sensor, `prepare`, the `add_dataset` job) stores its
whole request in the metadata store under the partition key. So a run needs no config: the UI's
Materialize, a backfill, a re-execution and a rebuild of one stage all read the stored request.
Fields that the run config names win over the stored ones, and the request they make together is
stored in turn, so the next run without config rebuilds the same dataset.
"""

from typing import Any, TypeVar, cast

from dagster import AssetKey, Config, Failure, OpExecutionContext

from dataset_assets.policy import DeploymentPolicy
from dataset_assets.request import (
    DatasetRequest,
    RequestError,
    parse_request,
    request_from_sections,
    run_config_section,
)
from dataset_assets.storage.metadata import MetadataStore

C = TypeVar("C", bound=Config)


def effective_request(
    run_config: dict[str, Any], stored: dict[str, Any] | None, request_id: str
) -> tuple[DatasetRequest, bool]:
    """The request a run builds, and whether its run config changed the stored one.

    Each stage's section is the stored request's, updated with the fields the run config names.
    """
    base = parse_request({**stored, "request_id": request_id}).stage_configs() if stored else {}
    given = {stage: run_config_section(run_config, stage) for stage in run_config.get("ops", {})}
    if not stored and not given.get("raw_images", {}).get("dataset_key"):
        raise RequestError(
            "no request is stored with this partition and the run config gives no "
            "ops.raw_images.config.dataset_key: register the request first "
            "(dataset-assets prepare REQUEST.json, or the add_dataset job in the UI)"
        )
    sections = {stage: config.model_dump() for stage, config in base.items()}
    for stage, fields in given.items():
        sections[stage] = {**sections.get(stage, {}), **fields}
    return request_from_sections(sections, request_id), any(given.values())


def stage_config(
    context: OpExecutionContext,
    stage: str,
    config: C,
    store: MetadataStore,
    policy: DeploymentPolicy | None = None,
) -> C:
    """`stage`'s settings for this run, of the class of `config` (what Dagster parsed from the
    run config, defaults filled in, so it cannot tell given fields from defaults).

    With `policy`, the request is checked against the deployment's ceilings and sources, and its
    limits are brought within them. A request that cannot run fails the step at once, without
    retries, naming the problem.
    """
    dataset = context.partition_key
    stored = (store.get_request(dataset) or {}).get("request")
    try:
        request, overridden = effective_request(context.run.run_config, stored, dataset)
        if policy is not None:
            request = policy.apply(request)
    except RequestError as error:
        raise Failure(
            description=f"request {dataset!r} cannot run: {error}", allow_retries=False
        ) from None
    if overridden:
        store.track_request(dataset, request=request.model_dump(mode="json"), error=None)
        context.log.info(f"{stage}: run config overrides the stored request; stored the result")
    return cast(C, request.stage_configs()[stage])


def later_stage_config(context: OpExecutionContext, stage: str, store: MetadataStore) -> Any:
    """`stage`'s settings when this run goes on to materialize it, else None, so that an earlier
    stage can do part of its work in the same pass."""
    selection = context.run.asset_selection  # empty or None: the whole job
    if selection and AssetKey(stage) not in selection:
        return None
    dataset = context.partition_key
    stored = (store.get_request(dataset) or {}).get("request")
    request, _ = effective_request(context.run.run_config, stored, dataset)
    return request.stage_configs()[stage]
