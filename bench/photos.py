"""Real photographs for the dedup benchmark, from sources that need no network beyond Debian's.

- `tuxpaint-stamps-default`: photo cut-outs of animals, food, plants, vehicles... (clip-art,
  letters, sign language and symbols left out, and the stamps that are mirror images,
  recolourings or one-detail variants of another), flattened on white like a product photo;
- `opencv-doc`: the sample photographs (street, building, fruit, people, test photos);
- scikit-image's and scikit-learn's bundled photographs, when those packages are installed.

Both Debian packages are fetched with `apt-get download` into a cache folder and unpacked with
`dpkg -x`; nothing is installed. The set is deduplicated by content (decoded pixels) before use,
and the few files that are edits of another sample (OpenCV's `ela_modified.jpg`) or photos of
the same scene (stereo pairs, calibration shots) are set apart as hard negatives instead.
"""

import hashlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

from PIL import Image

from dataset_assets.imaging.inspect import flatten

DEBIAN_PACKAGES = ("tuxpaint-stamps-default", "opencv-doc")
_OPENCV_DATA = "usr/share/doc/opencv-doc/examples/data"
_TUXPAINT = "usr/share/tuxpaint/stamps"
_NOT_PHOTOS = ("cartoon", "symbols", "asl", "clipart", "alphabet")
_OPENCV_SKIP = {
    "ela_modified.jpg",  # an edited copy of ela_original.jpg
    "chessboard.png",  # a drawn pattern whose quarters are the same picture
    "LinuxLogo.jpg",
    "WindowsLogo.jpg",
    "text_defocus.jpg",
}
_TUXPAINT_VARIANTS = {
    # The same drawing recoloured or with one detail changed: one of each family stays.
    "dreydl-gimmel", "dreydl-hay", "dreydl-nun", "dreydl-shin",
    "greenflag", "blue-and-yellowflag",
    "stoplight_02_yellow", "stoplight_03_green",
    "t_tshirt", "t-junction",
}  # fmt: skip
SAME_SCENE = (
    ("aloeL.jpg", "aloeR.jpg"),
    ("leuvenA.jpg", "leuvenB.jpg"),
    ("Blender_Suzanne1.jpg", "Blender_Suzanne2.jpg"),
    ("basketball1.png", "basketball2.png"),
    ("rubberwhale1.png", "rubberwhale2.png"),
    ("graf1.png", "graf3.png"),
    ("aero1.jpg", "aero3.jpg"),
    ("box.png", "box_in_scene.png"),
    *((f"left{n:02d}.jpg", f"right{n:02d}.jpg") for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12)),
)
"""Pairs of different photographs of one scene or object: they must not be matched."""

_SKIMAGE_PHOTOS = (
    "astronaut", "chelsea", "coffee", "rocket", "camera", "immunohistochemistry",
    "hubble_deep_field", "retina", "page", "moon",
)  # fmt: skip

MIN_SIDE = 80
QUARTER_MIN_SIDE = 160


def fetch(cache: Path) -> Path:
    """Unpack the Debian packages into `cache` (once) and return it."""
    cache.mkdir(parents=True, exist_ok=True)
    for package in DEBIAN_PACKAGES:
        marker = cache / f".{package}"
        if marker.exists():
            continue
        subprocess.run(["apt-get", "download", package], cwd=cache, check=True, capture_output=True)
        (deb,) = cache.glob(f"{package}_*.deb")
        subprocess.run(["dpkg", "-x", str(deb), str(cache / "root")], check=True)
        deb.unlink()
        marker.touch()
    return cache / "root"


def _tuxpaint(root: Path) -> Iterator[tuple[str, Image.Image]]:
    for path in sorted((root / _TUXPAINT).rglob("*.png")):
        parts = path.relative_to(root / _TUXPAINT).parts
        variant = "_mirror" in path.stem or path.stem in _TUXPAINT_VARIANTS
        if not variant and not any(part in _NOT_PHOTOS for part in parts):
            yield f"tuxpaint/{path.stem}", Image.open(path)


def _opencv(root: Path, skip: set[str]) -> Iterator[tuple[str, Image.Image]]:
    for path in sorted((root / _OPENCV_DATA).iterdir()):
        photo = path.suffix == ".jpg" or (path.suffix == ".png" and path.stat().st_size > 30_000)
        if photo and path.name not in skip:
            yield f"opencv/{path.stem}", Image.open(path)


def _bundled() -> Iterator[tuple[str, Image.Image]]:
    try:
        from skimage import data as skimage_data
    except ImportError:
        return
    for name in _SKIMAGE_PHOTOS:
        loader = getattr(skimage_data, name, None)
        if loader is not None:
            yield f"skimage/{name}", Image.fromarray(loader())
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return
    for index, array in enumerate(load_sample_images().images):
        yield f"sklearn/{index}", Image.fromarray(array)


def photographs(root: Path) -> Iterator[tuple[str, Image.Image]]:
    """Distinct photographs as (name, RGB image), each at most 1024 px on its long side.

    Photos (not cut-outs: a symmetric object's halves are mirror copies) with a short side of
    `2 * QUARTER_MIN_SIDE` or more come as their four quarters:
    neighbouring quarters are the hard negative of "two crops of one scene that do not overlap".
    Same-scene pairs (`SAME_SCENE`) are left out here: `same_scene` yields them.
    """
    scene = {name for pair in SAME_SCENE for name in pair}
    seen: set[str] = set()
    sources = (_tuxpaint(root), _opencv(root, _OPENCV_SKIP | scene), _bundled())
    for source in sources:
        for name, image in source:
            picture = _normalised(image)
            if min(picture.size) < MIN_SIDE:
                continue
            pieces = [("", picture)] if name.startswith("tuxpaint/") else _pieces(picture)
            for part, piece in pieces:
                digest = hashlib.sha256(piece.tobytes()).hexdigest()
                if digest not in seen:
                    seen.add(digest)
                    yield name + part, piece


def _pieces(picture: Image.Image) -> Iterator[tuple[str, Image.Image]]:
    """A large photo as its four quarters (distinct photos that share no pixel), else whole."""
    width, height = picture.size
    if min(width, height) < 2 * QUARTER_MIN_SIDE:
        yield "", picture
        return
    for row in range(2):
        for column in range(2):
            box = (
                column * width // 2,
                row * height // 2,
                (column + 1) * width // 2,
                (row + 1) * height // 2,
            )
            yield f"#{row}{column}", picture.crop(box)


def same_scene(root: Path) -> Iterator[tuple[tuple[str, Image.Image], tuple[str, Image.Image]]]:
    """Pairs of different photos of one scene, as in `SAME_SCENE`, when both files exist."""
    folder = root / _OPENCV_DATA
    for first, second in SAME_SCENE:
        if (folder / first).exists() and (folder / second).exists():
            yield (
                (f"opencv/{Path(first).stem}", _normalised(Image.open(folder / first))),
                (f"opencv/{Path(second).stem}", _normalised(Image.open(folder / second))),
            )


def _normalised(image: Image.Image) -> Image.Image:
    picture = flatten(image).convert("RGB")
    picture.thumbnail((1024, 1024), Image.Resampling.LANCZOS)
    return picture


def encode(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
