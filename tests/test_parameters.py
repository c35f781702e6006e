"""Parameters checked where a student types them (issue 31, item 5): TrainConfig's fields, the notebooks'
parameters cells (in a real IPython shell), the data folder a notebook is given, and `catdog train`'s numbers."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import nbformat
import pytest

from catdog_lib import cli, course, parameters, training
from catdog_lib.errors import CatdogError
from catdog_lib.classroom.runner import NOTEBOOK_DIR, NOTEBOOKS
from catdog_lib.train.training import TrainConfig
from conftest import make_dataset, run_catdog, run_python, subprocess_env


def parameters_cells() -> dict[str, dict[str, object]]:
    """Each notebook's parameters cell as {name: committed value}."""
    cells = {}
    for name in NOTEBOOKS:
        cell = next(c for c in nbformat.read(NOTEBOOK_DIR / name, as_version=4).cells
                    if "parameters" in c.metadata.get("tags", []))
        cells[name] = {s.targets[0].id: ast.literal_eval(s.value) for s in ast.parse(cell.source).body}
    return cells


# --- TrainConfig ------------------------------------------------------------------------------------


@pytest.mark.parametrize("field, value, allowed", [
    ("epochs", "2", "a whole number of at least 1"),
    ("epochs", 2.5, "a whole number of at least 1"),
    ("epochs", True, "a whole number of at least 1"),
    ("batch_size", 2.5, "a whole number of at least 1"),
    ("batch_size", 0, "a whole number of at least 1"),
    ("lr", "1e-3", "a positive number such as 1e-3"),
    ("lr", -1e-3, "a positive number such as 1e-3"),
    ("seed", -1, "a whole number from 0 to 4294967295"),
    ("split_seed", 2**32, "a whole number from 0 to 4294967295"),
    ("valid_fraction", 0, "a share between 0 and 1 (neither 0 nor 1)"),
    ("valid_fraction", 1, "a share between 0 and 1 (neither 0 nor 1)"),
    ("per_class", -5, "None (all the photos) or a whole number of at least 1"),
    ("flip_p", 1.5, "a probability from 0 to 1"),
    ("patience", -1, "a whole number of at least 0"),
    ("finetune_epochs", 0, "a whole number of at least 1"),
    ("arch", "alexnet", "one of efficientnet_lite0"),
    ("recipe", "fine-tune", "one of features, finetune, whole"),
    ("device", "gpu", "one of auto, cpu, cuda, mps"),
])
def test_a_wrong_train_config_field_is_one_line_naming_it(tmp_path: Path, field: str, value: object, allowed: str):
    with pytest.raises(CatdogError) as caught:
        TrainConfig(data=str(tmp_path), out=str(tmp_path / "run"), **{field: value})
    message = str(caught.value)
    assert message.startswith(f"TrainConfig {field}={value!r}: must be ") and allowed in message
    assert "\n" not in message and not (tmp_path / "run").exists()


def test_every_train_config_field_has_a_rule_and_the_defaults_pass(tmp_path: Path):
    assert set(training.CONFIG_RULES) == {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(data=tmp_path, out=tmp_path / "run", lr=1, weights=tmp_path / "w.pth")  # ints are numbers
    assert (config.data, config.out, config.weights) == (str(tmp_path), str(tmp_path / "run"), str(tmp_path / "w.pth"))


def test_a_config_changed_after_it_was_made_is_checked_again_by_train(tmp_path: Path):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    config = TrainConfig(data=str(root), out=str(tmp_path / "run"), progress=False)
    config.batch_size = 0
    with pytest.raises(CatdogError, match=r"^TrainConfig batch_size=0: must be a whole number of at least 1\.$"):
        training.train(config)


# --- the notebooks' parameters cells --------------------------------------------------------------


def test_every_parameter_of_the_six_notebooks_has_a_rule_and_its_default_passes():
    cells = parameters_cells()
    names = {name for cell in cells.values() for name in cell}
    assert names == set(parameters.NOTEBOOK_RULES)  # a new parameter needs a rule; no rule outlives its parameter
    for notebook, cell in cells.items():
        for name, value in cell.items():
            assert parameters.problem(parameters.NOTEBOOK_RULES[name], value) is None, (notebook, name, value)
        parameters.check_notebook_parameters(cell)


SHELL = r"""
import json, sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

shell = InteractiveShell.instance(colors="nocolor")
results = []
for cell in json.loads(sys.argv[1]):
    shell.reset()
    with capture_output() as captured:
        result = shell.run_cell(cell + "\nfrom catdog_lib import notebook\nnotebook.setup(DATA_DIR, drive=DRIVE)")
    results.append({"out": captured.stdout + captured.stderr, "failed": not result.success})
print(json.dumps(results))
"""


WRONG = {  # a parameters cell's wrong line -> the start of the one line the setup cell shows
    "PHOTOS_PER_CLASS = -5": "PHOTOS_PER_CLASS = -5 in the parameters cell: must be None (all the photos) or a "
                             "whole number of at least 1; edit the parameters cell and run it again.",
    "BATCH_SIZE = 0": "BATCH_SIZE = 0 in the parameters cell: must be a whole number of at least 1; ",
    "EPOCHS = '2'": "EPOCHS = '2' in the parameters cell: must be a whole number of at least 1; ",
    "LEARNING_RATE = -1e-3": "LEARNING_RATE = -0.001 in the parameters cell: must be a positive number such as 1e-3",
    "VALID_FRACTION = 1": "VALID_FRACTION = 1 in the parameters cell: must be a share between 0 and 1",
    "ARCH = 'resnet'": "ARCH = 'resnet' in the parameters cell: must be one of efficientnet_lite0, ",
    "TEMPERATURE_RANGE = (20.0, 0.05)": "TEMPERATURE_RANGE = (20.0, 0.05) in the parameters cell: must be two ",
    "DRIVE = 'yes'": "DRIVE = 'yes' in the parameters cell: must be True or False; ",
}
DEFAULTS = "DATA_DIR = None\nDRIVE = False\n"
RIGHT = DEFAULTS + "PHOTOS_PER_CLASS = None\nBATCH_SIZE = 32\nARCH = 'efficientnet_lite0'"


@pytest.fixture(scope="module")
def shown_in_ipython() -> dict[str, dict]:
    """Each cell of WRONG (and RIGHT), then notebook.setup, in a real IPython shell: what it showed."""
    cells = [DEFAULTS + line for line in WRONG] + [RIGHT]
    result = run_python(SHELL, json.dumps(cells))
    assert result.returncode == 0, result.stderr
    return dict(zip([*WRONG, "right"], json.loads(result.stdout.strip().splitlines()[-1])))


@pytest.mark.parametrize("line", list(WRONG))
def test_a_wrong_parameter_stops_the_setup_cell_with_one_line(shown_in_ipython: dict, line: str):
    shown = shown_in_ipython[line]
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", text) for text in shown["out"].splitlines() if text.strip()]
    assert shown["failed"] and len(lines) == 1, shown["out"]
    assert lines[0].startswith("CatdogError: " + WRONG[line]), lines[0]


def test_right_parameters_pass_the_setup_cell_silently(shown_in_ipython: dict):
    assert not shown_in_ipython["right"]["failed"] and shown_in_ipython["right"]["out"] == ""


# --- the data folder ------------------------------------------------------------------------------


@pytest.fixture
def course_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A course folder of its own, no CATDOG_DATA_DIR, and synthetic data that would go into it."""
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path))
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)
    monkeypatch.setattr(course, "SYNTHETIC_ROOT", tmp_path / "data" / "synthetic-cats-vs-dogs")
    return tmp_path


def test_a_data_dir_with_one_class_is_an_error_not_synthetic_data(course_folder: Path, capsys):
    one_class = make_dataset(course_folder / "mine", {"cats": 3})
    with pytest.raises(CatdogError) as caught:
        course.course_data_root(str(one_class))
    message = str(caught.value)
    assert message.startswith(f"{one_class}: found 1 class folder(s) (cats); need at least 2")
    assert "DATA_DIR (parameters cell)" in message and "\n" not in message
    assert not course.SYNTHETIC_ROOT.exists() and "SYNTHETIC" not in capsys.readouterr().out


def test_a_missing_data_dir_or_catdog_data_dir_is_an_error(course_folder: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(CatdogError, match=r"no-such-folder: no such folder\..* DATA_DIR \(parameters cell\)"):
        course.course_data_root(str(course_folder / "no-such-folder"))
    empty = course_folder / "empty"
    empty.mkdir()
    monkeypatch.setenv("CATDOG_DATA_DIR", str(empty))
    with pytest.raises(CatdogError, match=r"found 0 class folder\(s\).*\$CATDOG_DATA_DIR: point it at a dataset"):
        course.course_data_root()
    assert not course.SYNTHETIC_ROOT.exists()


def test_an_incomplete_default_data_folder_is_an_error(course_folder: Path):
    make_dataset(course_folder / "data" / "cat-and-dog", {"dogs": 2})  # e.g. an interrupted download
    with pytest.raises(CatdogError, match=r"cat-and-dog: found 1 class folder\(s\) \(dogs\).*finish getting the "
                                          r"photos .*or remove the folder to run on synthetic data\."):
        course.course_data_root()
    assert not course.SYNTHETIC_ROOT.exists()


def test_without_any_data_folder_the_synthetic_set_is_used(course_folder: Path, capsys):
    assert course.course_data_root() == (course.SYNTHETIC_ROOT, True)
    assert "SYNTHETIC data (no real photos found" in capsys.readouterr().out


def test_catdog_course_refuses_an_unusable_data_folder(course_folder: Path, tmp_path: Path):
    one_class = make_dataset(tmp_path / "mine", {"cats": 3})
    result = run_catdog("course", "--fast", "--offline", "--out", tmp_path / "out",
                        env={**subprocess_env(CATDOG_HOME=str(course_folder)), "CATDOG_DATA_DIR": str(one_class)})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().startswith(f"catdog: error: {one_class}: found 1 class folder(s) (cats)")
    assert len(result.stderr.strip().splitlines()) == 1 and "SYNTHETIC" not in result.stdout


# --- catdog train's numbers -----------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, message", [
    ("--lr", "-1e-3", "argument --lr: must be positive and at most 1 (e.g. 1e-3), got -1e-3"),
    ("--lr", "-inf", "argument --lr: must be positive and at most 1 (e.g. 1e-3), got -inf"),
    ("--epochs", "-2", "argument --epochs: must be positive, got -2"),
    ("--seed", "-1e3", "argument --seed: invalid int value: '-1e3'"),
])
def test_a_negative_number_is_read_as_the_options_value(tmp_path: Path, flag: str, value: str, message: str):
    root = make_dataset(tmp_path / "data", {"cats": 4, "dogs": 4})
    result = run_catdog("train", "--data", root, "--out", tmp_path / "run", flag, value)
    assert result.returncode == 2
    assert result.stderr == f"catdog: error: {message} (see `catdog train --help`)\n"
    assert not (tmp_path / "run").exists()


def test_negative_values_joins_only_an_option_and_a_negative_number():
    assert cli.negative_values(["train", "--lr", "-1e-3", "--seed", "4"]) == ["train", "--lr=-1e-3", "--seed", "4"]
    assert cli.negative_values(["predict", "--json", "-cat.jpg", "--", "-1e3"]) == [
        "predict", "--json", "-cat.jpg", "--", "-1e3"]


def test_epochs_with_the_finetune_recipe_counts_the_first_stage(tmp_path: Path, small_arch: str, capsys):
    """--epochs 1 --finetune-epochs 1: one epoch of the head, then one of fine-tuning, said so."""
    help_text = " ".join(run_catdog("train", "--help").stdout.split())
    assert "with --recipe finetune, of its first stage (the head), then up to --finetune-epochs more" in help_text
    root = make_dataset(tmp_path / "data", {"cats": 8, "dogs": 8})
    run = tmp_path / "run"
    code = cli.main(["train", "--data", str(root), "--out", str(run), "--arch", small_arch, "--weights", "none",
                     "--recipe", "finetune", "--epochs", "1", "--finetune-epochs", "1", "--batch-size", "8",
                     "--device", "cpu", "--quiet"])
    assert code == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["epochs"] == 1 and metrics["config"]["finetune_epochs"] == 1
    assert [row["stage"] for row in metrics["history"]] == ["head", "finetune"]
    assert "(1 + 1 fine-tuning epochs, " in capsys.readouterr().out


def test_finetune_epochs_without_the_finetune_recipe_is_refused(tmp_path: Path):
    root = make_dataset(tmp_path / "data", {"cats": 4, "dogs": 4})
    result = run_catdog("train", "--data", root, "--out", tmp_path / "run", "--finetune-epochs", "2")
    assert result.returncode == 2 and not (tmp_path / "run").exists()
    assert result.stderr.strip() == ("catdog: error: --finetune-epochs counts the finetune recipe's second stage; "
                                     "add --recipe finetune or drop it.")
