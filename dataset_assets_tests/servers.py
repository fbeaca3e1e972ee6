"""Real protocol servers on loopback for integration tests: the local stack's own servers."""

from dataset_assets.stack import free_port, start_mongodb, start_s3_server, start_tansu

__all__ = ["free_port", "start_mongodb", "start_s3_server", "start_tansu"]
