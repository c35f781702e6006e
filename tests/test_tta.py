"""Test-time augmentation: the mean of a photo's and its mirror image's probabilities, in the library and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from catdog_lib import devices
from catdog_lib.infer.evaluation import evaluate, load_model, mean_log_probabilities, predict
from conftest import make_checkpoint, run_catdog, subprocess_env

SIZE = 64  # the checkpoints' input size: the test photos are already that size, so Resize leaves them alone


def write_png(path: Path, pixels: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)  # lossless: the file holds exactly these pixels
    return path


def asymmetric_pixels(seed: int) -> np.ndarray:
    """A photo whose left and right halves differ: a red-to-blue ramp plus noise."""
    ramp = np.linspace(0, 255, SIZE)
    pixels = np.stack([np.tile(255 - ramp, (SIZE, 1)), np.full((SIZE, SIZE), 90.0), np.tile(ramp, (SIZE, 1))], -1)
    noise = np.random.default_rng(seed).integers(-30, 31, pixels.shape)
    return (pixels + noise).clip(0, 255).astype(np.uint8)


def symmetric_pixels(seed: int) -> np.ndarray:
    """A photo equal to its own mirror image."""
    pixels = asymmetric_pixels(seed)
    pixels[:, SIZE // 2:] = pixels[:, : SIZE // 2][:, ::-1]
    return pixels


@pytest.fixture(params=["features", "finetune"])
def model(request, tmp_path, one_thread, monkeypatch):
    """A random-weights lite0 checkpoint of each recipe: frozen-backbone features from the cache, or the
    whole network. In float32 on every CPU: a random head's answers for a photo and its mirror image
    differ by about 0.01, more than bfloat16's rounding but far more than float32's."""
    monkeypatch.setattr(devices, "cpu_has_fast_bf16", lambda: False)
    torch.manual_seed(0)
    return load_model(make_checkpoint(tmp_path / f"{request.param}.pt", ["cats", "dogs"], image_size=SIZE,
                                      recipe=request.param), "cpu")


def probabilities(loaded, paths: list[Path], tta: bool) -> torch.Tensor:
    samples = [(path, i % 2) for i, path in enumerate(paths)]
    result = evaluate(loaded, samples, progress=False, tta=tta)
    assert result.tta is tta and result.summary()["tta"] is tta
    return torch.tensor(result.probabilities)


def test_a_symmetric_photo_gets_the_same_answer_with_and_without_tta(model, tmp_path):
    paths = [write_png(tmp_path / f"sym{i}.png", symmetric_pixels(i)) for i in range(3)]
    torch.testing.assert_close(probabilities(model, paths, tta=True), probabilities(model, paths, tta=False))


def test_tta_is_the_mean_of_the_photo_and_its_mirror_image(model, tmp_path):
    photos = [asymmetric_pixels(i) for i in range(3)]
    paths = [write_png(tmp_path / f"photo{i}.png", p) for i, p in enumerate(photos)]
    mirrors = [write_png(tmp_path / f"mirror{i}.png", p[:, ::-1].copy()) for i, p in enumerate(photos)]
    plain, mirrored = probabilities(model, paths, tta=False), probabilities(model, mirrors, tta=False)
    averaged = probabilities(model, paths, tta=True)
    torch.testing.assert_close(averaged, (plain + mirrored) / 2, atol=1e-5, rtol=0)
    assert (plain - mirrored).abs().max() > 5e-3  # the mirror really is another view for this model
    assert not torch.allclose(averaged, plain, atol=1e-4, rtol=0)
    single = [p.probability for p in predict(model, paths, tta=True)]
    assert single == pytest.approx(averaged.max(1).values.tolist(), abs=1e-5)


def test_one_view_is_plain_cross_entropy():
    logits = torch.tensor([[[2.0, -1.0], [0.3, 0.1]]])
    torch.testing.assert_close(mean_log_probabilities(logits), logits[0].log_softmax(-1))
    two = torch.stack([logits[0], logits[0].flip(-1)])
    torch.testing.assert_close(mean_log_probabilities(two).exp(), torch.full((2, 2), 0.5))


def test_cli_evaluate_and_predict_with_tta(tmp_path):
    torch.manual_seed(0)
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], image_size=SIZE, recipe="features")
    data = tmp_path / "data"
    for name, seed in (("cats", 2), ("dogs", 10)):
        for i in range(2):
            write_png(data / "test_set" / name / f"{name}{i}.png", asymmetric_pixels(seed + i))
    write_png(data / "training_set" / "cats" / "c.png", symmetric_pixels(0))
    write_png(data / "training_set" / "dogs" / "d.png", symmetric_pixels(1))
    env = subprocess_env(CATDOG_CACHE_DIR=str(tmp_path / "cache"))
    reports = {}
    for flags in ([], ["--tta"]):
        result = run_catdog("evaluate", "--checkpoint", checkpoint, "--data", data, "--json", *flags, env=env)
        assert result.returncode == 0, result.stderr
        reports[bool(flags)] = json.loads(result.stdout)
    assert reports[True]["tta"] is True and reports[False]["tta"] is False
    assert reports[True]["n"] == reports[False]["n"] == 4
    assert reports[True]["loss"] != reports[False]["loss"]

    photo = data / "test_set" / "cats" / "cats0.png"
    lines = {}
    for flags in ([], ["--tta"]):
        result = run_catdog("predict", "--checkpoint", checkpoint, photo, *flags, env=env)
        assert result.returncode == 0, result.stderr
        path, label, probability = result.stdout.strip().split("\t")
        assert path == str(photo) and label in {"cats", "dogs"} and 0.5 <= float(probability) <= 1.0
        lines[bool(flags)] = float(probability)
    assert lines[True] != lines[False]
