"""dataset-assets: raw image collections in, clean labelled ML datasets out, as Dagster assets."""

import warnings

from dagster import PreviewWarning

# The quality checks are partitioned like their assets on purpose (one result per request);
# Dagster 1.13 flags partitioned asset checks as a preview feature on every load.
warnings.filterwarnings(
    "ignore",
    message="Specifying a partitions_def on an AssetCheckSpec",
    category=PreviewWarning,
)
