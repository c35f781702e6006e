"""What a student changes in notebooks 01-04 takes effect, and notebook 04's loop is `catdog train`'s.

The notebooks run in a real kernel with parameters injected after the `parameters` cell, as papermill
does, on a small dataset the test makes, with runs and caches in temporary folders.
"""

from __future__ import annotations

import json
import math

import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell

from catdog_lib.model.checkpoint import load_checkpoint
from catdog_lib.classroom.runner import NOTEBOOK_DIR
from catdog_lib.errors import CatdogError
from catdog_lib.train.training import TrainConfig, train
from conftest import full_mode_course

SETTINGS_04 = {"EPOCHS": 3, "BATCH_SIZE": 8, "LEARNING_RATE": 0.004, "FLIP_P": 0.6, "ARCH": "efficientnet_lite0"}
VALID_FRACTION = 0.3
PHOTOS_PER_CLASS = 24


def run_notebook(name: str, params: dict, edits: dict[str, str] | None = None,
                 after: str | None = None) -> nbformat.NotebookNode:
    """Execute a notebook with ``params`` injected, code cells edited (old text -> new text) and the code
    ``after`` run last (e.g. to write the kernel's variables to a file)."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    if after:
        nb.cells.append(new_code_cell(after))
    for old, new in (edits or {}).items():
        cells = [cell for cell in nb.cells if cell.cell_type == "code" and old in cell.source]
        assert len(cells) == 1, old
        cells[0].source = cells[0].source.replace(old, new)
    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = "\n".join(f"{key} = {value!r}" for key, value in params.items())
    nb.cells.insert(index + 1, new_code_cell(injected, metadata={"tags": ["injected-parameters"]}))
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOK_DIR)}}).execute()
    return nb


def outputs(nb: nbformat.NotebookNode) -> str:
    return "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)


@pytest.fixture(scope="module")
def course_env(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small dataset, and runs and caches of their own (the kernels inherit the environment)."""
    base = tmp_path_factory.mktemp("effects")
    with full_mode_course(base, PHOTOS_PER_CLASS) as data:
        yield {"data": str(data), "runs": base / "runs", "base": base}


@pytest.fixture(scope="module")
def notebook_run(course_env: dict) -> dict:
    """Notebook 01 with VALID_FRACTION 0.3, then 04 with every training knob changed."""
    run_notebook("01_download_data.ipynb", {"VALID_FRACTION": VALID_FRACTION, "DATA_DIR": course_env["data"]})
    nb = run_notebook("04_transfer_learning.ipynb", {**SETTINGS_04, "DATA_DIR": course_env["data"]})
    run = course_env["runs"] / "course"
    return {"nb": nb, "metrics": json.loads((run / "metrics.json").read_text()), "last": load_checkpoint(run / "last.pt"),
            "split": json.loads((run / "split.json").read_text())}


def test_every_knob_of_01_and_04_reaches_the_run(notebook_run):
    config, last = notebook_run["metrics"]["config"], notebook_run["last"]
    assert (config["lr"], config["batch_size"], config["epochs"], config["flip_p"], config["arch"]) == (
        0.004, 8, 3, 0.6, "efficientnet_lite0")
    assert config["valid_fraction"] == VALID_FRACTION
    assert len(notebook_run["split"]["valid"]) == math.ceil(VALID_FRACTION * 2 * PHOTOS_PER_CLASS)  # not 20%
    assert [row["lr"] for row in notebook_run["metrics"]["history"]] == [0.004] * 3
    assert last["optimizer"]["param_groups"][0]["lr"] == 0.004
    steps = 3 * math.ceil(len(notebook_run["split"]["train"]) / 8)  # EPOCHS x batches of BATCH_SIZE
    assert all(int(state["step"]) == steps for state in last["optimizer"]["state"].values())
    assert last["meta"]["optimizer_class"] == "Adam"
    assert "views cached per training photo: ('plain', 'flip')" in outputs(notebook_run["nb"])


def test_notebook_04_and_catdog_train_give_the_same_epochs(notebook_run, course_env):
    metrics = train(TrainConfig(data=course_env["data"], out=str(course_env["base"] / "cli"), epochs=3,
                                batch_size=8, lr=0.004, flip_p=0.6, arch="efficientnet_lite0",
                                valid_fraction=VALID_FRACTION, progress=False))
    assert metrics["counts"] == notebook_run["metrics"]["counts"]
    ours, theirs = notebook_run["metrics"]["history"], metrics["history"]
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert (a["epoch"], a["lr"], a["valid_accuracy"]) == (b["epoch"], b["lr"], b["valid_accuracy"])
        for key in ("train_loss", "valid_loss"):  # same code, same data, same seed: equal up to float noise
            assert math.isclose(a[key], b[key], rel_tol=1e-5), (key, a[key], b[key])
    best_ours = load_checkpoint(course_env["runs"] / "course" / "best.pt")["state_dict"]
    best_cli = load_checkpoint(course_env["base"] / "cli" / "best.pt")["state_dict"]
    torch.testing.assert_close(best_ours["head.1.weight"], best_cli["head.1.weight"], rtol=1e-4, atol=1e-6)


def test_an_edited_optimizer_and_augmentation_are_the_ones_used(notebook_run, course_env):
    nb = run_notebook("04_transfer_learning.ipynb", {**SETTINGS_04, "EPOCHS": 1, "DATA_DIR": course_env["data"]}, {
        "torch.optim.Adam(model.head.parameters(), lr=LEARNING_RATE)":
            "torch.optim.SGD(model.head.parameters(), lr=LEARNING_RATE, momentum=0.9)",
        "train_tf = transforms.train_transform(PREP, FLIP_P)":
            "train_tf = T.Compose([T.Resize((SIZE, SIZE)), T.ColorJitter(brightness=0.4), T.ToTensor(),"
            " T.Normalize(PREP.mean, PREP.std)])"})
    run = course_env["runs"] / "course"
    last = load_checkpoint(run / "last.pt")
    assert last["meta"]["optimizer_class"] == "SGD"
    assert last["optimizer"]["param_groups"][0]["momentum"] == 0.9
    text = outputs(nb)
    assert "caching 4 augmented views per photo" in text and "ColorJitter" in text
    assert "views cached per training photo: ('draw0', 'draw1', 'draw2', 'draw3')" in text
    with pytest.raises(CatdogError, match="trained with SGD in a notebook"):
        train(TrainConfig(data="", out=str(run)), resume=True)


def test_fast_mode_says_what_it_caps(monkeypatch, capsys):
    """A parameter that fast mode shrinks says so in the output, where it applies (notebook 04's EPOCHS)."""
    from catdog_lib import course

    monkeypatch.setenv("CATDOG_FAST", "1")
    assert course.fast_cap("EPOCHS", 40, 10) == 10
    assert capsys.readouterr().out == "fast mode: EPOCHS 40 capped at 10\n"
    assert course.fast_cap("EPOCHS", 5, 10) == 5 and capsys.readouterr().out == ""
    monkeypatch.delenv("CATDOG_FAST")
    assert course.fast_cap("EPOCHS", 40, 10) == 40 and capsys.readouterr().out == ""
