"""Int8 backbone (NNCF + OpenVINO): judged by how its features classify real photos, chosen only where it pays."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from catdog_lib import devices, engine, features
from catdog_lib.model.backbones import DEFAULT_ARCH, create_model, get_arch
from catdog_lib.data.datasets import SkippedFiles
from catdog_lib.model.engine import INT8, backbone_runner, engine_identity, engine_name
from catdog_lib.model.features import calibration_photos, eval_views, extract_features
from catdog_lib.data.layout import find_dataset, read_class_folders
from catdog_lib.data.split import stratified_split, subset_per_class
from catdog_lib.data.transforms import eval_transform
from conftest import make_dataset

CPU = torch.device("cpu")
needs_int8 = pytest.mark.skipif(not engine.ENGINES[INT8].installed(), reason="openvino and nncf not installed")


@pytest.fixture(autouse=True)
def _own_engine_cache(tmp_path, monkeypatch):
    """A quantized model here stays here: in the session's shared engine cache it would be used by every later
    test extracting features of the same weights (as it is meant to be, within one cache)."""
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(tmp_path / "own-cache"))


def _features(backbone: nn.Module, samples, prep, cache: Path, calibrate: bool) -> features.FeatureSet:
    return extract_features(backbone, f"{DEFAULT_ARCH}:default", samples, eval_views(eval_transform(prep)), CPU,
                            SkippedFiles(), cache_root=cache, min_size=prep.image_size, progress=False,
                            calibrate=calibrate, reduced_precision=False)  # PyTorch: float32


def _head_predictions(train: features.FeatureSet, valid: features.FeatureSet, seed: int) -> torch.Tensor:
    """A linear head trained as the features recipe does (Adam 1e-3, batches of 32, 10 epochs); its valid answers."""
    torch.manual_seed(seed)
    head = nn.Linear(train.features.shape[-1], 2)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(10):
        for batch in torch.randperm(len(train.labels), generator=generator).split(32):
            optimizer.zero_grad()
            nn.functional.cross_entropy(head(train.features[0, batch]), train.labels[batch]).backward()
            optimizer.step()
    with torch.inference_mode():
        return head(valid.features[0]).argmax(1)


@needs_int8
def test_int8_features_classify_real_photos_as_well_as_float32(real_data_root, tmp_path, monkeypatch):
    """The measure int8 is accepted by: heads trained on int8 and on PyTorch float32 features (same seeds)
    answer the 400 validation photos alike and as accurately (measured: 1 of 400 differs, int8 0-1 photo better)."""
    split = stratified_split(find_dataset(real_data_root).train())
    train_samples = subset_per_class(split.train, 150)
    prep = get_arch(DEFAULT_ARCH).prep
    backbone = create_model(DEFAULT_ARCH, 2).backbone.eval()
    monkeypatch.setattr(features, "QUANTIZE_FROM", len(train_samples))
    runs = {}
    for name in ("torch", INT8):
        monkeypatch.setenv(engine.ENGINE_ENV, name)
        cache = tmp_path / name
        train = _features(backbone, train_samples, prep, cache, calibrate=True)
        valid = _features(backbone, split.valid, prep, cache, calibrate=False)
        runs[name] = train, valid
    assert engine_identity(CPU, backbone=backbone).startswith("openvino:int8/")  # the quantized model is cached
    (train32, valid32), (train8, valid8) = runs["torch"], runs[INT8]
    assert torch.equal(valid32.labels, valid8.labels) and len(valid8.labels) == 400
    for seed in range(3):
        answers32, answers8 = _head_predictions(train32, valid32, seed), _head_predictions(train8, valid8, seed)
        correct32 = int((answers32 == valid32.labels).sum())
        correct8 = int((answers8 == valid8.labels).sum())
        assert correct8 >= correct32 - 2, f"seed {seed}: int8 {correct8} vs float32 {correct32} of 400 right"
        assert int((answers8 != answers32).sum()) <= 6, f"seed {seed}: int8 and float32 disagree too often"


def test_int8_is_picked_only_where_the_cpu_has_a_dot_product_instruction(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("flags\t: avx2 avx512f avx512_vnni\n")
    assert devices.cpu_has_int8_dot(cpuinfo)
    monkeypatch.setenv(devices.ISA_CAP_ENV, "AVX2")  # oneDNN capped at AVX2: as on a laptop without AVX-512
    assert devices.instruction_sets(cpuinfo) == ["AVX2"] and not devices.cpu_has_int8_dot(cpuinfo)
    monkeypatch.delenv(devices.ISA_CAP_ENV)
    cpuinfo.write_text("flags\t: avx2 fma\n")
    assert not devices.cpu_has_int8_dot(cpuinfo)
    if engine.ENGINES[INT8].installed():
        monkeypatch.delenv(engine.ENGINE_ENV, raising=False)
        monkeypatch.setattr(engine, "cpu_has_int8_dot", lambda: False)
        assert engine_name(CPU) == "openvino"
        monkeypatch.setattr(engine, "cpu_has_int8_dot", lambda: True)
        assert engine_name(CPU) == INT8
        assert engine_name(torch.device("cuda")) == "torch"


def _lite0(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return create_model("efficientnet_lite0", 2, weights=None).backbone.eval()


@needs_int8
def test_a_large_enough_run_quantizes_once_and_never_mixes_engines(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv(engine.ENGINE_ENV, INT8)
    monkeypatch.setattr(features, "QUANTIZE_FROM", 8)  # the 8 photos not cached yet
    monkeypatch.setattr(features, "CALIBRATION_PHOTOS", 8)
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6}, size=(40, 40))
    samples = read_class_folders(root).samples
    prep = get_arch("efficientnet_lite0").prep
    backbone, cache = _lite0(), tmp_path / "features"
    run = dict(cache_root=cache, min_size=prep.image_size, progress=False)
    views = eval_views(eval_transform(prep))
    few = extract_features(backbone, "b", samples[:4], views, CPU, SkippedFiles(), calibrate=True, **run)
    assert engine_identity(CPU, backbone=backbone) == "openvino:fp32"  # 4 photos: not worth quantizing
    capfd.readouterr()
    many = extract_features(backbone, "b", samples, views, CPU, SkippedFiles(), calibrate=True, **run)
    assert capfd.readouterr().out == ""  # NNCF's progress bars and log lines kept quiet
    identity = engine_identity(CPU, backbone=backbone)
    assert identity.startswith("openvino:int8/")
    # every photo's features came from the int8 model, the 4 cached in float32 too
    int8 = backbone_runner(backbone, "b", CPU)
    assert int8.identity == identity
    images = calibration_photos(samples, views, n=len(samples), min_size=prep.image_size)
    torch.testing.assert_close(many.features[0], int8(images))
    assert not torch.equal(many.features[0, :4], few.features[0])

    def no_engine(*args, **kwargs):
        raise AssertionError("built an engine although every feature is cached")

    monkeypatch.setattr(features, "backbone_runner", no_engine)
    again = extract_features(backbone, "b", samples, views, CPU, SkippedFiles(), **run)  # e.g. evaluation
    assert torch.equal(again.features, many.features)


@needs_int8
def test_a_quantization_that_fails_its_check_falls_back_to_float32_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv(engine.ENGINE_ENV, INT8)
    monkeypatch.setattr(engine, "INT8_MIN_MEDIAN_COSINE", 1.5)  # nothing meets this
    prep = get_arch("efficientnet_lite0").prep
    photos = torch.randn(8, 3, prep.image_size, prep.image_size, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="int8 not used.*median cosine"):
        runner = backbone_runner(_lite0(), "b", CPU, cache_root=tmp_path, calibration=lambda: photos)
    assert runner.identity == "openvino:fp32"
