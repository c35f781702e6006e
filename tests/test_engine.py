"""The frozen backbone on an inference engine: exact on real photos, exported once, PyTorch without it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import torch

from catdog_lib import engine
from catdog_lib.model.backbones import DEFAULT_ARCH, create_model, get_arch
from catdog_lib.data.datasets import SkippedFiles, make_loader
from catdog_lib.model.engine import MIN_COSINE, backbone_runner, engine_identity, engine_name
from catdog_lib.errors import CatdogError
from catdog_lib.infer.evaluation import evaluate, load_model, predict
from catdog_lib.model.features import compute_features, eval_views, extract_features, training_views
from catdog_lib.data.images import load_rgb
from catdog_lib.data.layout import find_dataset, read_class_folders
from catdog_lib.data.prefetch import prefetched
from catdog_lib.train.training import TrainConfig, train
from catdog_lib.data.transforms import eval_transform, train_transform
from conftest import make_dataset

CPU = torch.device("cpu")
INSTALLED = [name for name in engine.ENGINES if engine.installed(name)]
needs_engine = pytest.mark.skipif(not INSTALLED, reason="no inference engine installed (pip install openvino)")


def _lite0(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("efficientnet_lite0", 2, weights=None).backbone.eval()


def _hide_engines(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if neither engine package were installed: importing them fails."""
    for name in engine.ENGINES:
        monkeypatch.setitem(sys.modules, name, None)


def _tiny_config(root: Path, out: Path) -> TrainConfig:
    return TrainConfig(data=str(root), out=str(out), arch="efficientnet_lite0", weights=None, epochs=2,
                       batch_size=4, progress=False)


def _fp32_features(backbone: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return backbone.float().to(memory_format=torch.contiguous_format)(images)


@pytest.mark.parametrize("name", INSTALLED)
def test_engine_features_match_pytorch_float32_on_real_photos(real_data_root, monkeypatch, tmp_path, name):
    monkeypatch.setenv(engine.ENGINE_ENV, name)
    test = find_dataset(real_data_root).test().samples
    samples = test[:8] + test[-8:]  # cats and dogs
    prep = get_arch(DEFAULT_ARCH).prep
    backbone = create_model(DEFAULT_ARCH, 2).backbone.eval()
    runner = backbone_runner(backbone, f"{DEFAULT_ARCH}:default", CPU, cache_root=tmp_path)
    assert runner.identity == f"{name}:fp32"
    views = training_views(train_transform(prep))
    assert views.names == ("plain", "flip")
    features, kept = compute_features(runner, samples, views, SkippedFiles(), min_size=prep.image_size, progress=False)
    assert kept == list(range(16)) and features.dtype == torch.float32
    loader = make_loader(samples, eval_transform(prep), 16, num_workers=0, min_size=prep.image_size)
    images = next(iter(loader))[0]
    for view, batch in ((0, images), (1, images.flip(-1))):
        cosine = torch.nn.functional.cosine_similarity(features[view], _fp32_features(backbone, batch), dim=1)
        assert cosine.min() >= MIN_COSINE, f"{name}, view {view}: cosine {cosine.min():.6f}"


@needs_engine
def test_the_export_is_cached_and_reused(tmp_path, monkeypatch):
    prep = get_arch("efficientnet_lite0").prep
    images = torch.randn(3, 3, prep.image_size, prep.image_size, generator=torch.Generator().manual_seed(1))
    first = backbone_runner(_lite0(), "lite0:random:seed0", CPU, cache_root=tmp_path)
    exports = list(tmp_path.iterdir())
    assert len(exports) == 1 and (exports[0] / engine.MODEL_FILE).stat().st_size > 1_000_000

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(engine, "export_backbone_onnx", no_export)
    second = backbone_runner(_lite0(), "lite0:random:seed0", CPU, cache_root=tmp_path)  # same weights
    assert second.identity == first.identity != "torch"
    torch.testing.assert_close(second(images), first(images))
    monkeypatch.undo()
    backbone_runner(_lite0(seed=1), "lite0:random:seed0", CPU, cache_root=tmp_path)  # other weights, same id
    assert len(list(tmp_path.iterdir())) == 2


@needs_engine
def test_a_damaged_export_is_exported_again(tmp_path):
    prep = get_arch("efficientnet_lite0").prep
    backbone = _lite0()
    backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path)
    (model,) = tmp_path.glob(f"*/{engine.MODEL_FILE}")
    model.write_bytes(model.read_bytes()[:1000])
    images = torch.randn(2, 3, prep.image_size, prep.image_size)
    runner = backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path)
    assert runner.identity != "torch:float32" and model.stat().st_size > 1_000_000
    cosine = torch.nn.functional.cosine_similarity(runner(images), _fp32_features(backbone, images), dim=1)
    assert cosine.min() >= MIN_COSINE


@needs_engine
def test_an_inexact_engine_falls_back_to_pytorch_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(engine, "MIN_COSINE", 1.5)  # no export can meet this
    prep = get_arch("efficientnet_lite0").prep
    with pytest.warns(UserWarning, match="differ from PyTorch's.*running it in PyTorch"):
        runner = backbone_runner(_lite0(), "lite0", CPU, reduced_precision=False, cache_root=tmp_path)
    assert runner.identity == "torch:float32"


def test_without_an_engine_everything_runs_in_pytorch(tmp_path, monkeypatch, small_arch):
    _hide_engines(monkeypatch)
    assert engine_name(CPU) == "torch"
    assert engine_identity(CPU, reduced_precision=False) == "torch:float32"
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    metrics = train(_tiny_config(root, tmp_path / "run"))
    assert metrics["epochs_run"] == 2
    loaded = load_model(tmp_path / "run" / "best.pt", "cpu")
    result = evaluate(loaded, read_class_folders(root).samples, use_cache=False, progress=False)
    assert result.n == 12 and loaded.runner.identity.startswith("torch:")


@needs_engine
def test_features_of_different_engines_are_cached_apart(tmp_path, monkeypatch, small_arch):
    root = make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3})
    samples = read_class_folders(root).samples
    prep = get_arch(small_arch).prep
    backbone = _lite0()
    cache = tmp_path / "features"
    run = dict(cache_root=cache, min_size=prep.image_size, progress=False, reduced_precision=False)
    views = eval_views(eval_transform(prep))
    with_engine = extract_features(backbone, "b", samples, views, CPU, SkippedFiles(), **run)
    _hide_engines(monkeypatch)
    in_torch = extract_features(backbone, "b", samples, views, CPU, SkippedFiles(), **run)
    assert len([folder for folder in cache.iterdir() if folder.is_dir()]) == 2  # one per engine
    cosine = torch.nn.functional.cosine_similarity(with_engine.features[0], in_torch.features[0], dim=1)
    assert cosine.min() >= MIN_COSINE


@needs_engine
def test_evaluate_and_predict_use_the_engine_for_a_frozen_backbone(tmp_path, small_arch):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    train(_tiny_config(root, tmp_path / "run"))
    loaded = load_model(tmp_path / "run" / "best.pt", "cpu")
    samples = read_class_folders(root).samples
    result = evaluate(loaded, samples, use_cache=False, progress=False)
    assert loaded.runner.identity == engine_identity(CPU)
    paths = [path for path, _ in samples]
    predictions = predict(loaded, paths)
    assert [p.probability for p in predictions] == pytest.approx([max(p) for p in result.probabilities], abs=1e-4)
    with torch.inference_mode():  # the whole network in PyTorch float32 agrees
        images = torch.stack([eval_transform(loaded.prep)(load_rgb(path, loaded.prep.image_size)) for path in paths])
        reference = loaded.model.float()(images).softmax(1)
    assert torch.tensor(result.probabilities) == pytest.approx(reference, abs=1e-3)


def test_gpus_always_use_pytorch(monkeypatch):
    monkeypatch.setenv(engine.ENGINE_ENV, "auto")
    assert engine_name(torch.device("cuda")) == "torch"
    assert engine_identity(torch.device("cuda")) == "torch:float16"
    assert engine_identity(torch.device("cuda"), reduced_precision=False) == "torch:float32"


def test_a_forced_engine_that_is_unknown_or_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(engine.ENGINE_ENV, "tensorrt")
    with pytest.raises(CatdogError, match="CATDOG_ENGINE=tensorrt: unknown engine; use auto, torch, openvino"):
        engine_name(CPU)
    _hide_engines(monkeypatch)
    monkeypatch.setenv(engine.ENGINE_ENV, "openvino")
    with pytest.raises(CatdogError, match="openvino not installed. pip install openvino, or unset"):
        engine_name(CPU)
    monkeypatch.setenv(engine.ENGINE_ENV, "torch")
    assert engine_name(CPU) == "torch"


def test_prefetched_keeps_order_and_raises_where_the_producer_failed():
    assert list(prefetched(range(10), depth=3)) == list(range(10))

    def failing():
        yield from (1, 2)
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in prefetched(failing()):
            seen.append(item)
    assert seen == [1, 2]


def test_prefetched_stops_its_thread_when_the_consumer_stops():
    produced = []

    def endless():
        while True:
            produced.append(len(produced))
            yield produced[-1]

    items = prefetched(endless(), depth=2)
    assert [next(items) for _ in range(3)] == [0, 1, 2]
    items.close()
    assert not any(thread.name == "catdog-prefetch" for thread in threading.enumerate())
    assert len(produced) <= 3 + 2 + 1  # what was taken, the queue, the item in hand


@needs_engine
def test_an_unwritable_engine_cache_warns_and_still_uses_the_engine(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the one-run export goes
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    prep = get_arch("efficientnet_lite0").prep
    backbone = _lite0()
    with pytest.warns(UserWarning, match="exported backbone not cached .*Set CATDOG_CACHE_DIR to a writable folder"):
        runner = backbone_runner(backbone, "lite0", CPU, cache_root=blocker / "engines")
    assert runner.identity == engine_identity(CPU) != "torch:float32"
    images = torch.randn(2, 3, prep.image_size, prep.image_size)
    cosine = torch.nn.functional.cosine_similarity(runner(images), _fp32_features(backbone, images), dim=1)
    assert cosine.min() >= MIN_COSINE  # the temporary export is gone; the loaded model still runs
    assert not any(scratch.iterdir())


@pytest.mark.skipif(not engine.installed("openvino"), reason="OpenVINO not installed")
@pytest.mark.parametrize("name", [name for name in ("openvino", engine.INT8) if engine.ENGINES[name].installed()])
def test_openvino_runs_without_reporting_usage(tmp_path, name):
    """Importing OpenVINO (and NNCF, for int8) through the engine starts no telemetry process and never loads
    their telemetry module, even where it is installed (a dependency of both packages)."""
    script = tmp_path / "main.py"  # a main module with a file: the spawn start method would import it again
    script.write_text(f"""
import multiprocessing, sys, torch
from pathlib import Path
multiprocessing.set_start_method("spawn")
started = []
original = multiprocessing.process.BaseProcess.start
multiprocessing.process.BaseProcess.start = lambda self: started.append(self) or original(self)
from catdog_lib.model.backbones import create_model
from catdog_lib import engine
engine.INT8_MIN_MEDIAN_COSINE = -1.0  # random weights and images: only the imports are under test
if __name__ == "__main__":
    assert engine.installed(engine.TELEMETRY), "openvino-telemetry is not installed: nothing to hide"
    runner = engine.backbone_runner(create_model("efficientnet_lite0", 2, weights=None).backbone, "lite0",
                                    torch.device("cpu"), cache_root=Path({str(tmp_path)!r}),
                                    calibration=lambda: torch.randn(8, 3, 64, 64))
    features = runner(torch.zeros(1, 3, 64, 64))
    print(runner.identity.split("/")[0], tuple(features.shape), len(started), engine.TELEMETRY in sys.modules)
""")
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                            env={**os.environ, engine.ENGINE_ENV: name})
    assert result.returncode == 0, result.stderr
    identity = engine.ENGINES[name].identity
    assert result.stdout.split() == [identity, "(1,", "1280)", "0", "False"]
