"""Operations that change an image's size, shape or orientation."""

import math
import re
from dataclasses import replace
from typing import Annotated, Literal, Self

import numpy as np
from PIL import Image, ImageColor, ImageOps
from PIL.JpegImagePlugin import JpegImageFile
from pydantic import Field, PlainSerializer, PlainValidator, model_validator

from dataset_assets.operations.base import Bound, Operation, OperationError, Variant, join_suffix
from dataset_assets.operations.modes import working_image

MAX_TILES = 10_000
MAX_PADDING = 65_535

_RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
_HEX_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")
_DRAFT_SCALES = (1, 2, 4, 8)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _fill(value: object) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255:
        return value
    if isinstance(value, str) and _HEX_COLOUR.fullmatch(value):
        return value.lower()
    raise ValueError("allowed: a grey level 0..255 or a colour '#rrggbb'")


def _sides(value: object) -> tuple[int, int, int, int]:
    sides = [value] * 4 if _is_int(value) else value
    if isinstance(sides, list | tuple) and len(sides) == 4:
        left, top, right, bottom = sides
        if all(_is_int(side) and 0 <= side <= MAX_PADDING for side in sides):
            return (left, top, right, bottom)
    raise ValueError(f"allowed: an integer 0..{MAX_PADDING} or a list [left, top, right, bottom]")


def _angle(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and -360 <= value <= 360:
        return float(value)
    return None


def _degrees(value: object) -> float | tuple[float, float]:
    angle = _angle(value)
    if angle is not None:
        return angle
    if isinstance(value, list | tuple) and len(value) == 2:
        low, high = _angle(value[0]), _angle(value[1])
        if low is not None and high is not None and low <= high:
            return (low, high)
    raise ValueError("allowed: an angle -360..360, or a range [low, high] drawn from at random")


def _listed(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value


Fill = Annotated[int | str, PlainValidator(_fill)]
Sides = Annotated[tuple[int, int, int, int], PlainValidator(_sides), PlainSerializer(_listed)]
Degrees = Annotated[float | tuple[float, float], PlainValidator(_degrees), PlainSerializer(_listed)]


def fill_colour(fill: int | str, mode: str) -> int | tuple[int, ...]:
    """`fill` as a pixel value of `mode`; grey levels and colours are opaque."""
    colour = f"#{fill:02x}{fill:02x}{fill:02x}" if isinstance(fill, int) else fill
    return ImageColor.getcolor(colour, mode)


def check_output_size(operation: str, width: int, height: int) -> None:
    """Refuse outputs beyond the pixel count at which Pillow refuses to decode (a bomb guard)."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and width * height > 2 * limit:
        raise OperationError(
            f"{operation} would make a {width}x{height} image, over the {2 * limit} pixel limit"
        )


def draft_scale(image: Image.Image) -> int:
    """How many times `Image.draft()` reduced a JPEG while decoding it (1 if it did not)."""
    if isinstance(image, JpegImageFile) and image.decoderconfig:
        return int(image.decoderconfig[0])
    return 1


def _source_box(size: tuple[int, int], source_size: tuple[int, int]) -> tuple[float, ...]:
    (width, height), (source_width, source_height) = size, source_size
    for scale in _DRAFT_SCALES:
        if -(-source_width // scale) == width and -(-source_height // scale) == height:
            return (0.0, 0.0, source_width / scale, source_height / scale)
    raise OperationError(
        f"a {width}x{height} image is not a JPEG draft reduction of {source_width}x{source_height}"
    )


class Resize(Operation):
    """Scale by scaling_factor, to exactly width x height, or down to fit max_side."""

    scaling_factor: float | None = Field(default=None, gt=0, le=8)
    width: int | None = Field(default=None, ge=1, le=65_535)
    height: int | None = Field(default=None, ge=1, le=65_535)
    max_side: int | None = Field(default=None, ge=1)
    resample: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "lanczos"

    @model_validator(mode="after")
    def _one_way_to_size(self) -> Self:
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together: give both")
        ways = (self.scaling_factor, self.width, self.max_side)
        if sum(way is not None for way in ways) != 1:
            raise ValueError("give exactly one of scaling_factor, width+height or max_side")
        return self

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """The output size for a `width` x `height` input."""
        if self.scaling_factor is not None:
            factor = self.scaling_factor
        elif self.width is not None and self.height is not None:
            return self.width, self.height
        elif self.max_side is not None and max(width, height) > self.max_side:
            factor = self.max_side / max(width, height)
        else:
            return width, height
        return max(1, round(width * factor)), max(1, round(height * factor))

    def bound(self, bound: Bound) -> Bound:
        if self.scaling_factor is not None:
            return bound.scaled(self.scaling_factor)
        if self.width is not None and self.height is not None:
            return bound.sized(self.width, self.height)
        side = self.max_side or 0
        return bound.sized(min(bound.width, side), min(bound.height, side), bound.pixels)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        return [self.resize(image, image.size)]

    def resize(self, image: Image.Image, source_size: tuple[int, int]) -> Image.Image:
        """Resize `image` as the `source_size` image it was decoded from with `Image.draft()`.

        The output size is computed from `source_size`, so a draft-reduced decode gives the same
        size as a full one.
        """
        target = self.target_size(*source_size)
        if target == image.size == source_size:
            return working_image(image)
        check_output_size(self.name, *target)
        box = _source_box(image.size, source_size)
        return working_image(image).resize(target, _RESAMPLING[self.resample], box=box)


class Crop(Operation):
    """Cut out the width x height box at left, top (clipped to the image)."""

    left: int = Field(ge=0)
    top: int = Field(ge=0)
    width: int = Field(ge=1)
    height: int = Field(ge=1)

    def bound(self, bound: Bound) -> Bound:
        return bound.sized(
            min(bound.width, self.width), min(bound.height, self.height), bound.pixels
        )

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        right = min(self.left + self.width, image.width)
        bottom = min(self.top + self.height, image.height)
        if right <= self.left or bottom <= self.top:
            raise OperationError(
                f"Crop box at ({self.left}, {self.top}) lies outside the "
                f"{image.width}x{image.height} image"
            )
        return [working_image(image).crop((self.left, self.top, right, bottom))]


class CenterCrop(Operation):
    """Cut out the central width x height (or size x size) box, clipped to the image."""

    width: int | None = Field(default=None, ge=1)
    height: int | None = Field(default=None, ge=1)
    size: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_way_to_size(self) -> Self:
        has_box = self.width is not None and self.height is not None
        has_part = self.width is not None or self.height is not None
        if has_box == (self.size is not None) or has_part != has_box:
            raise ValueError("give either size, or both width and height")
        return self

    def bound(self, bound: Bound) -> Bound:
        width = min(self.size or self.width or 0, bound.width)
        height = min(self.size or self.height or 0, bound.height)
        return bound.sized(width, height, bound.pixels)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        width = min(self.size or self.width or 0, image.width)
        height = min(self.size or self.height or 0, image.height)
        left = (image.width - width) // 2
        top = (image.height - height) // 2
        return [working_image(image).crop((left, top, left + width, top + height))]


class Pad(Operation):
    """Add a border of padding pixels (one number, or [left, top, right, bottom]) in fill."""

    padding: Sides
    fill: Fill = 0

    def bound(self, bound: Bound) -> Bound:
        left, top, right, bottom = self.padding
        across, down = left + right, top + bottom
        border = across * bound.height + down * bound.width + across * down
        return bound.sized(bound.width + across, bound.height + down, bound.pixels + border)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        left, top, right, bottom = self.padding
        check_output_size(self.name, image.width + left + right, image.height + top + bottom)
        image = working_image(image)
        return [ImageOps.expand(image, self.padding, fill=fill_colour(self.fill, image.mode))]


class Rotate(Operation):
    """Rotate counter-clockwise by degrees, or by a random angle in [low, high]."""

    degrees: Degrees
    expand: bool = True
    fill: Fill = 0

    def bound(self, bound: Bound) -> Bound:
        """The bounding box of the turned image at the worst angle in range, plus a pixel of
        rounding on each side: w|cos| + h|sin| wide, w|sin| + h|cos| high, and
        w h + (w^2 + h^2) |sin 2a| / 2 in area."""
        if not self.expand:
            return bound
        low, high = (
            (self.degrees, self.degrees) if isinstance(self.degrees, float) else self.degrees
        )
        width, height = bound.width, bound.height
        tilt = math.degrees(math.atan2(height, width))
        candidates = [low, high] + [
            angle
            for base in (tilt, 90 - tilt, 45)
            for turn in range(-4, 5)
            if low <= (angle := base + 90 * turn) <= high
        ]
        radians = [math.radians(angle) for angle in candidates]
        wide = max(width * abs(math.cos(a)) + height * abs(math.sin(a)) for a in radians)
        tall = max(width * abs(math.sin(a)) + height * abs(math.cos(a)) for a in radians)
        corners = max(abs(math.sin(2 * a)) for a in radians) * (width**2 + height**2) / 2
        new_width, new_height = math.ceil(wide) + 2, math.ceil(tall) + 2
        pixels = bound.pixels + math.ceil(corners) + 2 * (new_width + new_height)
        return bound.sized(new_width, new_height, pixels)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        angle = self.degrees if isinstance(self.degrees, float) else rng.uniform(*self.degrees)
        image = working_image(image)
        rotated = image.rotate(
            float(angle),
            resample=Image.Resampling.BICUBIC,
            expand=self.expand,
            fillcolor=fill_colour(self.fill, image.mode),
        )
        return [rotated]


class Flip(Operation):
    """Mirror the image left-right (horizontal) or top-bottom (vertical)."""

    direction: Literal["horizontal", "vertical"]

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        method = (
            Image.Transpose.FLIP_LEFT_RIGHT
            if self.direction == "horizontal"
            else Image.Transpose.FLIP_TOP_BOTTOM
        )
        return [working_image(image).transpose(method)]


def _tile_starts(length: int, size: int, stride: int) -> list[int]:
    count = 1 + -(-max(length - size, 0) // stride)
    return [index * stride for index in range(count)]


class Tile(Operation):
    """Split into size x size tiles, stepping size - overlap; edge tiles are clipped."""

    size: int = Field(ge=1, le=65_535)
    overlap: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> Self:
        if self.overlap >= self.size:
            raise ValueError(f"overlap must be below size ({self.size}), got {self.overlap}")
        return self

    def bound(self, bound: Bound) -> Bound:
        stride = self.size - self.overlap
        count = len(_tile_starts(bound.width, self.size, stride)) * len(
            _tile_starts(bound.height, self.size, stride)
        )
        width, height = min(bound.width, self.size), min(bound.height, self.size)
        pixels = min(bound.pixels, width * height)
        return Bound(bound.outputs * min(count, MAX_TILES), width, height, pixels)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        stride = self.size - self.overlap
        lefts = _tile_starts(image.width, self.size, stride)
        tops = _tile_starts(image.height, self.size, stride)
        if len(lefts) * len(tops) > MAX_TILES:
            raise OperationError(
                f"Tile would cut the {image.width}x{image.height} image into "
                f"{len(lefts) * len(tops)} tiles, over the limit of {MAX_TILES}"
            )
        image = working_image(image)
        return [
            image.crop(
                (left, top, min(left + self.size, image.width), min(top + self.size, image.height))
            )
            for top in tops
            for left in lefts
        ]

    def apply_variant(self, variant: Variant, seed: int) -> list[Variant]:
        tiles = self.apply(variant.image, np.random.default_rng(seed))
        return [
            replace(variant, suffix=join_suffix(variant.suffix, f"t{index:04d}"), image=tile)
            for index, tile in enumerate(tiles)
        ]
