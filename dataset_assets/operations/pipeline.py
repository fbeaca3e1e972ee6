"""A request's operation list as one object: parsed once, fingerprinted, run on every image."""

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any

from PIL import Image

from dataset_assets.operations.base import (
    Bound,
    Operation,
    OperationError,
    Variant,
    bound_operations,
    digest,
    run_operations,
)
from dataset_assets.operations.geometry import Resize, draft_scale
from dataset_assets.operations.spec import parse_operations


@dataclass(frozen=True)
class OperationPipeline:
    """The operations of a request, applied in order to each image."""

    operations: tuple[Operation, ...] = ()

    @classmethod
    def parse(cls, spec: Sequence[str | Mapping[str, Any]]) -> "OperationPipeline":
        """Read the request format; raises `OperationError` naming every bad item."""
        return cls(parse_operations(spec))

    def to_spec(self) -> list[str | dict[str, Any]]:
        """The canonical request form: JSON-serialisable, and `parse` gives this pipeline back."""
        return [operation.spec() for operation in self.operations]

    @cached_property
    def fingerprint(self) -> str:
        """12 hex characters naming the output of the whole list (the empty list included);
        computed once, as every image's output key names it."""
        return digest(self.to_spec())

    def bound(self, width: int, height: int, pixels: int) -> Bound:
        """The most this pipeline can produce from one image of at most `width` x `height` and
        `pixels`: how many outputs and how large, computed from the parameters alone."""
        return bound_operations(
            self.operations, Bound(1, width, height, min(pixels, width * height))
        )

    def draft_size(self, width: int, height: int) -> tuple[int, int] | None:
        """The size to ask `Image.draft()` for when the pipeline starts by downscaling, else None.

        A JPEG decoder can then skip most of the work; pass the full size as `source_size` to
        `apply` and the output has the same size as after a full decode::

            size = pipeline.draft_size(*image.size)
            if size:
                source_size = image.size
                image.draft(image.mode, size)
        """
        first = self.operations[0] if self.operations else None
        if not isinstance(first, Resize):
            return None
        target = first.target_size(width, height)
        if target[0] <= width and target[1] <= height and target != (width, height):
            return target
        return None

    def apply(
        self, image: Image.Image, seed: int, *, source_size: tuple[int, int] | None = None
    ) -> list[Variant]:
        """Run the operations in order; the same image and seed always give the same pixels.

        `source_size` is the image's size before `Image.draft()` reduced it; it is required after
        a reducing draft, so that the leading Resize sizes the output from the full image.
        """
        seed = operator.index(seed)
        if seed < 0:
            raise OperationError(f"seed must be a non-negative integer, got {seed}")
        if source_size is None and draft_scale(image) > 1:
            raise OperationError(
                "the image was reduced by Image.draft(); pass source_size=(width, height) "
                "of the full image"
            )
        start = Variant(suffix="", image=image, format=None, quality=None, seed=seed)
        if source_size is None or source_size == image.size:
            return run_operations(self.operations, start)
        first = self.operations[0] if self.operations else None
        if not isinstance(first, Resize):
            raise OperationError(
                f"source_size {source_size} differs from the image size {image.size}, "
                "but the pipeline does not start with Resize"
            )
        start = replace(start, image=first.resize(image, source_size))
        return run_operations(self.operations[1:], start, first_index=1)
