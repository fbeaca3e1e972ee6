"""The jobs: one registers a dataset request, the other builds it (every stage, one partition)."""

from dagster import AssetSelection, define_asset_job, job

from dataset_assets.deployment import deployment_executor
from dataset_assets.registration import register_dataset

process_dataset = define_asset_job(
    name="process_dataset",
    selection=AssetSelection.groups("dataset"),
    executor_def=deployment_executor(),
    description="Ingest, validate, deduplicate, transform, label, tier and report one dataset "
    "request. Pick the request's partition: its stored request gives the settings, and run "
    "config, when given, overrides them.",
)


@job(
    description="Add a dataset: the run config is a request (dataset_key, operations, ...). "
    "Then pick its partition in the asset graph and Materialize all, with no config."
)
def add_dataset():
    register_dataset()
