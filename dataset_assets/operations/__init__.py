"""The image transform registry: the operations a dataset request can name, and their pipeline.

A request lists operations as names or one-key objects, e.g.
`[{"Resize": {"scaling_factor": 0.5}}, "GrayScale", {"Noise": {"noise_level": 0.1}}]`.
`OperationPipeline.parse` validates such a list before any run starts; `apply` runs it on one
image with a seed and returns every output image as a `Variant`.
"""

from dataset_assets.operations.augment import Augment
from dataset_assets.operations.base import (
    OPERATIONS,
    Operation,
    OperationError,
    Variant,
    describe_operations,
)
from dataset_assets.operations.color import ColorJitter, GrayScale, Normalize, Posterize
from dataset_assets.operations.encoding import Convert, encode_image, format_extension
from dataset_assets.operations.filters import Blur, Noise, Sharpen
from dataset_assets.operations.geometry import (
    CenterCrop,
    Crop,
    Flip,
    Pad,
    Resize,
    Rotate,
    Tile,
)
from dataset_assets.operations.pipeline import OperationPipeline

__all__ = [
    "OPERATIONS",
    "Augment",
    "Blur",
    "CenterCrop",
    "ColorJitter",
    "Convert",
    "Crop",
    "Flip",
    "GrayScale",
    "Noise",
    "Normalize",
    "Operation",
    "OperationError",
    "OperationPipeline",
    "Pad",
    "Posterize",
    "Resize",
    "Rotate",
    "Sharpen",
    "Tile",
    "Variant",
    "describe_operations",
    "encode_image",
    "format_extension",
]
