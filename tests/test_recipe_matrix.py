"""Every recipe's model works with every consumer: evaluate, predict (with and without TTA), export then predict
through ONNX Runtime, the demo's analysis, and loading as notebooks 05 and 06 do. The same for a checkpoint
saved on a GPU (its tensors tagged cuda:0), proven on a CPU by tagging the storages as a CUDA machine does."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_dataset, run_catdog, subprocess_env

from catdog_lib import checkpoint, demo, devices, evaluation, modelfile, training

RECIPES = training.RECIPES
SOURCES = ("cpu", "cuda-saved")


def save_as_on_cuda(source: Path, out: Path) -> Path:
    """``source`` re-saved with every storage's location tag 'cuda:0', as torch.save writes it on a GPU."""
    def tag(storage) -> str | None:
        return "cuda:0" if storage.device.type == "cpu" else None

    def never(storage, location):
        return None

    data = torch.load(source, map_location="cpu", weights_only=True)
    torch.serialization.register_package(-1, tag, never)  # ahead of torch's own taggers
    try:
        torch.save(data, out)
    finally:
        torch.serialization._package_registry[:] = [entry for entry in torch.serialization._package_registry
                                                    if entry[1] is not tag]
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Path]:
    """best.pt of each recipe (EfficientNet-Lite0, random weights, 2 epochs on 12 tiny photos), and its
    cuda-tagged copy; trained once for the module by the real CLI."""
    base = tmp_path_factory.mktemp("matrix")
    data = make_dataset(base / "data", per_class=6, size=(32, 32))
    models = {}
    for recipe in RECIPES:
        run = base / f"run-{recipe}"
        result = run_catdog("train", "--data", data, "--out", run, "--arch", "efficientnet_lite0", "--recipe", recipe,
                            "--epochs", "2", "--batch-size", "4", "--weights", "none", "--device", "cpu", "--quiet",
                            timeout=600, env=subprocess_env(CATDOG_CACHE_DIR=str(base / "cache")))
        assert result.returncode == 0, result.stderr
        models[recipe, "cpu"] = run / "best.pt"
        models[recipe, "cuda-saved"] = save_as_on_cuda(run / "best.pt", run / "best-cuda.pt")
    return models


@pytest.fixture(scope="module")
def photos(trained: dict) -> Path:
    return next(iter(trained.values())).parent.parent / "data"


def test_the_checkpoint_format_accepts_every_training_recipe() -> None:
    assert modelfile.RECIPES == training.RECIPES


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_cuda_saved_checkpoint_really_names_cuda(trained: dict, recipe: str) -> None:
    """The tagged file is what a GPU writes: its pickle names cuda:0, and a plain torch.load on a machine
    without a GPU refuses it, as it would refuse a file from Colab's GPU runtime."""
    with zipfile.ZipFile(trained[recipe, "cuda-saved"]) as archive:
        pickled = archive.read(next(name for name in archive.namelist() if name.endswith("data.pkl")))
    assert b"cuda:0" in pickled and b"cpu" not in pickled
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(trained[recipe, "cuda-saved"], weights_only=True)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("recipe", RECIPES)
def test_notebooks_05_and_06_load_it(trained: dict, recipe: str, source: str) -> None:
    data = checkpoint.load_checkpoint(trained[recipe, source])
    assert all(tensor.device.type == "cpu" for tensor in data["state_dict"].values())
    loaded = evaluation.load_model(trained[recipe, source], "cpu")
    assert loaded.meta["recipe"] == recipe and loaded.classes == ["cats", "dogs"]
    size = loaded.prep.image_size
    logits = loaded.logits(torch.rand(2, 3, size, size))
    assert logits.shape == (2, 2) and torch.isfinite(logits).all()


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("recipe", RECIPES)
def test_evaluate_with_and_without_tta(cli, trained: dict, photos: Path, recipe: str, source: str) -> None:
    results = []
    for flags in ((), ("--tta",)):
        status, out, err = cli("evaluate", "--checkpoint", trained[recipe, source], "--data", photos, "--json",
                               "--device", "cpu", *flags)
        assert status == 0, err
        results.append(json.loads(out))
    assert [result["n"] for result in results] == [12, 12]
    assert [result["tta"] for result in results] == [False, True]
    assert all(0.0 <= result["accuracy"] <= 1.0 for result in results)


def _predict(cli, *args: str | Path) -> dict[str, list[float]]:
    """Each photo's probabilities of cats and dogs, by file name."""
    status, out, err = cli("predict", *args, "--json")
    assert status == 0, err
    return {Path(row["path"]).name: [row["probabilities"][name] for name in ("cats", "dogs")]
            for row in json.loads(out)["predictions"]}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("recipe", RECIPES)
def test_predict_and_onnx_runtime_agree(cli, trained: dict, photos: Path, recipe: str, source: str,
                                        tmp_path: Path) -> None:
    """predict with and without TTA; the exported model, run by ONNX Runtime in float32, gives PyTorch's
    probabilities: to 1e-4 where PyTorch runs in float32 too, to 2e-2 where it may run in bfloat16 (a CPU
    with native bfloat16: ~3 significant digits)."""
    images = [photos / "cats" / "cats.0.jpg", photos / "dogs" / "dogs.0.jpg"]
    plain = _predict(cli, "--checkpoint", trained[recipe, source], "--device", "cpu", *images)
    mirrored = _predict(cli, "--checkpoint", trained[recipe, source], "--device", "cpu", "--tta", *images)
    assert set(plain) == set(mirrored) == {"cats.0.jpg", "dogs.0.jpg"}
    status, _, err = cli("export", "--checkpoint", trained[recipe, source], "--out", tmp_path / "model.onnx")
    assert status == 0, err
    onnx = _predict(cli, "--model", tmp_path / "model.onnx", *images)
    reduced = devices.inference_dtype(torch.device("cpu")) != torch.float32
    for name, probabilities in plain.items():
        np.testing.assert_allclose(onnx[name], probabilities, atol=2e-2 if reduced else 1e-4)
        assert sum(probabilities) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("recipe", RECIPES)
def test_the_demo_analyses_a_photo(trained: dict, photos: Path, recipe: str, source: str) -> None:
    """The demo page's function for an upload (no Gradio needed: the page only shows its answer)."""
    answer = demo.analyse(evaluation.load_model(trained[recipe, source], "cpu"), photos / "dogs" / "dogs.1.jpg")
    assert set(answer.probabilities) == {"cats", "dogs"}
    assert sum(answer.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert answer.overlay.ndim == 3 and answer.message.startswith("dogs.1.jpg: ")
