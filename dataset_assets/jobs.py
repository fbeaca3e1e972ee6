"""The job that builds one dataset: every stage, for one partition (one request)."""

from dagster import AssetSelection, define_asset_job

from dataset_assets.deployment import deployment_executor

process_dataset = define_asset_job(
    name="process_dataset",
    selection=AssetSelection.groups("dataset"),
    executor_def=deployment_executor(),
    description="Ingest, validate, deduplicate, transform, label, tier and report one dataset "
    "request. Pick the request's partition; its settings are the run config.",
)
