"""dataset-assets: raw image collections in, clean labelled ML datasets out, as Dagster assets."""
