"""Fixtures for the engine tests: the shared real photos (when present) and tiny generated datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def real_data_root() -> Path:
    """The real Kaggle subset named by CATDOG_DATA_DIR; the test is skipped (with the reason) without it."""
    root = os.environ.get("CATDOG_DATA_DIR")
    if not root or not (Path(root) / "training_set").is_dir():
        pytest.skip("real photos not present: set CATDOG_DATA_DIR to the cat-and-dog subset")
    return Path(root)


@pytest.fixture
def feature_cache(tmp_path, monkeypatch) -> Path:
    """A private, empty feature cache for the test."""
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def write_class_images(folder: Path, classes: dict[str, int], size: int = 48, seed: int = 0) -> Path:
    """Tiny learnable JPEGs: class i is a noisy image of hue i (red-ish cats, blue-ish dogs...)."""
    rng = np.random.default_rng(seed)
    palette = [(200, 60, 40), (40, 80, 200), (60, 180, 60), (200, 200, 40)]
    for index, (name, count) in enumerate(classes.items()):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for k in range(count):
            pixels = np.clip(rng.normal(palette[index], 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{name}.{k}.jpg", quality=90)
    return folder
