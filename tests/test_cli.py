"""The `catdog` CLI end to end, as users and other tools call it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import make_dataset

CATDOG = [sys.executable, "-m", "catdog_lib.cli"]


def run_cli(*args: str, cache: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CATDOG_CACHE_DIR": str(cache), **(env or {})}
    return subprocess.run([*CATDOG, *map(str, args)], capture_output=True, text=True, env=environment, timeout=300)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """One tiny run shared by the CLI tests: Kaggle-style layout, lite0 without pretrained weights."""
    base = tmp_path_factory.mktemp("cli")
    data = base / "data"
    make_dataset(data / "training_set" / "training_set", {"cats": 10, "dogs": 10})
    make_dataset(data / "test_set" / "test_set", {"Cat": 4, "Dog": 4})
    result = run_cli("train", "--data", data, "--out", base / "run", "--arch", "efficientnet_lite0",
                     "--weights", "none", "--epochs", "2", "--quiet", cache=base / "cache")
    assert result.returncode == 0, result.stderr
    assert "best valid accuracy" in result.stdout
    return base


def test_train_writes_the_run_folder(trained_run):
    names = {p.name for p in (trained_run / "run").iterdir()}
    assert {"best.pt", "last.pt", "metrics.json", "split.json", "tensorboard"} <= names


def test_evaluate_json_matches_classes_by_name(trained_run):
    result = run_cli("evaluate", "--checkpoint", trained_run / "run" / "best.pt", "--data", trained_run / "data",
                     "--json", cache=trained_run / "cache")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["n"] == 8 and report["skipped"] == []
    assert {name: row["n"] for name, row in report["per_class"].items()} == {"cats": 4, "dogs": 4}
    assert 0.0 <= report["accuracy"] <= 1.0


def test_predict_prints_class_and_probability(trained_run):
    image = next((trained_run / "data" / "test_set" / "test_set" / "Cat").iterdir())
    bad = trained_run / "notes.jpg"
    bad.write_text("<html>not an image</html>")
    result = run_cli("predict", "--checkpoint", trained_run / "run" / "best.pt", image, bad,
                     cache=trained_run / "cache")
    good_line, bad_line = result.stdout.strip().splitlines()
    path, label, probability = good_line.split("\t")
    assert path == str(image) and label in {"cats", "dogs"} and 0.5 <= float(probability) <= 1.0
    assert "not an image" in bad_line and result.returncode == 1


@pytest.mark.parametrize("args, message", [
    (["train", "--data", "/nonexistent/catdog", "--out", "{tmp}/run"], "no such folder"),
    (["train", "--epochs", "many"], "invalid int value"),
    (["evaluate", "--checkpoint", "/nonexistent.pt"], "no such file"),
    (["train", "--arch", "alexnet"], "invalid choice"),
    (["train", "--batch-size", "0"], "must be positive"),
    (["train", "--lr", "-1"], "must be positive"),
    (["train", "--epochs", "0"], "must be positive"),
    (["train", "--resume", "{tmp}", "--epochs", "5"], "drop --epochs"),
    (["predict", "--checkpoint", "{tmp}", "{tmp}"], "is a folder"),
    (["frobnicate"], "invalid choice"),
])
def test_wrong_input_is_one_clear_line_and_status_2(tmp_path, args, message):
    result = run_cli(*[a.format(tmp=tmp_path) for a in args], cache=tmp_path / "cache")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_root_with_one_class_is_refused(tmp_path):
    make_dataset(tmp_path / "data", {"cats": 4})
    result = run_cli("train", "--data", tmp_path / "data", "--out", tmp_path / "run", cache=tmp_path / "cache")
    assert result.returncode == 2 and "need at least 2" in result.stderr and "Traceback" not in result.stderr


def test_data_dir_environment_variable_is_the_default_root(tmp_path):
    make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3})
    result = run_cli("data", "check", cache=tmp_path / "cache", env={"CATDOG_DATA_DIR": str(tmp_path / "data")})
    assert result.returncode == 0, result.stderr
    assert "train: 6 images (cats 3, dogs 3)" in result.stdout and "no problems found" in result.stdout


def test_evaluate_refuses_a_dataset_without_a_test_split(trained_run, tmp_path):
    make_dataset(tmp_path / "only" / "training_set", {"cats": 3, "dogs": 3})
    result = run_cli("evaluate", "--checkpoint", trained_run / "run" / "best.pt", "--data", tmp_path / "only",
                     cache=trained_run / "cache")
    assert result.returncode == 2 and "no test_set" in result.stderr and "Traceback" not in result.stderr


SUBCOMMANDS = [["train"], ["evaluate"], ["predict"], ["export"], ["demo"], ["data"], ["data", "download"], ["data", "check"],
               ["course"]]


def test_version_and_help_need_no_torch():
    """`python -m catdog_lib --version` and every --help answer without importing torch (fast, and
    they work before the heavy packages are installed)."""
    code = (
        "import sys\n"
        "from catdog_lib.cli import main\n"
        "for args in [['--version'], ['--help']] + [a + ['--help'] for a in %r]:\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, (args, stop.code)\n"
        "print('torch imported:', 'torch' in sys.modules)\n" % SUBCOMMANDS
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith("catdog 0.")
    assert result.stdout.strip().endswith("torch imported: False")


def test_python_dash_m_catdog_lib_version():
    import catdog_lib

    result = subprocess.run([sys.executable, "-m", "catdog_lib", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == f"catdog {catdog_lib.__version__}"


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_help_has_a_description_and_an_example(command):
    result = subprocess.run([*CATDOG, *command, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    blocks = result.stdout.split("\n\n")
    description = blocks[1].strip()
    assert description and "\n" not in description and description.endswith(".")
    assert blocks[-1].startswith("example:\n  catdog " + " ".join(command))


def test_help_defaults_are_the_librarys():
    from catdog_lib import backbones, cli, config, training

    defaults = training.TrainConfig(data="", out="")
    assert cli.LANGUAGE_NAMES == tuple(config.LANGUAGES)
    assert cli.ARCH_NAMES == tuple(sorted(backbones.ARCHS)) and cli.TRAIN_DEFAULTS["arch"] == backbones.DEFAULT_ARCH
    assert cli.RECIPE_NAMES == training.RECIPES and cli.TRAIN_DEFAULTS["lr"] == training.DEFAULT_LR
    for name in ("recipe", "epochs", "finetune_epochs", "batch_size", "seed"):
        assert cli.TRAIN_DEFAULTS[name] == getattr(defaults, name), name
