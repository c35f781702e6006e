"""How the default recipe's cold run grows with the number of distinct photos: a pool of re-encoded crops
of the shared training photos, the recipe timed on 2k, 5k and 10k of them, and the time and feature-cache
size extrapolated to the full PetImages set.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from catdog_lib.config import CACHE_ENV
from catdog_lib.data.layout import find_dataset
from catdog_lib.data.transforms import train_transform
from catdog_lib.model.backbones import DEFAULT_ARCH, get_arch
from catdog_lib.model.features import training_views
from catdog_lib.train.training import TrainConfig, train

SCALE_SIZES = (2000, 5000, 10000)
PETIMAGES_PHOTOS = 25000  # the full Microsoft PetImages set, for the scale extrapolation


def make_scaled_pool(source: Path, dest: Path, photos: int) -> list[tuple[Path, str]]:
    """``photos`` distinct JPEGs made from the source's training photos, classes alternating: round k of
    the source re-encodes each photo with 4k pixels cropped off every side, so no two files share bytes."""
    folders = find_dataset(source).train()
    by_class = [[path for path, label in folders.samples if label == index] for index in range(len(folders.classes))]
    order = [(path, folders.classes[index]) for group in zip(*by_class) for index, path in enumerate(group)]
    dest.mkdir(parents=True, exist_ok=True)
    pool = []
    for i in range(photos):
        path, name = order[i % len(order)]
        margin = 4 * (i // len(order))
        with Image.open(path) as image:
            width, height = image.size
            crop = image.convert("RGB").crop((margin, margin, width - margin, height - margin))
        target = dest / f"{name}.{i}.jpg"
        crop.save(target, quality=90)
        pool.append((target, name))
    return pool


def scale_part(pool: list[tuple[Path, str]], photos: int) -> dict[str, Any]:
    """The default recipe, cold cache, on the first ``photos`` photos of the pool (as class folders)."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        data = Path(tmp) / "data"
        for path, name in pool[:photos]:
            (data / name).mkdir(parents=True, exist_ok=True)
            (data / name / path.name).symlink_to(path)
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        started = time.perf_counter()
        metrics = train(TrainConfig(data=str(data), out=str(Path(tmp) / "run"), progress=False))
        cold_s = time.perf_counter() - started
        feature_bytes = sum(shard.stat().st_size for shard in (Path(tmp) / "cache" / "features").rglob("*.pt"))
    counts = metrics["counts"]
    views = len(training_views(train_transform(get_arch(DEFAULT_ARCH).prep)).names)  # plain and flipped
    forwards = views * sum(counts["train"].values()) + sum(counts["valid"].values())
    return {"photos": photos, "cold_s": cold_s, "forwards_per_s": forwards / cold_s, "feature_bytes": feature_bytes,
            "valid_accuracy": metrics["best_valid_accuracy"], "epochs_run": metrics["epochs_run"]}


def scale_estimate(rows: list[dict[str, Any]], photos: int = PETIMAGES_PHOTOS) -> dict[str, float]:
    """Time and feature-cache size for ``photos`` photos, extrapolated from the largest measured size.

    Both grow linearly (each photo costs its forward passes, its head-training share and its vectors).
    """
    largest = max(rows, key=lambda row: row["photos"])
    factor = photos / largest["photos"]
    return {"photos": photos, "seconds": largest["cold_s"] * factor, "feature_bytes": largest["feature_bytes"] * factor}
