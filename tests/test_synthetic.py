"""The synthetic fallback set: its layout, that it is learnable, and Grad-CAM on a model trained on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from catdog_lib import backbones, devices, gradcam
from catdog_lib.infer.evaluation import load_model
from catdog_lib.data.integrity import check_dataset
from catdog_lib.data.layout import find_dataset
from catdog_lib.data.synthetic import MARKER, make_synthetic_dataset
from catdog_lib.train.training import TrainConfig, train


def test_layout_marker_and_counts(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", per_class=6, test_per_class=2, size=32)
    layout = find_dataset(root)
    assert layout.train_dir == root / "training_set" / "training_set"
    assert layout.train().counts() == {"cats": 6, "dogs": 6}
    assert layout.test().counts() == {"cats": 2, "dogs": 2}
    assert "SYNTHETIC" in (root / MARKER).read_text()
    report = check_dataset(root)
    assert report.problems == []  # every file decodes, no duplicates


def test_same_settings_reuse_other_settings_replace(tmp_path):
    root = make_synthetic_dataset(tmp_path / "syn", per_class=4, test_per_class=1, size=32)
    first = root / "training_set" / "training_set" / "cats" / "cat.1.jpg"
    stamp = first.stat().st_mtime_ns
    make_synthetic_dataset(root, per_class=4, test_per_class=1, size=32)
    assert first.stat().st_mtime_ns == stamp
    make_synthetic_dataset(root, per_class=3, test_per_class=1, size=32)
    assert find_dataset(root).train().counts() == {"cats": 3, "dogs": 3}


def test_reproducible(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", per_class=2, test_per_class=1, size=32, seed=5)
    b = make_synthetic_dataset(tmp_path / "b", per_class=2, test_per_class=1, size=32, seed=5)
    rel = Path("training_set/training_set/dogs/dog.2.jpg")
    assert (a / rel).read_bytes() == (b / rel).read_bytes()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    """The features recipe with efficientnet_lite0 on the default synthetic set, in a private cache."""
    tmp = tmp_path_factory.mktemp("synthetic-run")
    root = make_synthetic_dataset(tmp / "data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CATDOG_CACHE_DIR", str(tmp / "cache"))
        metrics = train(TrainConfig(data=str(root), out=str(tmp / "run"), arch="efficientnet_lite0", epochs=8,
                                    progress=False))
    return tmp / "run", metrics


def test_learnable(trained):
    _, metrics = trained
    assert metrics["best_valid_accuracy"] > 0.9, metrics["history"]
    # no timing assertion: timings belong in `make bench` (docs/BENCHMARKS.md)


def test_gradcam_looks_at_the_shape(trained):
    """The shapes are saturated colour on grey noise: the heat should sit on them."""
    run, _ = trained
    loaded = load_model(run / "best.pt", device="cpu")
    root = find_dataset(Path(run.parent / "data")).test()
    paths = [root.files["cats"][0], root.files["dogs"][0], root.files["cats"][1], root.files["dogs"][1]]
    results = gradcam.explain(loaded, paths)
    for result in results:
        assert result.heatmap.shape == result.image.shape[:2] == (224, 224)
        saturation = result.image.max(axis=2) - result.image.min(axis=2)
        shape = saturation > 0.35
        assert result.heatmap[shape].mean() > result.heatmap[~shape].mean(), result.path
        assert result.overlay().dtype == np.uint8


@pytest.mark.parametrize("arch", ["efficientnet_lite0", "resnet50", "mobilenet_v3_large"])
def test_gradcam_with_frozen_channels_last_backbone(arch):
    """No parameter of the backbone needs a gradient, yet the maps are not empty; nothing is left behind."""
    torch.manual_seed(0)
    model = backbones.create_model(arch, 2, weights=None)
    model.freeze_backbone()
    model = devices.to_fast_layout(model.eval(), torch.device("cpu"))
    images = torch.rand(2, 3, 96, 96).repeat(2, 1, 1, 1)
    maps = gradcam.grad_cam_maps(model, gradcam.target_layer(model, arch), images, [0, 0, 1, 1])
    assert maps.shape == (4, 96, 96)
    assert maps.max() > 0 and maps.min() >= 0  # with random weights some class/image map may be all zero
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.grad is None for p in model.parameters())
