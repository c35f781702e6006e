"""Notebook 05 runs the code it shows: a student's edit of its `evaluation_loop` or `grad_cam` changes what it prints.

05 runs three times in a real kernel (fast mode, a small made dataset with more dogs than cats, runs and
caches in temporary folders): as committed, with the loop edited to answer "dogs" for every photo, and with
Grad-CAM edited to heat every pixel.
"""

from __future__ import annotations

import json
import re

import pytest

from catdog_lib import evaluation, gradcam
from conftest import make_dataset
from test_notebook_effects import outputs, run_notebook

NOTEBOOK = "05_evaluate.ipynb"
CATS, DOGS = 12, 20
PARAMS = {"N_GRADCAM": 2, "N_MISCLASSIFIED": 2}
ALWAYS_DOGS = {"outputs.append(model(inputs).float().cpu())":
               "outputs.append(torch.tensor([[0.0, 1.0]]).repeat(len(targets), 1))"}
ALL_HOT = {"return cam / cam.amax(dim=(1, 2), keepdim=True).clamp(min=1e-7)": "return torch.ones_like(cam)"}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("notebook05")
    data = make_dataset(base / "data", {"cats": CATS, "dogs": DOGS}, size=(64, 64))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CATDOG_RUNS_DIR", str(base / "runs"))
        patch.setenv("CATDOG_CACHE_DIR", str(base / "cache"))
        patch.setenv("CATDOG_FAST", "1")
        yield {"data": str(data), "runs": base / "runs"}


@pytest.fixture(scope="module")
def printed(env: dict) -> dict[str, str]:
    """What 05 prints as committed (it trains the course checkpoint first), with each edit."""
    params = {**PARAMS, "DATA_DIR": env["data"]}
    return {name: outputs(run_notebook(NOTEBOOK, params, edits))
            for name, edits in (("as is", None), ("always dogs", ALWAYS_DOGS), ("all hot", ALL_HOT))}


def accuracy_and_confusion(text: str) -> tuple[float, list[list[int]]]:
    accuracy = re.search(r"Test Accuracy : ([\d.]+) \((\d+) images\)", text)
    confusion = re.search(r"confusion matrix \(row: true class, column: predicted class\): (\[.*\])", text)
    assert accuracy and confusion, text[:2000]
    return float(accuracy.group(1)), json.loads(confusion.group(1))


def mean_heats(text: str) -> list[float]:
    return [float(value) for value in re.findall(r"predicted \w+ \([\d.]+\), heatmap \(\d+, \d+\), mean heat ([\d.]+)",
                                                 text)]


def test_as_committed_05_prints_what_the_library_measures(printed, env):
    loaded = evaluation.load_model(env["runs"] / "course" / "best.pt")
    samples = evaluation.samples_to_evaluate(env["data"], loaded.classes)
    result = evaluation.evaluate(loaded, samples, progress=False)
    assert accuracy_and_confusion(printed["as is"]) == (round(result.accuracy, 3), result.confusion)
    picks = [path for path, _ in samples[:: len(samples) // PARAMS["N_GRADCAM"]]][:PARAMS["N_GRADCAM"]]
    expected = [round(float(cam.heatmap.mean()), 2) for cam in gradcam.explain(loaded, picks)]
    assert mean_heats(printed["as is"]) == expected and max(expected) < 1


def test_an_edited_evaluation_loop_changes_the_accuracy_and_the_confusion_matrix(printed):
    accuracy, confusion = accuracy_and_confusion(printed["always dogs"])
    assert (accuracy, confusion) == (round(DOGS / (CATS + DOGS), 3), [[0, CATS], [0, DOGS]])
    assert accuracy_and_confusion(printed["as is"]) != (accuracy, confusion)
    assert f"{CATS} of {CATS + DOGS} test images misclassified" in printed["always dogs"]
    assert "TTA changed 0 of" in printed["always dogs"]  # TTA runs the same (edited) loop
    assert mean_heats(printed["always dogs"]) == mean_heats(printed["as is"])  # Grad-CAM untouched


def test_an_edited_grad_cam_changes_the_heatmaps(printed):
    assert mean_heats(printed["all hot"]) == [1.0] * PARAMS["N_GRADCAM"]
    assert accuracy_and_confusion(printed["all hot"]) == accuracy_and_confusion(printed["as is"])  # loop untouched
