"""Operations that change an image's colours and levels but not its geometry."""

import numpy as np
from PIL import Image, ImageEnhance, ImageOps
from pydantic import Field

from dataset_assets.operations.base import Operation
from dataset_assets.operations.modes import split_alpha, with_alpha, working_image


class GrayScale(Operation):
    """Convert to 8-bit grayscale (mode L); transparency is dropped."""

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        return [working_image(image).convert("L")]


class ColorJitter(Operation):
    """Scale brightness, contrast and saturation by random factors in [1 - j, 1 + j]."""

    brightness: float = Field(default=0.0, ge=0)
    contrast: float = Field(default=0.0, ge=0)
    saturation: float = Field(default=0.0, ge=0)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        image = working_image(image)
        for jitter, enhancer in (
            (self.brightness, ImageEnhance.Brightness),
            (self.contrast, ImageEnhance.Contrast),
            (self.saturation, ImageEnhance.Color),
        ):
            factor = rng.uniform(max(0.0, 1.0 - jitter), 1.0 + jitter)
            if factor != 1.0:
                image = enhancer(image).enhance(factor)
        return [image]


def _stretch_table(histogram: list[int], cutoff: float) -> list[int]:
    """A level table mapping the band's lowest level to 0 and its highest to 255.

    `cutoff` percent of the pixels at each end count as outliers and saturate.
    """
    cumulative = np.cumsum(histogram)
    total = int(cumulative[-1])
    cut = total * cutoff / 100
    low = int(np.searchsorted(cumulative, cut, side="right"))
    high = int(np.searchsorted(cumulative, total - cut, side="left"))
    levels = np.arange(256)
    if high <= low:
        return levels.tolist()
    return np.clip(np.rint((levels - low) * 255 / (high - low)), 0, 255).astype(int).tolist()


class Normalize(Operation):
    """Stretch each channel to the full 0..255 range, ignoring cutoff percent at both ends."""

    cutoff: float = Field(default=0.0, ge=0, lt=50)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        color, alpha = split_alpha(working_image(image))
        histogram = color.histogram()
        table = [
            level
            for start in range(0, len(histogram), 256)
            for level in _stretch_table(histogram[start : start + 256], self.cutoff)
        ]
        return [with_alpha(color.point(table), alpha)]


class Posterize(Operation):
    """Keep the top bits bits of each channel: 2 ** bits levels per channel instead of 256."""

    bits: int = Field(default=4, ge=1, le=8)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        color, alpha = split_alpha(working_image(image))
        return [with_alpha(ImageOps.posterize(color, self.bits), alpha)]
