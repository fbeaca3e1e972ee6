"""Augmentation: several random variants of one image, each reproducible from its own seed."""

from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image
from pydantic import Field, field_serializer, field_validator

from dataset_assets.operations.base import (
    Bound,
    Operation,
    Variant,
    bound_operations,
    derive_seed,
    join_suffix,
    run_operations,
)
from dataset_assets.operations.spec import parse_operations


class Augment(Operation):
    """Make n variants, each running ops with its own seed, recorded with the variant."""

    n: int = Field(ge=1, le=64)
    ops: tuple[Operation, ...] = Field(min_length=1, max_length=16)

    @field_validator("ops", mode="before")
    @classmethod
    def _parse_ops(cls, value: Any) -> tuple[Operation, ...]:
        operations = parse_operations(value, where="ops")
        if any(isinstance(operation, Augment) for operation in operations):
            raise ValueError("ops cannot contain another Augment")
        return operations

    @field_serializer("ops")
    def _ops_spec(self, ops: tuple[Operation, ...]) -> list[str | dict[str, Any]]:
        return [operation.spec() for operation in ops]

    def bound(self, bound: Bound) -> Bound:
        variant = bound_operations(self.ops, replace(bound, outputs=1))
        return replace(variant, outputs=bound.outputs * self.n * variant.outputs)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        seed = int(rng.integers(2**63))
        start = Variant(suffix="", image=image, format=None, quality=None, seed=seed)
        return [variant.image for variant in self.apply_variant(start, seed)]

    def apply_variant(self, variant: Variant, seed: int) -> list[Variant]:
        """Variant i runs `ops` from seed `derive_seed(seed, i)`, stored as its `seed`.

        Running `ops` as a pipeline on the input image with that seed gives the variant again.
        """
        outputs: list[Variant] = []
        for index in range(self.n):
            start = replace(variant, suffix="", seed=derive_seed(seed, index))
            outputs.extend(
                replace(output, suffix=join_suffix(variant.suffix, f"a{index:02d}", output.suffix))
                for output in run_operations(self.ops, start)
            )
        return outputs
