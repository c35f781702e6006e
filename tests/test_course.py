"""The notebooks' helpers and the course runner: data fallback, checkpoint reuse, failure and skipped-training detection."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from catdog_lib import course, runner
from catdog_lib.data.synthetic import make_synthetic_dataset


@pytest.fixture
def tiny_data(tmp_path, monkeypatch) -> Path:
    """A small dataset as CATDOG_DATA_DIR (real, as far as the course can tell) and a private cache."""
    root = make_synthetic_dataset(tmp_path / "data", per_class=8, test_per_class=3, size=32)
    (root / "SYNTHETIC.txt").unlink()
    monkeypatch.setenv("CATDOG_DATA_DIR", str(root))
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(tmp_path / "cache"))
    return root


def write_notebook(folder: Path, name: str, *sources: str) -> Path:
    nb = new_notebook(cells=[new_markdown_cell(f"# {name}"), *(new_code_cell(s) for s in sources)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / name
    nbformat.write(nb, path)
    return path


def test_real_data_is_used_when_present(tiny_data, capsys):
    assert course.course_data_root() == (tiny_data, False)
    assert "SYNTHETIC" not in capsys.readouterr().out


def test_synthetic_fallback_is_loud(tmp_path, monkeypatch, capsys):
    """No data folder given and none in the course folder: synthetic data, said loudly."""
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path))
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)
    monkeypatch.setattr(course, "SYNTHETIC_ROOT", tmp_path / "synthetic-cats-vs-dogs")
    root, synthetic = course.course_data_root()
    assert synthetic and root == tmp_path / "synthetic-cats-vs-dogs"
    assert (root / "SYNTHETIC.txt").is_file() and course.has_dataset(root)
    assert "SYNTHETIC data (no real photos found" in capsys.readouterr().out


def test_folder_tree_lists_a_few_files(tiny_data):
    tree = course.folder_tree(tiny_data, files_per_folder=2).splitlines()
    assert tree[:3] == [f"{tiny_data}/", "    test_set/", "        test_set/"]
    assert "            cats/" in tree and "                cat.1.jpg" in tree
    assert "                ... (6 more files)" in tree


def test_ensure_checkpoint_trains_once_then_reuses(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CATDOG_FAST", "1")
    run = tmp_path / "run"
    best = course.ensure_course_checkpoint(run=run)
    assert best == run / "best.pt" and best.is_file()
    assert "training one now" in capsys.readouterr().out
    stamp = best.stat().st_mtime_ns
    assert course.ensure_course_checkpoint(run=run) == best and best.stat().st_mtime_ns == stamp
    assert "using the checkpoint" in capsys.readouterr().out

    monkeypatch.delenv("CATDOG_FAST")  # a full-course notebook must not reuse the fast-mode model
    course.ensure_course_checkpoint(run=run)
    assert "trained in the other mode" in capsys.readouterr().out and best.stat().st_mtime_ns != stamp


def test_failing_notebook_stops_the_run_and_names_the_cell(tiny_data, tmp_path, capsys):
    fast_before = os.environ.get("CATDOG_FAST")
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    paths = [
        write_notebook(notebooks, "a.ipynb", "import os\nassert os.environ['CATDOG_FAST'] == '1'",
                       "from pathlib import Path\nprint(Path.cwd().name)"),
        write_notebook(notebooks, "b.ipynb", "x = 1", "# a comment\nraise ValueError('boom')"),
        write_notebook(notebooks, "c.ipynb", "print('never')"),
    ]
    out = tmp_path / "out"
    assert runner.run_course(fast=True, out=out, notebooks=paths, course_run=tmp_path / "run") == 1
    summary = capsys.readouterr().out
    assert (out / "summary.txt").read_text().strip() in summary
    assert "b.ipynb" in summary and "FAILED: cell 3 (\"raise ValueError('boom')\"): ValueError: boom" in summary
    assert "c.ipynb" in summary and "not run" in summary
    assert f"data: {tiny_data} (real photos)" in summary
    for name in ("a", "b"):
        assert (out / f"{name}.ipynb").is_file() and (out / f"{name}.html").is_file()
    assert not (out / "c.ipynb").exists()
    executed = nbformat.read(out / "a.ipynb", as_version=4)
    assert executed.cells[2].outputs[0]["text"].strip() == "nbs"  # run in the notebook's own folder
    assert os.environ.get("CATDOG_FAST") == fast_before  # the runner restores the caller's environment


def test_training_notebook_that_does_not_train_fails_the_run(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    skipping = write_notebook(tmp_path, runner.TRAINING_NOTEBOOK, "print('training skipped')")
    assert runner.run_course(fast=True, out=tmp_path / "out1", notebooks=[skipping], course_run=run) == 1
    assert "it did not train" in capsys.readouterr().out

    (tmp_path / "real").mkdir()
    training = write_notebook(
        tmp_path / "real", runner.TRAINING_NOTEBOOK,
        f"import json, pathlib\nrun = pathlib.Path({str(run)!r})\nrun.mkdir(exist_ok=True)\n"
        "metrics = {'arch': 'tiny', 'epochs_run': 1, 'best_epoch': 1, 'best_valid_accuracy': 1.0,\n"
        "           'counts': {'train': {'cats': 2}, 'valid': {'cats': 1}}}\n"
        "(run / 'metrics.json').write_text(json.dumps(metrics))")
    assert runner.run_course(fast=True, out=tmp_path / "out2", notebooks=[training], course_run=run) == 0
    summary = capsys.readouterr().out
    assert "trained tiny for 1 epochs on 2 images" in summary and "all notebooks ran" in summary


def test_zero_epochs_is_not_training(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps({"epochs_run": 0}))
    assert "0 epochs" in runner.check_training(tmp_path, since=0)
    assert "not written during this run" in runner.check_training(tmp_path / "none", since=0)


def test_whole_course_fast_on_synthetic_data(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"  # a course folder without data, and no CATDOG_DATA_DIR
    monkeypatch.setenv("CATDOG_HOME", str(home))
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)
    monkeypatch.setattr(course, "SYNTHETIC_ROOT", home / "data" / "synthetic-cats-vs-dogs")
    assert runner.run_course(fast=True, out=tmp_path / "out", course_run=home / "runs" / "course") == 0
    summary = capsys.readouterr().out
    assert "SYNTHETIC" in summary and "test accuracy: " in summary and "all notebooks ran" in summary
    assert len(list((tmp_path / "out").glob("*.html"))) == len(runner.NOTEBOOKS)
