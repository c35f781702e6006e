"""The tutorial's recipe and this project's, on the same photos: the tutorial's training loop timed over a
few batches, this project's feature extraction (images/s), its default recipe in full with a cold and a
warm cache and on the test split, the same recipe with a float32 backbone (int8's accuracy reference),
the finetune recipe, and each recipe's time to 97.5% valid accuracy.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets
from torchvision import transforms as T

from benchmarks.timing import PROFILE_BATCH, split_photos, sync
from catdog_lib.config import CACHE_ENV
from catdog_lib.data.datasets import SkippedFiles
from catdog_lib.data.layout import find_dataset
from catdog_lib.data.transforms import train_transform
from catdog_lib.devices import pick_device, set_seed
from catdog_lib.infer.evaluation import evaluate_folder, load_model
from catdog_lib.model.backbones import DEFAULT_ARCH, create_model, get_arch
from catdog_lib.model.engine import ENGINE_ENV, backbone_runner, engine_identity
from catdog_lib.model.features import calibration_photos, compute_features, training_views
from catdog_lib.train.training import TrainConfig, train

TARGET_ACCURACY = 0.975
TUTORIAL_EPOCHS_TO_TARGET = 2  # the tutorial's log first passes 97.5% valid accuracy after its 2nd epoch
TUTORIAL_BATCH_SIZE = 4
WARMUP_BATCHES = 2


def tutorial_time_to_target(seconds_per_photo: float, photos_per_epoch: int) -> float:
    """The tutorial's time to 97.5% valid accuracy: every training photo, for its 2 epochs."""
    return seconds_per_photo * photos_per_epoch * TUTORIAL_EPOCHS_TO_TARGET


def ours_time_to_target(wall_s: float, history: list[dict], target: float = TARGET_ACCURACY) -> float | None:
    """Wall time of a run up to the end of its first epoch with valid accuracy >= ``target``.

    Set-up and feature extraction are the run's wall time less all epochs; None if never reached.
    """
    setup_s = wall_s - sum(row["seconds"] for row in history)
    elapsed = setup_s
    for row in history:
        elapsed += row["seconds"]
        if row["valid_accuracy"] >= target:
            return elapsed
    return None


def tutorial_part(root: Path, batches: int) -> dict[str, Any]:
    """The tutorial's training loop, timed over ``batches`` batches after the warm-up ones."""
    set_seed(42)
    device = pick_device()
    split = split_photos(root)
    transform = T.Compose([T.Resize([224, 224]), T.RandomHorizontalFlip(0.3), T.ToTensor()])
    folder = datasets.ImageFolder(str(find_dataset(root).train_dir), transform)  # plain PIL, no draft mode
    index = {Path(path): i for i, (path, _) in enumerate(folder.samples)}
    train_set = Subset(folder, [index[Path(path)] for path, _ in split.train])
    loader = DataLoader(train_set, batch_size=TUTORIAL_BATCH_SIZE, shuffle=True, num_workers=0,
                        generator=torch.Generator().manual_seed(42))
    model = create_model("vgg16_bn", len(split.classes), weights=None).to(device)  # compute as pretrained
    model.freeze_backbone()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    steps = iter(loader)
    for step in range(WARMUP_BATCHES + batches):
        if step == WARMUP_BATCHES:
            sync(device)
            started = time.perf_counter()
        images, labels = next(steps)
        images, labels = images.to(device), labels.to(device)
        optimizer.zero_grad()
        loss = loss_fn(model(images), labels)
        loss.backward()
        optimizer.step()
        loss.item()  # the tutorial's running loss; also waits for the GPU
    elapsed = time.perf_counter() - started
    photos = batches * TUTORIAL_BATCH_SIZE
    return {"batches": batches, "photos": photos, "seconds": elapsed, "seconds_per_photo": elapsed / photos,
            "photos_per_epoch": len(split.train)}


def extraction_part(root: Path, n_images: int) -> dict[str, Any]:
    """Images/s of the default backbone through ``compute_features`` (no feature cache), after a 1-batch warm-up."""
    device = pick_device()
    split = split_photos(root)
    prep = get_arch(DEFAULT_ARCH).prep
    backbone = create_model(DEFAULT_ARCH, len(split.classes)).backbone
    views = training_views(train_transform(prep))
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        started = time.perf_counter()
        runner = backbone_runner(backbone, f"{DEFAULT_ARCH}:default", device, cache_root=Path(tmp),
                                 calibration=lambda: calibration_photos(split.train, views, min_size=prep.image_size))
        export_s = time.perf_counter() - started
    run = dict(views=views, skipped=SkippedFiles(), min_size=prep.image_size, progress=False)
    compute_features(runner, split.valid[:PROFILE_BATCH], **run)  # warm-up on other photos
    started = time.perf_counter()
    features, kept = compute_features(runner, split.train[:n_images], **run)
    elapsed = time.perf_counter() - started
    rate = len(kept) / elapsed
    return {"arch": DEFAULT_ARCH, "engine": runner.identity, "export_s": export_s, "images": len(kept),
            "seconds": elapsed, "images_per_s": rate, "forwards_per_s": rate * len(views.names),
            "feature_dim": features.shape[-1]}


def recipe_part(root: Path) -> dict[str, Any]:
    """``catdog train`` defaults, cold then warm cache, and the cold run's best checkpoint on the test split."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")  # a fresh, empty feature cache
        runs = {}
        for name in ("cold", "warm"):
            started = time.perf_counter()
            metrics = train(TrainConfig(data=str(root), out=str(Path(tmp) / name), progress=False))
            runs[name] = (time.perf_counter() - started, metrics)
        started = time.perf_counter()
        test = evaluate_folder(load_model(Path(tmp) / "cold" / "best.pt"), root, progress=False)
        test_s = time.perf_counter() - started
        used = engine_identity(pick_device(), backbone=create_model(DEFAULT_ARCH, 2).backbone)
    cold_s, cold = runs["cold"]
    warm_s, warm = runs["warm"]
    return {"arch": cold["arch"], "cold_s": cold_s, "warm_s": warm_s, "epochs_run": cold["epochs_run"],
            "best_epoch": cold["best_epoch"], "valid_accuracy": cold["best_valid_accuracy"],
            "warm_valid_accuracy": warm["best_valid_accuracy"], "history": cold["history"],
            "test_accuracy": test.accuracy, "test_n": test.n, "test_s": test_s, "engine": used,
            "test_answers": test.predictions}


def float32_part(root: Path) -> dict[str, Any]:
    """The default recipe with the backbone in float32 (CATDOG_ENGINE=openvino): int8's accuracy reference."""
    os.environ[ENGINE_ENV] = "openvino"
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        started = time.perf_counter()
        metrics = train(TrainConfig(data=str(root), out=str(Path(tmp) / "run"), progress=False))
        cold_s = time.perf_counter() - started
        test = evaluate_folder(load_model(Path(tmp) / "run" / "best.pt"), root, progress=False)
    return {"cold_s": cold_s, "valid_accuracy": metrics["best_valid_accuracy"], "test_accuracy": test.accuracy,
            "test_n": test.n, "test_answers": test.predictions}


def finetune_part(root: Path) -> dict[str, Any]:
    """``catdog train --recipe finetune`` from a cold cache: both stages, what was kept, and the test accuracy."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        os.environ[CACHE_ENV] = str(Path(tmp) / "cache")
        started = time.perf_counter()
        metrics = train(TrainConfig(data=str(root), out=str(Path(tmp) / "run"), recipe="finetune", progress=False))
        cold_s = time.perf_counter() - started
        test = evaluate_folder(load_model(Path(tmp) / "run" / "best.pt"), root, progress=False)
    head = min((row for row in metrics["history"] if row["stage"] == "head"),
               key=lambda row: (-row["valid_accuracy"], row["valid_loss"]))
    return {"cold_s": cold_s, "stages": metrics["stages"], "kept": metrics["kept"],
            "head_valid": [head["valid_accuracy"], head["valid_loss"]],
            "valid": [metrics["best_valid_accuracy"], metrics["best_valid_loss"]],
            "test_accuracy": test.accuracy, "test_n": test.n}
