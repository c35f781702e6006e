"""A small SYNTHETIC cats-vs-dogs set of generated shapes, for tests and for running without photos.

It is not a substitute for real photos: "cats" are warm-coloured blobs and stripes, "dogs" are
cool-coloured checkerboards and rings, each at a random place and size on a grey noise background.
The classes differ in colour and texture, so any pretrained backbone separates them easily.
"""

from __future__ import annotations

import colorsys
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ..files import atomic_write_text

MARKER = "SYNTHETIC.txt"
WARM_HUES = (0.0, 0.14)  # red .. yellow, as fractions of the colour wheel
COOL_HUES = (0.45, 0.70)  # cyan .. blue


def _colour(rng: np.random.Generator, hues: tuple[float, float]) -> np.ndarray:
    hue = rng.uniform(*hues)
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))) * 255


def _shape_mask(rng: np.random.Generator, size: int, cat: bool) -> np.ndarray:
    """Where the shape is: a blob or stripes for a cat, a checkerboard or rings for a dog."""
    yy, xx = np.mgrid[:size, :size].astype(float)
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.2, 0.35) * size
    period = max(2, int(rng.uniform(0.06, 0.12) * size))
    inside = np.hypot(yy - cy, xx - cx) < radius
    if cat and rng.random() < 0.5:  # blob: an ellipse
        ry, rx = radius * rng.uniform(0.6, 1.0, 2)
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    if cat:  # diagonal stripes
        return inside & (((xx + yy) // period) % 2 == 0)
    if rng.random() < 0.5:  # checkerboard in a square
        square = (np.abs(yy - cy) < radius) & (np.abs(xx - cx) < radius)
        return square & ((xx // period + yy // period) % 2 == 0)
    return inside & ((np.hypot(yy - cy, xx - cx) // period) % 2 == 0)  # rings


def synthetic_image(rng: np.random.Generator, size: int, cat: bool) -> Image.Image:
    """One RGB image: grey noise with one warm (cat) or cool (dog) shape."""
    pixels = rng.normal(128, 30, (size, size, 3))
    mask = _shape_mask(rng, size, cat)
    pixels[mask] = _colour(rng, WARM_HUES if cat else COOL_HUES) + rng.normal(0, 12, (int(mask.sum()), 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")


def _description(per_class: int, test_per_class: int, size: int, seed: int) -> str:
    return (
        "SYNTHETIC data: generated shapes, not photos of cats and dogs.\n"
        "Made by catdog_lib.synthetic.make_synthetic_dataset so the course runs without real photos.\n"
        "cats = warm-coloured (red-yellow) blobs and stripes; dogs = cool-coloured (cyan-blue) "
        "checkerboards and rings; random positions and sizes on grey noise.\n"
        "Accuracy measured on it says nothing about real photos.\n"
        f"per_class={per_class} test_per_class={test_per_class} size={size} seed={seed}\n"
    )


def make_synthetic_dataset(root: Path, per_class: int = 40, test_per_class: int = 10, size: int = 64,
                           seed: int = 0) -> Path:
    """Write the set in the Kaggle layout under ``root`` (nothing to do if it is already there).

    ``root/training_set/training_set/{cats,dogs}/cat.N.jpg`` and ``root/test_set/test_set/...``,
    plus ``root/SYNTHETIC.txt`` saying what it is. Returns ``root``.
    """
    root = Path(root)
    marker = root / MARKER
    description = _description(per_class, test_per_class, size, seed)
    if marker.is_file() and marker.read_text(encoding="utf-8") == description:
        return root
    rng = np.random.default_rng(seed)
    for split, count, first in (("training_set", per_class, 1), ("test_set", test_per_class, per_class + 1)):
        if marker.is_file():  # an older synthetic set with other settings: replace it
            shutil.rmtree(root / split, ignore_errors=True)
        for folder, prefix, cat in (("cats", "cat", True), ("dogs", "dog", False)):
            out = root / split / split / folder
            out.mkdir(parents=True, exist_ok=True)
            for number in range(first, first + count):
                synthetic_image(rng, size, cat).save(out / f"{prefix}.{number}.jpg", quality=92)
    atomic_write_text(marker, description)
    return root
