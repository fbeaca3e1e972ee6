"""Persists stage manifests in the metadata store instead of pickling them to disk."""

from dagster import ConfigurableIOManager, InputContext, OutputContext, ResourceDependency

from dataset_assets.manifest import Manifest
from dataset_assets.storage.resources import MetadataStoreResource


class ManifestIOManager(ConfigurableIOManager):
    """Stores each stage's `Manifest` in the `stages` collection, keyed by dataset and stage.

    A manifest is small by construction, so any worker (a pod on a cluster) reads what the previous
    step wrote from the shared metadata store; nothing travels through the run's local disk.
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
