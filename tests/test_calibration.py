"""Notebook 05's calibration code (section 3), run from the notebook's own cells: the expected calibration error
of calibrated and overconfident probabilities, the temperature fit recovering a known T, the fit never seeing a
test photo, and the reliability diagram."""

from __future__ import annotations

import ast

import nbformat
import pytest
import torch
from torch import nn

from catdog_lib import calibration, course
from catdog_lib.config import data_root
from catdog_lib.errors import CatdogError
from catdog_lib.data.layout import evaluation_folders
from catdog_lib.classroom.runner import NOTEBOOK_DIR

NOTEBOOK = nbformat.read(NOTEBOOK_DIR / "05_evaluate.ipynb", as_version=4)
CODE = [cell.source for cell in NOTEBOOK.cells if cell.cell_type == "code"]


def defined(*names: str) -> dict:
    """The notebook's cells that define ``names``, run as they are written (nothing else of the notebook)."""
    namespace = {"torch": torch, "nn": nn}
    for name in names:
        (source,) = [source for source in CODE if f"\ndef {name}(" in f"\n{source}"]
        exec(compile(source, f"05_evaluate.ipynb: {name}", "exec"), namespace)
    return namespace


@pytest.fixture(scope="module")
def nb() -> dict:
    return defined("expected_calibration_error", "fit_temperature")


def test_calibrated_probabilities_have_an_ece_near_zero(nb):
    generator = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(100_000, generator=generator)
    correct = torch.rand(100_000, generator=generator) < confidence  # right as often as it says
    assert nb["expected_calibration_error"](confidence, correct, 10) < 0.01


def test_overconfident_probabilities_have_a_large_ece(nb):
    generator = torch.Generator().manual_seed(0)
    confidence = 0.5 + 0.5 * torch.rand(100_000, generator=generator)
    correct = torch.rand(100_000, generator=generator) < 0.5 + (confidence - 0.5) / 4  # right far less often
    ece = nb["expected_calibration_error"](confidence, correct, 10)
    assert ece == pytest.approx(float((confidence - 0.5).mean() * 3 / 4), abs=0.01) and ece > 0.15
    sure_but_guessing = nb["expected_calibration_error"](torch.full((8,), 0.99), torch.arange(8) % 2 == 0, 10)
    assert sure_but_guessing == pytest.approx(0.49)


def test_the_bins_count_every_photo_and_confidence_one_goes_to_the_top_bin(nb):
    confidence = torch.tensor([0.5, 0.74, 0.76, 1.0, 1.0])
    count, mean_confidence, accuracy = nb["reliability_bins"](confidence, torch.tensor([1, 0, 1, 1, 0]).bool(), 2)
    assert count.tolist() == [2, 3]
    assert mean_confidence.tolist() == pytest.approx([0.62, 0.92]) and accuracy.tolist() == pytest.approx([0.5, 2 / 3])


@pytest.mark.parametrize("true_t", [0.4, 2.5])
def test_the_temperature_fit_recovers_the_temperature_the_labels_were_drawn_with(nb, true_t):
    generator = torch.Generator().manual_seed(1)
    logits = 3 * torch.randn(10_000, 3, generator=generator)
    labels = torch.multinomial((logits / true_t).softmax(dim=1), 1, generator=generator)[:, 0]
    assert nb["fit_temperature"](logits, labels, (0.05, 20.0)) == pytest.approx(true_t, rel=0.05)


def test_a_fit_on_photos_that_are_all_right_stops_at_the_edge_of_the_range(nb):
    logits = torch.tensor([[2.0, -1.0], [-0.5, 1.5], [3.0, 0.0]])
    assert nb["fit_temperature"](logits, torch.tensor([0, 1, 0]), (0.1, 10.0)) == pytest.approx(0.1, rel=1e-6)


def assignments(name: str) -> list[ast.expr]:
    """What the notebook assigns to ``name``, in every code cell (magics left out)."""
    values = []
    for source in CODE:
        tree = ast.parse("\n".join(line for line in source.splitlines() if not line.startswith("%")))
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    names = target.elts if isinstance(target, ast.Tuple) else [target]
                    values += [node.value.elts[i] if isinstance(node.value, ast.Tuple) else node.value
                               for i, t in enumerate(names) if isinstance(t, ast.Name) and t.id == name]
    return values


def test_the_notebook_fits_the_temperature_on_the_validation_photos_only():
    calls = [node for source in CODE for node in ast.walk(ast.parse(source.replace("%matplotlib inline", "")))
             if isinstance(node, ast.Call) and ast.unparse(node.func) == "fit_temperature"]
    assert [ast.unparse(call) for call in calls] == ["fit_temperature(valid_logits, valid_labels, TEMPERATURE_RANGE)"]
    assert [ast.unparse(v) for v in assignments("valid_logits")] == ["torch.tensor(valid.probabilities).log()"]
    assert [ast.unparse(v) for v in assignments("valid_labels")] == ["torch.tensor(valid.labels)"]
    (valid,) = assignments("valid")
    assert ast.unparse(valid).startswith("evaluation.evaluate(loaded, split.valid,") and "loop=evaluation_loop" in \
        ast.unparse(valid)
    assert [ast.unparse(v) for v in assignments("split")] == [
        "training.course_subset(course.course_split(DATA_ROOT), course.FAST_PER_CLASS if FAST else None)"]


def test_the_course_validation_photos_are_not_test_photos(tmp_path):
    root = data_root()
    if not course.has_dataset(root):
        pytest.skip(f"no photos in {root}")
    valid = {path.resolve() for path, _ in course.course_split(root, tmp_path / "split.json").valid}
    test = {path.resolve() for path, _ in evaluation_folders(root).samples}
    assert valid and test and valid.isdisjoint(test)


def test_the_reliability_diagram_draws_one_panel_per_diagram_and_refuses_nothing_to_draw():
    bins = ([0, 2, 8], [0.0, 0.7, 0.95], [0.0, 0.5, 1.0])
    fig = calibration.plot_reliability({"before": bins, "after": bins}, low=0.5)
    assert [ax.get_title() for ax in fig.axes] == ["before", "after"]
    assert [len(ax.patches) for ax in fig.axes] == [2, 2]  # the empty bin has no bar
    assert [text.get_text() for text in fig.axes[0].texts] == ["2", "8"]
    with pytest.raises(CatdogError):
        calibration.plot_reliability({})
