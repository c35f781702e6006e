"""A small classifier trained by the real CLI on real photos, shared by the export and demo tests."""

from __future__ import annotations

from pathlib import Path

from conftest import run_catdog, subprocess_env

from catdog_lib.data.layout import natural_key


def real_photos(root: Path, split: str, name: str, count: int) -> list[Path]:
    """The first ``count`` photos (by name) of class folder ``name`` in the Kaggle layout's ``split``."""
    folder = root / split / split / name
    return sorted(folder.glob("*.jpg"), key=natural_key)[:count]


def train_on_real_photos(root: Path, base: Path, per_class: int = 16, epochs: int = 8) -> Path:
    """best.pt of EfficientNet-Lite0 (ImageNet weights, frozen) with a head trained on a few real photos.

    The photos are linked, not copied, into ``base/subset``; features are cached in ``base/cache``.
    """
    subset = base / "subset"
    for name in ("cats", "dogs"):
        (subset / name).mkdir(parents=True)
        for photo in real_photos(root, "training_set", name, per_class):
            (subset / name / photo.name).symlink_to(photo)
    result = run_catdog("train", "--data", subset, "--out", base / "run", "--arch", "efficientnet_lite0",
                        "--epochs", str(epochs), "--batch-size", "8", "--quiet", timeout=600,
                        env=subprocess_env(CATDOG_CACHE_DIR=str(base / "cache")))
    assert result.returncode == 0, result.stderr
    return base / "run" / "best.pt"
