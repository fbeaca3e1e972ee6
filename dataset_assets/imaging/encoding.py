"""How much a file's encoding has degraded its pixels: ranks copies to keep the likely original.

A re-saved copy is usually encoded at a lower JPEG quality than its source, and its compression
artefacts read as extra "sharpness", so sharpness alone keeps the copy. The JPEG quality a file
was saved at is recoverable from its quantisation tables: libjpeg scales the standard tables of
the JPEG specification (Annex K) by a factor derived from the quality setting.
"""

import numpy as np
from PIL import Image

LOSSLESS = 100
"""Quality given to lossless files (PNG, BMP, TIFF, GIF): nothing was lost to encoding."""

_LOSSLESS_FORMATS = frozenset({"PNG", "BMP", "TIFF", "GIF", "PPM", "TGA"})

# Luminance table of the JPEG specification, Annex K.1, in natural order (as Pillow reports it).
_STANDARD_LUMINANCE = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
).ravel()


def encoding_quality(image: Image.Image) -> int | None:
    """100 for a lossless format, the estimated JPEG quality (1..100) of a JPEG, else None.

    Read from the header only: call it before decoding. The estimate inverts libjpeg's scaling
    (`scale = 5000 / q` below quality 50, `200 - 2q` above) from the mean ratio of the file's
    luminance table to the standard one; encoders with their own tables get the quality whose
    standard table they are closest to.
    """
    if image.format in _LOSSLESS_FORMATS:
        return LOSSLESS
    tables = getattr(image, "quantization", None)
    if image.format not in ("JPEG", "MPO") or not tables:
        return None
    luminance = np.asarray(tables[min(tables)], dtype=np.float64)
    if luminance.size != _STANDARD_LUMINANCE.size:
        return None
    scale = float(np.mean(luminance / _STANDARD_LUMINANCE)) * 100
    if scale <= 1:
        return 100
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return int(min(100, max(1, round(quality))))
