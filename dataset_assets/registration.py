"""Registering a request: its partition in the Dagster instance, its request stored with it.

Every way in (the CLI, `prepare`, the Kafka sensor, the `add_dataset` job in the UI) stores the
whole request in the metadata store under the partition key, so every later run of the partition
(Materialize in the UI, a backfill, a re-execution, one stage rebuilt) finds its settings there.
"""

from dagster import (
    DagsterInstance,
    Failure,
    Field,
    OpExecutionContext,
    Permissive,
    op,
)

from dataset_assets.ingest.locate import check_source
from dataset_assets.partitions import datasets_partitions
from dataset_assets.request import DatasetRequest, parse_request
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource


def register_request(
    instance: DagsterInstance,
    blobs: BlobStoreResource,
    metadata: MetadataStoreResource,
    request: DatasetRequest,
) -> None:
    """Check the source exists, store the request, then add its partition.

    Raises `SourceError` or `ConnectionError` when the source cannot be read.
    """
    check_source(request.dataset_key, blobs.s3_client)
    metadata.store.track_request(request.id, request=request.model_dump(mode="json"))
    if not instance.has_dynamic_partition(datasets_partitions.name, request.id):
        instance.add_dynamic_partitions(datasets_partitions.name, [request.id])


@op(
    config_schema=Permissive(
        {
            "dataset_key": Field(
                str, description="Folder, archive, S3 prefix or URL list of the images."
            ),
            "request_id": Field(
                str, is_required=False, description="Partition key; derived when left out."
            ),
        }
    ),
)
def register_dataset(
    context: OpExecutionContext, blobs: BlobStoreResource, metadata: MetadataStoreResource
) -> str:
    """Check a request (the same fields as a request file) and register its partition."""
    try:
        request = parse_request(dict(context.op_config))
        register_request(context.instance, blobs, metadata, request)
    except (ValueError, ConnectionError) as error:  # a bad request or an unreadable source
        raise Failure(description=str(error), allow_retries=False) from None
    context.log.info(f"partition {request.id} registered: materialize it to build the dataset")
    return request.id
