"""Image decoding, inspection and near-duplicate search used by the pipeline stages."""
