"""Creates what the compose stack's stores need before the first run: the blob bucket and topics.

Run once by the `stack-init` service of docker-compose.yaml, with the code location's environment.
"""

import os

import boto3

from dataset_assets.storage.environment import resources_from_env


def main() -> None:
    bucket = os.environ["DATASET_ASSETS_BLOB_ROOT"].removeprefix("s3://").partition("/")[0]
    s3 = boto3.client("s3", endpoint_url=os.environ["DATASET_ASSETS_S3_ENDPOINT_URL"])
    if bucket not in {found["Name"] for found in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=bucket)
    created = resources_from_env()["kafka"].ensure_topics()
    print(f"bucket {bucket} ready; topics created: {', '.join(created) or 'none, all existed'}")


if __name__ == "__main__":
    main()
