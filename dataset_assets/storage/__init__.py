"""Where blobs and metadata live: interfaces, implementations and their Dagster resources."""
