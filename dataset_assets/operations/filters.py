"""Operations that filter pixel neighbourhoods or perturb pixel values."""

import numpy as np
from PIL import Image, ImageFilter
from pydantic import Field

from dataset_assets.operations.base import Operation
from dataset_assets.operations.modes import split_alpha, with_alpha, working_image


class Noise(Operation):
    """Add gaussian noise with sigma = noise_level * 255 to every colour channel."""

    noise_level: float = Field(ge=0, le=1)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        color, alpha = split_alpha(working_image(image))
        pixels = np.asarray(color, dtype=np.float32)
        noise = rng.standard_normal(pixels.shape, dtype=np.float32)
        noise *= np.float32(self.noise_level * 255)
        noise += pixels
        np.clip(np.rint(noise, out=noise), 0, 255, out=noise)
        return [with_alpha(Image.fromarray(noise.astype(np.uint8)), alpha)]


class Blur(Operation):
    """Gaussian blur with the given radius in pixels."""

    radius: float = Field(ge=0)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        return [working_image(image).filter(ImageFilter.GaussianBlur(self.radius))]


class Sharpen(Operation):
    """Unsharp mask: boost edges by percent where they differ by more than threshold."""

    radius: float = Field(default=2.0, ge=0)
    percent: int = Field(default=150, ge=0)
    threshold: int = Field(default=3, ge=0, le=255)

    def apply(self, image: Image.Image, rng: np.random.Generator) -> list[Image.Image]:
        unsharp = ImageFilter.UnsharpMask(self.radius, self.percent, self.threshold)
        return [working_image(image).filter(unsharp)]
