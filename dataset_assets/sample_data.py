"""A small, deterministic image collection on which every pipeline stage visibly does something.

`write_sample_dataset(dest)` writes 28 files (about 2.2 MB) into three class folders. The pictures
are painted procedurally, so the sample needs no download and is byte-identical for a given seed.

Photos (23, all distinct: their 64-bit perceptual hashes differ in more than 10 bits):

- `mountains/ridge_01.jpg` ... `ridge_07`: layered fractal ridges under a gradient sky;
  `ridge_04` is a PNG.
- `waves/swell_01.jpg` ... `swell_07`: crossing sine swells with colour gradients and foam;
  `swell_03` is a PNG.
- `forest/pines_01.jpg` ... `pines_07`: vertical trunk strokes in fog and sunbeams.
- `mountains/ridge_cmyk.jpg`: a valid CMYK JPEG; validation converts it to RGB.
- `waves/swell_png_inside.jpg`: a valid PNG behind a `.jpg` name (an extension mismatch).

Sizes vary between 480x360 and 1280x960, portrait and landscape. Files that each stage must catch:

- `waves/copy_of_ridge_02.jpg`: an exact duplicate (the same bytes) of `mountains/ridge_02.jpg`,
  filed under another class.
- `forest/pines_03_resized.jpg`: a near duplicate of `forest/pines_03.jpg`, resized to 90% and
  re-encoded at JPEG quality 70 (perceptual hash within 4 bits of the original).
- `waves/truncated.jpg`: the first 60% of a real JPEG (corrupt; validation says `truncated`).
- `forest/notes.jpg`: text behind an image name (`not_an_image`).
- `mountains/tiny.png`: a 16x16 picture, below the 32x32 minimum (`too_small`).

`SAMPLE_EXPECTATIONS` holds the counts a run over the sample should report.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image, ImageDraw

_Painter = Callable[[np.random.Generator, int, int], np.ndarray]
_RGB = tuple[float, float, float]

SAMPLE_EXPECTATIONS: Mapping[str, int] = MappingProxyType(
    {
        "files": 28,
        "classes": 3,
        "corrupt": 1,
        "not_an_image": 1,
        "too_small": 1,
        "cmyk": 1,
        "extension_mismatch": 1,
        "exact_duplicates": 1,
        "near_duplicates": 1,
        "rejected": 3,
        "valid": 25,
        "kept": 23,
    }
)
"""What a run over the default sample should report: files read, rejects by reason (the truncated
file counts as `corrupt`), valid files including both duplicates, the CMYK file converted, the
extension mismatch flagged, and the images `kept` once exact and near duplicates are dropped."""

_SIZES = (
    (800, 600),
    (1280, 960),
    (640, 480),
    (600, 800),
    (1024, 768),
    (480, 360),
    (960, 720),
    (720, 540),
)
_JPEG_QUALITY = 85
_PNG_PHOTOS = frozenset({("mountains", 4), ("waves", 3)})


def _fbm(rng: np.random.Generator, width: int, height: int, cells: int, octaves: int) -> np.ndarray:
    """Multi-octave value noise in [0, 1]: smooth random grids, each finer and fainter.

    The octaves are summed at a quarter of the size and enlarged once, which keeps painting fast.
    """
    small = (max(2, width // 4), max(1, height // 4))
    total = np.zeros(small[::-1], dtype=np.float32)
    amplitude = 1.0
    for octave in range(octaves):
        n = cells * 2**octave
        grid = rng.random((max(2, round(n * height / width)) + 1, n + 1), dtype=np.float32)
        layer = Image.fromarray(grid).resize(small, Image.Resampling.BICUBIC)
        total += amplitude * np.asarray(layer)
        amplitude *= 0.5
    noise = np.asarray(Image.fromarray(total).resize((width, height), Image.Resampling.BICUBIC))
    noise = noise - noise.min()
    return noise / max(float(noise.max()), 1e-6)


def _grain(rng: np.random.Generator, width: int, height: int, cell: tuple[int, int]) -> np.ndarray:
    """Fine texture of `cell`-sized specks (leaves, bark), small enough to read as detail."""
    across, down = cell
    specks = rng.standard_normal((height // down + 2, width // across + 2), dtype=np.float32)
    span = (specks.shape[1] * across, specks.shape[0] * down)
    texture = np.asarray(Image.fromarray(specks).resize(span, Image.Resampling.BILINEAR))
    return texture[down : down + height, across : across + width, None]


def _gradient(width: int, height: int, top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    return np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).copy()


def _colour(rng: np.random.Generator, low: _RGB, high: _RGB) -> np.ndarray:
    return rng.uniform(low, high).astype(np.float32)


def _paint_mountains(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Ridges fading into haze under a dawn, noon or dusk sky; snow on the highest peaks."""
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    zenith = _colour(rng, (0.05, 0.15, 0.35), (0.45, 0.55, 0.95))
    horizon = _colour(rng, (0.6, 0.45, 0.4), (1.0, 0.9, 0.85))
    sun_x, sun_y = rng.uniform(0.1, 0.9) * width, rng.uniform(0.05, 0.45) * height
    glow = np.exp(-((x - sun_x) ** 2 + (y - sun_y) ** 2) / (2 * (0.12 * width) ** 2))
    sky = _gradient(width, height, zenith, horizon) + glow[..., None] * np.float32([0.5, 0.4, 0.2])

    layers = int(rng.integers(3, 6))
    top = rng.uniform(0.2, 0.5)
    profiles, snowcaps = [], []
    for layer in range(layers):
        ridge = 1 - np.abs(2 * _fbm(rng, width, 1, int(rng.integers(2, 6)), 5)[0] - 1)
        base = top + layer / (layers - 1) * (0.85 - top)
        profiles.append((base - rng.uniform(0.1, 0.3) * ridge) * height)
        snowy = layer == layers - 1 or rng.random() < 0.4
        snowcaps.append(snowy * rng.uniform(0.05, 0.12) * np.clip(ridge - 0.55, 0, None) * height)

    nearest = np.full((height, width), -1, dtype=np.int8)
    for layer, profile in enumerate(profiles):
        nearest[y >= profile] = layer
    ground = np.maximum(nearest, 0)
    columns = np.arange(width)
    below_ridge = y - np.stack(profiles)[ground, columns]
    snow = below_ridge < np.stack(snowcaps)[ground, columns]

    texture = _fbm(rng, width, height, 8, 4)[..., None]
    haze = (0.7 * (1 - ground / (layers - 1)))[..., None].astype(np.float32)
    rock = _colour(rng, (0.15, 0.12, 0.1), (0.45, 0.4, 0.35)) * (0.7 + 0.5 * texture)
    rock *= 1 + 0.15 * _grain(rng, width, height, (3, 3))
    land = np.where(snow[..., None], 0.92 - 0.1 * texture, rock * (1 - haze) + horizon * haze)
    return np.where((nearest >= 0)[..., None], land, sky)


def _paint_waves(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Crossing sine swells seen from above, tinted from deep water to surf."""
    u = np.arange(width, dtype=np.float32)[None, :] / width
    v = np.arange(height, dtype=np.float32)[:, None] / height
    angle = rng.uniform(0, math.pi)
    surface = np.zeros((height, width), dtype=np.float32)
    for harmonic in range(4):
        theta = angle + rng.normal(0, 0.35)
        cycles = rng.uniform(1.5, 4.0) * (1.8**harmonic)
        phase = rng.uniform(0, 2 * math.pi)
        along = u * (math.cos(theta) * width / height) + v * math.sin(theta)
        surface += np.sin(2 * math.pi * cycles * along + phase) / (1 + harmonic)
    for _ in range(2):
        theta, cycles = rng.uniform(0, math.pi), rng.uniform(50, 90)
        along = u * (math.cos(theta) * width / height) + v * math.sin(theta)
        surface += 0.15 * np.sin(2 * math.pi * cycles * along)
    surface += 1.2 * (_fbm(rng, width, height, 3, 4) - 0.5)
    surface = (surface - surface.min()) / (surface.max() - surface.min())
    deep = _colour(rng, (0.0, 0.05, 0.2), (0.05, 0.25, 0.45))
    shallow = _colour(rng, (0.05, 0.4, 0.5), (0.3, 0.75, 0.8))
    light = rng.uniform(0, 2 * math.pi)
    shade = 0.5 + 0.5 * (math.cos(light) * u + math.sin(light) * v)
    image = deep + (shallow - deep) * (0.6 * surface + 0.4 * shade)[..., None]
    foam = np.clip((surface - 0.8) / 0.2, 0, 1)[..., None]
    return image * (1 - foam) + 0.95 * foam


def _paint_forest(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Rows of trunks, thin and pale far away, thick and dark up close, in haze and sunbeams."""
    canopy = _colour(rng, (0.05, 0.2, 0.05), (0.25, 0.45, 0.2))
    floor = _colour(rng, (0.25, 0.2, 0.1), (0.45, 0.4, 0.25))
    fog = _colour(rng, (0.6, 0.7, 0.6), (0.9, 0.95, 0.85))
    light_y = rng.uniform(0.2, 0.8)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    mist = np.exp(-((t - light_y) ** 2) / 0.05)
    image = _gradient(width, height, canopy, floor) * (1 - mist) + fog * mist
    image *= (0.75 + 0.5 * _fbm(rng, width, height, 6, 5))[..., None]
    image *= 1 + 0.12 * _grain(rng, width, height, (3, 3))
    bark = _colour(rng, (0.1, 0.06, 0.03), (0.3, 0.2, 0.12))
    grain = 1 + 0.2 * _grain(rng, width, height, (2, 24))
    for row in range(3):
        nearness = row / 2
        mask = Image.new("L", (width, height))
        draw = ImageDraw.Draw(mask)
        for _ in range(int(rng.integers(7, 11)) - 3 * row):
            bottom = rng.uniform(0, width)
            top = bottom - rng.normal(0, 0.06) * height
            half = width * rng.uniform(0.004, 0.012) * (1 + 4 * nearness)
            corners = [(top - half, 0), (top + half, 0), (bottom + half, height)]
            draw.polygon([*corners, (bottom - half, height)], fill=255)
        cover = np.asarray(mask, dtype=np.float32)[..., None] / 255
        tone = (bark * (0.4 + 0.6 * nearness) + fog * 0.6 * (1 - nearness)) * grain
        image = image * (1 - cover) + tone * cover
    x = np.arange(width, dtype=np.float32)[None, :]
    y = np.arange(height, dtype=np.float32)[:, None]
    sunlight = _colour(rng, (0.9, 0.8, 0.5), (1.0, 0.95, 0.75))
    for _ in range(int(rng.integers(1, 3))):
        source, slant = rng.uniform(0, width), rng.normal(0, 0.4)
        distance = (x - source) * math.cos(slant) - y * math.sin(slant)
        beam = np.exp(-((distance / (width * rng.uniform(0.04, 0.12))) ** 2))
        image += 0.45 * (beam * (1 - 0.6 * y / height))[..., None] * sunlight
    return image


@dataclass(frozen=True)
class _Photo:
    path: str
    painter: _Painter
    size: tuple[int, int]
    encoding: str


def _photos() -> list[_Photo]:
    classes: tuple[tuple[str, str, _Painter], ...] = (
        ("mountains", "ridge", _paint_mountains),
        ("waves", "swell", _paint_waves),
        ("forest", "pines", _paint_forest),
    )
    photos = []
    for index, (folder, stem, painter) in enumerate(classes):
        for number in range(1, 8):
            if (folder, number) in _PNG_PHOTOS:
                path, size, encoding = f"{folder}/{stem}_{number:02d}.png", (640, 480), "PNG"
            else:
                path, encoding = f"{folder}/{stem}_{number:02d}.jpg", "JPEG"
                size = _SIZES[(number + 3 * index) % len(_SIZES)]
            photos.append(_Photo(path, painter, size, encoding))
    photos.append(_Photo("mountains/ridge_cmyk.jpg", _paint_mountains, (720, 540), "CMYK"))
    photos.append(_Photo("waves/swell_png_inside.jpg", _paint_waves, (480, 360), "PNG"))
    return photos


def _encode(image: Image.Image, encoding: str, quality: int = _JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    if encoding == "PNG":
        image.save(buffer, format="PNG")
    elif encoding == "CMYK":
        image.convert("CMYK").save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _render(painter: _Painter, seed: int, key: str, size: tuple[int, int]) -> Image.Image:
    rng = np.random.default_rng([seed, *key.encode()])
    width, height = size
    pixels = painter(rng, width, height)
    return Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8))


def write_sample_dataset(dest: Path, *, seed: int = 7) -> Path:
    """Write the sample collection described above into `dest` (created if missing) and return it.

    The same seed always gives the same bytes, so a folder that already holds the sample is left
    as it is. Any other non-empty `dest` is refused: the sample never mixes with, or overwrites, a
    user's own images.
    """
    dest = Path(dest)
    files = _sample_files(seed)
    if dest.exists() and any(dest.iterdir()):
        present = {
            path.relative_to(dest).as_posix(): path for path in dest.rglob("*") if path.is_file()
        }
        same = present.keys() == files.keys() and all(
            present[name].read_bytes() == data for name, data in files.items()
        )
        if not same:
            raise FileExistsError(
                f"{dest} is not empty and is not the sample dataset: pick an empty folder"
            )
        return dest
    for relative, data in files.items():
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return dest


def _sample_files(seed: int) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for photo in _photos():
        picture = _render(photo.painter, seed, photo.path, photo.size)
        files[photo.path] = _encode(picture, photo.encoding)
    files["waves/copy_of_ridge_02.jpg"] = files["mountains/ridge_02.jpg"]
    with Image.open(io.BytesIO(files["forest/pines_03.jpg"])) as original:
        smaller = original.resize(
            (round(original.width * 0.9), round(original.height * 0.9)), Image.Resampling.LANCZOS
        )
    files["forest/pines_03_resized.jpg"] = _encode(smaller, "JPEG", quality=70)
    whole = _encode(_render(_paint_waves, seed, "waves/truncated.jpg", (800, 600)), "JPEG")
    files["waves/truncated.jpg"] = whole[: len(whole) * 6 // 10]
    files["forest/notes.jpg"] = b"Field notes: three days of rain, then sun on the ridges.\n"
    files["mountains/tiny.png"] = _encode(
        _render(_paint_forest, seed, "mountains/tiny.png", (16, 16)), "PNG"
    )
    return files
