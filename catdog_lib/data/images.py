"""Decode any image file a student may bring into an RGB PIL image, or say clearly why not."""

from __future__ import annotations

import contextlib
import io
import os
import stat
import struct
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import filetype
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from ..files import RefusedFile, open_regular

try:  # HEIC/HEIF photos (iPhones) decode only with the pillow-heif plugin installed
    from pillow_heif import register_heif_opener
except ImportError:
    HEIF_SUPPORTED = False
else:
    register_heif_opener()
    HEIF_SUPPORTED = True
AVIF_SUPPORTED = bool(features.check("avif"))

# The pixel budget: what a phone photo needs (12-50 Mpx; a 50 Mpx sensor saves 8160x6120 = 49.9 Mpx), well under
# Pillow's own bomb limit (~89 Mpx warns, twice that fails), which let a 9000x9000 PNG (258 KB) take 2-3 GB to
# decode and classify. An RGBA image at the budget decodes into 200 MB, plus 150 MB as RGB.
# warnings.catch_warnings swaps process-wide state: a photo decoded in a prefetch thread would capture (and
# mislabel) a warning the main thread gives meanwhile, so decoding and the bad-file warnings take turns.
WARNINGS_LOCK = threading.RLock()
MAX_PIXELS = 50_000_000
MAX_FILE_BYTES = 1 << 30  # no photo is this large (phones: under 50 MB): refused unread, never hashed
EXIF_RESCUE_BYTES = 64 << 20  # a JPEG refused for its EXIF is re-read whole to cut it out: only up to this size
# JPEG draft mode decodes at down to 1/8 of each side, so a JPEG may claim 64x the pixels we decode.
JPEG_DRAFT_MAX_PIXELS = 64 * MAX_PIXELS
# A progressive JPEG is decoded through a buffer of every DCT coefficient at full size (2 bytes per pixel and
# component), draft mode or not: it may claim only as much as an RGB photo at the pixel limit needs (~537 MB).
PROGRESSIVE_JPEG_BUDGET = 2 * 3 * MAX_PIXELS
# What the decoders raise on damaged or hostile files (found by fuzzing JPEG, PNG, WebP, TIFF, GIF bytes).
DECODER_ERRORS = (OSError, SyntaxError, ValueError, TypeError, struct.error, IndexError, KeyError,
                  RuntimeError, EOFError, ZeroDivisionError, OverflowError, AttributeError, AssertionError)

_warned_exif: set[str] = set()


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
        rgba = image if image.mode == "RGBA" else image.convert("RGBA")
        rgb = Image.new("RGB", rgba.size, (255, 255, 255))  # pasting through alpha: alpha_composite's pixels,
        rgb.paste(rgba, mask=rgba.getchannel("A"))  # without its two more RGBA copies
        return rgb
    return image.convert("RGB")


def _what_it_is(path: Path, head: bytes) -> str:
    """Name a file Pillow cannot open by its first bytes (a video, a PDF, an archive, text...)."""
    kind = filetype.guess(head)
    if kind is not None:
        if kind.extension in {"heic", "heif", "avif"}:
            return _unsupported_photo(kind.extension)
        return f"not an image: its content is {kind.extension.upper()} ({kind.mime}), whatever its name says"
    if head.lstrip()[:1] in {b"<", b"{", b"["} or all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "not an image: its content is text (HTML, JSON or a note?); download the photo itself"
    return "not an image (unrecognised format)"


def _unsupported_photo(kind: str) -> str:
    """Why a HEIC or AVIF photo cannot be read here, and the fix."""
    fix = "`pip install -U pillow` (11.2 or newer)" if kind == "avif" else "`pip install pillow-heif`"
    return f"a {kind.upper()} photo, which this Pillow cannot decode; {fix} (or convert the photo to JPEG)"


@contextlib.contextmanager
def _pillow_pixel_limit(limit: int | None) -> Iterator[None]:
    """Pillow's decompression-bomb limit set to ``limit`` while opening.

    A process-wide setting: images are decoded one at a time per process (DataLoader workers are processes).
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = limit
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _warn_exif(path: Path, problem: str) -> None:
    """Say once per file (and process) that its EXIF is damaged (Pillow skips what it cannot read)."""
    if str(path) not in _warned_exif:
        _warned_exif.add(str(path))
        warnings.warn(f"{path}: damaged EXIF data ({problem}); its rotation may be lost", stacklevel=4)


def _without_exif(data: bytes) -> bytes | None:
    """The JPEG ``data`` with its EXIF (APP1) segments cut out, or None when it has none."""
    out, pos, found = bytearray(data[:2]), 2, False
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] not in (0xDA, 0xD9):
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        if data[pos + 1] == 0xE1 and data[pos + 4:pos + 10] == b"Exif\0\0":
            found = True
        else:
            out += data[pos:end]
        pos = end
    return bytes(out + data[pos:]) if found else None


def pixel_limit(image: Image.Image, draft: bool) -> tuple[int, str]:
    """The most pixels ``image`` (opened, not decoded) may claim, and what kind of file that limit is for."""
    if image.format != "JPEG":
        return MAX_PIXELS, ""
    if image.info.get("progressive") or image.info.get("progression"):
        budget = PROGRESSIVE_JPEG_BUDGET // (2 * len(image.getbands()))  # 1 (gray), 3 (YCbCr) or 4 (CMYK)
        return min(JPEG_DRAFT_MAX_PIXELS if draft else MAX_PIXELS, budget), " for a progressive JPEG"
    return (JPEG_DRAFT_MAX_PIXELS, " for a JPEG") if draft else (MAX_PIXELS, "")


def _check_pixels(image: Image.Image, path: Path, draft: bool) -> None:
    """BadImageError naming the size and the one limit that applies, when ``image`` claims too many pixels."""
    limit, kind = pixel_limit(image, draft)
    width, height = image.size
    if width * height > limit:
        raise BadImageError(f"{path}: claims {width}x{height} pixels, over the {limit:,}-pixel limit{kind} "
                            "(a decompression bomb or a scan); resize it below that")


def _decode(source: BinaryIO, path: Path, min_size: int | None, draft: bool) -> Image.Image:
    """Open, bomb-check and decode one image, upright and RGB; Pillow's own exceptions escape.

    Damaged EXIF only loses the rotation. Pillow's warnings are repeated naming the file.
    """
    with WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # _check_pixels names the size
        with _pillow_pixel_limit(None):  # Pillow's own check names other limits; ours below, before any decoding
            image = Image.open(source)
        with image:
            _check_pixels(image, path, draft)
            if draft:
                image.draft("RGB", (min_size, min_size))
                _check_pixels(image, path, draft=False)
            image.load()
            exif_problems = []
            try:
                upright = ImageOps.exif_transpose(image)
            except DECODER_ERRORS as error:
                upright = image
                exif_problems.append(f"{type(error).__name__}: {error}")
            rgb = _to_rgb(upright)
    for warning in caught:
        message = str(warning.message)
        # EXIF is a TIFF block: in a photo of another format, what Pillow's TIFF reader warns about is its EXIF
        # (the words change between Pillow versions: "Tag data larger than file", "Truncated File Read").
        from_exif = Path(warning.filename).name == "TiffImagePlugin.py" and image.format != "TIFF"
        if from_exif or "exif" in message.lower():
            exif_problems.append(message)
        else:
            warnings.warn(f"{path}: {message}", warning.category, stacklevel=3)
    if exif_problems:
        _warn_exif(path, "; ".join(dict.fromkeys(exif_problems)))
    return rgb


def _decode_damaged_exif(file: BinaryIO, path: Path, min_size: int | None, draft: bool) -> Image.Image | None:
    """A JPEG that Pillow refused because of its EXIF, decoded without it (None if that does not help, or if
    the file is over ``EXIF_RESCUE_BYTES``: it is read whole)."""
    if os.fstat(file.fileno()).st_size > EXIF_RESCUE_BYTES:
        return None
    file.seek(0)
    stripped = _without_exif(file.read())
    if stripped is None:
        return None
    try:
        image = _decode(io.BytesIO(stripped), path, min_size, draft)
    except (BadImageError, UnidentifiedImageError, *DECODER_ERRORS):
        return None
    _warn_exif(path, "Pillow could not parse it")
    return image


def _refusal(path: Path, error: RefusedFile) -> str:
    """Why ``files.open_regular`` refused ``path`` (a FIFO, device, socket or folder, or too large), for a photo."""
    if stat.S_ISDIR(error.mode):
        return f"{path}: is a folder, not an image file"
    if not stat.S_ISREG(error.mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(error.mode) else "a device or socket"
        return f"{path}: is {kind}, not a photo file; only regular files are read, remove it from the folder"
    return (f"{path}: {error.size / (1 << 30):.1f} GB, far larger than any photo (over {MAX_FILE_BYTES >> 20} MB); "
            "not read. Remove it from the folder")


def load_rgb(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Open ``path`` as an upright RGB image.

    ``min_size`` lets JPEG decoding skip detail below that many pixels a side (draft mode), which
    is several times faster for photos far larger than the network's input, and lets a JPEG claim
    up to 64x the usual pixel limit (what is decoded stays under it). A photo with damaged EXIF
    loads without the EXIF rotation, with a warning. Raises BadImageError.
    """
    path = Path(path)
    head = b""
    try:
        with open_regular(path, MAX_FILE_BYTES) as file:  # a FIFO or device never blocks, a huge file is unread
            head = file.read(262)  # what filetype needs to name a format
            if not head:
                raise BadImageError(f"{path}: empty file (0 bytes)")
            jpeg = head.startswith(b"\xff\xd8\xff")
            try:
                file.seek(0)
                return _decode(file, path, min_size, draft=jpeg and bool(min_size))
            except (UnidentifiedImageError, *DECODER_ERRORS):
                rescued = _decode_damaged_exif(file, path, min_size, jpeg and bool(min_size)) if jpeg else None
                if rescued is None:
                    raise
                return rescued
    except BadImageError:
        raise
    except RefusedFile as error:
        raise BadImageError(_refusal(path, error)) from None
    except UnidentifiedImageError:
        raise BadImageError(f"{path}: {_what_it_is(path, head)}") from None
    except PermissionError:
        raise BadImageError(f"{path}: not readable (permission denied); fix its permissions") from None
    except FileNotFoundError:
        raise BadImageError(f"{path}: no such file (moved or deleted after the folder was listed?)") from None
    except IsADirectoryError:
        raise BadImageError(f"{path}: is a folder, not an image file") from None
    except Image.DecompressionBombError:  # a plugin checking a frame's size while decoding it
        raise BadImageError(f"{path}: too many pixels for a photo (a decompression bomb or a scan); resize it "
                            f"below {MAX_PIXELS:,} pixels") from None
    except DECODER_ERRORS as error:
        raise BadImageError(f"{path}: unreadable or truncated image ({type(error).__name__}: {error})") from None


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as an image, or None when it decodes fully."""
    try:
        load_rgb(path, min_size=64)
    except BadImageError as error:
        return str(error)
    return None
