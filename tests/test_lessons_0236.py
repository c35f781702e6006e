"""Notebooks 03 and 06 print their conclusions instead of typing them, and 03's knobs take effect.

The comparison's threshold lives in one place (`compare.ALPHA`); notebook 03 runs on a small dataset the
test makes, with every section-5 knob changed, and its printed conclusion must add up the seeds' lines.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from catdog_lib import compare
from conftest import full_mode_course
from test_notebook_effects import outputs, run_notebook


def test_a_difference_is_shown_below_alpha_only():
    labels = np.zeros(40, dtype=int)
    a, b = labels.copy(), labels.copy()
    a[:8], b[8] = 1, 1  # 8 photos gained, 1 lost: p = 20/512, below ALPHA
    gained = compare.paired(labels, a, b)
    assert gained.p_value < compare.ALPHA and gained.shown
    assert gained.verdict() == f"B is better than A on these 40 photos (p < {compare.ALPHA})"
    a[6:8] = 0  # 6 gained, 1 lost: p = 2 * (1 + 7) / 2**7 = 16/128, above ALPHA
    chance = compare.paired(labels, a, b)
    assert chance.p_value == pytest.approx(16 / 128) and not chance.shown
    assert chance.verdict() == "no difference shown on these 40 photos"


SETTINGS_03 = {"SEED": 7, "SEEDS": 2, "PER_CLASS": 3, "EPOCHS": 2, "BATCH_SIZE": 4, "LEARNING_RATE": 0.01,
               "FLIP_TRIALS": 200, "VIEWS_SHOWN": 5, "EPOCHS_SHOWN": 2}


@pytest.fixture(scope="module")
def notebook_03(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Notebook 03 in full mode on 12 photos per class, with section 5's knobs changed: its printed text."""
    base = tmp_path_factory.mktemp("lesson03")
    with full_mode_course(base, 12) as data:
        return outputs(run_notebook("03_augmentation.ipynb", {**SETTINGS_03, "DATA_DIR": str(data)}))


def test_03_shows_as_many_draws_as_its_parameters_say(notebook_03):
    assert re.search(r"mirrored the image in \d+ of 200 draws", notebook_03)
    assert "5 draws of the training transform, mirrored?" in notebook_03
    assert re.findall(r"epoch (\d+): mirrored\? \[[01, ]+\]", notebook_03) == ["1", "2"]


def test_03_runs_its_seeds_on_per_class_photos(notebook_03):
    """SEEDS runs from SEED on, each on PER_CLASS photos of each class; no fast-mode cap in full mode."""
    assert re.findall(r"seed (\d+) \((\d+) training photos\)", notebook_03) == [("7", "6"), ("8", "6")]
    assert "each run draws 3 training photos per class" in notebook_03
    assert "fast subset" not in notebook_03


def test_03_conclusion_adds_up_the_seeds(notebook_03):
    seeds = notebook_03.split("the flip changed")[0]  # the seeds' lines, before the conclusion
    changed = sum(int(b) + int(w) for b, w in re.findall(r"was wrong on (\d+), the reverse on (\d+)", seeds))
    p_values = [float(p) for p in re.findall(r"McNemar p = ([\d.e-]+);", seeds)]
    assert len(p_values) == 2
    n_valid = int(re.search(r"(\d+) validation photos; each run draws", notebook_03).group(1))
    match = re.search(r"the flip changed (\d+) of 2 x (\d+) validation answers; McNemar p < ([\d.]+) in (\d+) of 2 "
                      r"seeds: (.*)", notebook_03)
    assert match, notebook_03
    assert (int(match.group(1)), int(match.group(2)), float(match.group(3))) == (changed, n_valid, compare.ALPHA)
    shown = sum(p < compare.ALPHA for p in p_values)
    assert int(match.group(4)) == shown
    assert (match.group(5) == "no difference shown") == (shown == 0)
    moved = re.search(r"moved by up to ([\d.]+) from one draw of photos to another \(no flip\), by up to ([\d.]+) "
                      r"with the flip on the same photos \(one photo is [\d.]+\): (.*)", notebook_03)
    assert moved, notebook_03
    by_seed, by_flip = float(moved.group(1)), float(moved.group(2))
    if by_seed != by_flip:  # printed to 3 decimals: a tie there may still be ordered
        assert moved.group(3) == ("the draw of photos moved it more" if by_seed > by_flip else "the flip moved it more")
