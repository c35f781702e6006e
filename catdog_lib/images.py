"""Decode any image file a student may bring into an RGB PIL image, or say clearly why not."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's own bomb limit (~89 Mpx warns, twice that fails); we refuse anything past the warning.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


class BadImageError(Exception):
    """A file that cannot be used as an image; the message says why."""


def _to_rgb(image: Image.Image) -> Image.Image:
    """Grayscale, palette, CMYK, 16-bit and alpha images to 8-bit RGB (alpha over white)."""
    if image.mode in {"I;16", "I;16B", "I;16L", "I;16N"}:
        # 16-bit samples: the same brightness in 8 bits (a constant gray stays gray, not black)
        array = np.asarray(image, dtype=np.float64) * (255.0 / 65535.0)
        image = Image.fromarray(np.rint(array).astype(np.uint8), mode="L")
    elif image.mode in {"I", "F"}:
        # 32-bit integer or float samples have no fixed range: stretch what is there to 0-255
        array = np.asarray(image, dtype=np.float64)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) * (255.0 / (high - low)) if high > low else np.zeros_like(array)
        image = Image.fromarray(scaled.astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in {"RGBA", "LA", "PA"}:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Open ``path`` as an upright RGB image.

    ``min_size`` lets JPEG decoding skip detail below that many pixels a side (draft mode), which
    is several times faster for photos far larger than the network's input. Raises BadImageError.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImageError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise BadImageError(
                        f"{path}: claims {width}x{height} pixels, over the {MAX_PIXELS:,}-pixel limit "
                        "(a decompression bomb or a scan); resize it below that"
                    )
                if min_size and image.format == "JPEG":
                    image.draft("RGB", (min_size, min_size))
                image.load()
                image = ImageOps.exif_transpose(image)
                return _to_rgb(image)
    except BadImageError:
        raise
    except UnidentifiedImageError:
        raise BadImageError(f"{path}: not an image (unrecognised format; is it HTML or text?)") from None
    except PermissionError:
        raise BadImageError(f"{path}: not readable (permission denied); fix its permissions") from None
    except FileNotFoundError:
        raise BadImageError(f"{path}: no such file (moved or deleted after the folder was listed?)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow refuses these in Image.open, before our own size check can name the dimensions
        raise BadImageError(
            f"{path}: too many pixels for a photo, refused as a possible decompression bomb ({error}); "
            f"resize it below {MAX_PIXELS:,} pixels"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"{path}: unreadable or truncated image ({error})") from None


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as an image, or None when it decodes fully."""
    try:
        load_rgb(path, min_size=64)
    except BadImageError as error:
        return str(error)
    return None
