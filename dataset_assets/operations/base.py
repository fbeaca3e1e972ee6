"""The building blocks every image operation shares.

An operation is a frozen pydantic model: its fields are the parameters a request gives, validated
before any run starts, and its canonical parameters name its output (`fingerprint`). Subclassing
`Operation` registers the class under its own name in `OPERATIONS`, which is how a request's
`"GrayScale"` or `{"Resize": {...}}` finds its class.
"""

import hashlib
import inspect
import json
import math
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

FINGERPRINT_LENGTH = 12


class OperationError(ValueError):
    """An operation list or one of its operations cannot be used; the message says why."""


@dataclass(frozen=True)
class Variant:
    """One output image of a pipeline, with what the caller needs to store it.

    `suffix` is "" for a single output and tells several outputs of one source apart ("t0003" for
    tile 3, "a01" for augment variant 1, "a01_t0003" for tile 3 of that variant). `format` and
    `quality` are set by `Convert`; `None` means the caller's default. `seed` is the seed the
    variant's random operations were drawn from.
    """

    suffix: str
    image: Image.Image
    format: str | None
    quality: int | None
    seed: int


@dataclass(frozen=True)
class Bound:
    """The most a pipeline step can produce from one source image: how many outputs, and the
    largest width, height and pixel count of each.

    The pixel count is tracked apart from the sides because the input's sides and pixels are
    limited separately (a 20000 px wide image is never also 20000 px tall under a 50 MP limit).
    Requests are checked against the deployment's ceilings with this before any run starts.
    """

    outputs: int
    width: int
    height: int
    pixels: int

    @property
    def total_pixels(self) -> int:
        """Pixels held at once for one source image: every output at its largest."""
        return self.outputs * self.pixels

    def sized(self, width: int, height: int, pixels: int | None = None) -> "Bound":
        """The same outputs at a new size; `pixels` may bound the area below width x height."""
        area = width * height
        return Bound(self.outputs, width, height, area if pixels is None else min(pixels, area))

    def scaled(self, factor: float) -> "Bound":
        """Sides and area times `factor` (and its square), with room for rounding up."""
        width, height = math.ceil(self.width * factor), math.ceil(self.height * factor)
        extra = math.ceil((self.width + self.height) * factor) + 1
        return self.sized(width, height, math.ceil(self.pixels * factor * factor) + extra)


_REGISTRY: dict[str, type["Operation"]] = {}

OPERATIONS: Mapping[str, type["Operation"]] = MappingProxyType(_REGISTRY)


class Operation(BaseModel):
    """Base of every image operation; subclasses register under their class name."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if not cls.__doc__:
            raise TypeError(f"operation {cls.__name__} needs a one-line docstring")
        if cls.__name__ in _REGISTRY:
            raise TypeError(f"operation {cls.__name__} is already registered")
        _REGISTRY[cls.__name__] = cls

    @property
    def name(self) -> str:
        """The name requests use for this operation."""
        return type(self).__name__

    @abstractmethod
    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        """Transform one image into one image, or into several (e.g. tiles)."""

    def bound(self, bound: Bound) -> Bound:
        """The largest outputs of this step for inputs within `bound`; most keep the size."""
        return bound

    def apply_variant(self, variant: Variant, seed: int) -> list[Variant]:
        """Run this operation as a pipeline step; steps that split or re-encode override it."""
        (image,) = self.apply(variant.image, np.random.default_rng(seed))
        return [replace(variant, image=image)]

    def spec(self) -> str | dict[str, Any]:
        """This operation in the request format, with every parameter spelled out."""
        params = self.model_dump(mode="json", exclude_none=True)
        return {self.name: params} if params else self.name

    def fingerprint(self) -> str:
        """A short hex digest of the name and canonical parameters, stable across processes."""
        return digest(self.spec())


def digest(value: Any) -> str:
    """Hash a JSON-serialisable value canonically (sorted keys, no whitespace)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:FINGERPRINT_LENGTH]


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed derived from `seed` and `keys`, independent of Python's hash randomisation."""
    entropy = [seed] + [int.from_bytes(k.encode()) if isinstance(k, str) else k for k in keys]
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def join_suffix(*parts: str) -> str:
    return "_".join(part for part in parts if part)


def run_operations(
    operations: Sequence[Operation], start: Variant, *, first_index: int = 0
) -> list[Variant]:
    """Apply `operations` in order to `start`, each step drawing from its own derived seed."""
    variants = [start]
    for index, operation in enumerate(operations, first_index):
        variants = [
            output
            for variant in variants
            for output in operation.apply_variant(
                variant, derive_seed(variant.seed, index, variant.suffix)
            )
        ]
    return variants


def bound_operations(operations: Sequence[Operation], start: Bound) -> Bound:
    """The largest outputs of `operations` run in order on an image within `start`."""
    for operation in operations:
        start = operation.bound(start)
    return start


def describe_operations() -> list[tuple[str, str]]:
    """(name, one-line description) of every registered operation, for help texts."""
    return [
        (name, inspect.cleandoc(_REGISTRY[name].__doc__ or "").splitlines()[0])
        for name in sorted(_REGISTRY)
    ]
