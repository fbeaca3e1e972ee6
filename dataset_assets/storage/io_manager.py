"""Where step outputs live: stage manifests in the metadata store, the steps inside a stage in the
blob store. Neither touches the run's local disk, so any worker (a process, or a pod on a
cluster) reads what the previous step wrote."""

import pickle
from typing import Any

from dagster import ConfigurableIOManager, InputContext, OutputContext, ResourceDependency

from dataset_assets.manifest import Manifest
from dataset_assets.storage.resources import BlobStoreResource, MetadataStoreResource

STEP_OUTPUTS_PREFIX = "dagster/step-outputs"
"""Blob-store prefix of step outputs: `<prefix>/<run id>/<step key>/<output>.pickle`."""


class ManifestIOManager(ConfigurableIOManager):
    """Stores each stage's `Manifest` in the `stages` collection, keyed by dataset and stage.

    A manifest is small by construction: counts, a checksum and a summary, never the images.
    """

    metadata: ResourceDependency[MetadataStoreResource]

    def handle_output(self, context: OutputContext, obj: Manifest) -> None:
        self.metadata.store.save_stage(obj.dataset, obj.stage, obj.to_doc())

    def load_input(self, context: InputContext) -> Manifest:
        stage = context.upstream_output.asset_key.path[-1]
        doc = self.metadata.store.load_stage(context.partition_key, stage)
        if doc is None:
            raise FileNotFoundError(
                f"stage {stage!r} has no output for dataset {context.partition_key!r}: "
                "materialize it first"
            )
        return Manifest.from_doc(doc)


class StepOutputIOManager(ConfigurableIOManager):
    """The project's `io_manager`: outputs of the ops inside a graph asset (a shard plan, each
    shard's counts) pickled into the blob store, S3 on a cluster, where step pods that share no
    disk find them. They are small by construction; the images never pass through here."""

    blobs: ResourceDependency[BlobStoreResource]

    @staticmethod
    def key(context: OutputContext) -> str:
        return "/".join([STEP_OUTPUTS_PREFIX, *context.get_identifier()]) + ".pickle"

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        self.blobs.store.put_bytes(self.key(context), pickle.dumps(obj))

    def load_input(self, context: InputContext) -> Any:
        return pickle.loads(self.blobs.store.get_bytes(self.key(context.upstream_output)))
