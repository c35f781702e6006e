"""`catdog data check`: every bad file is listed once, readable oddities are not, and the exit status says so."""

from __future__ import annotations

import warnings
from pathlib import Path

from catdog_lib.cli import main
from catdog_lib.data.integrity import check_dataset
from conftest import (add_bad_files, add_odd_good_files, make_dataset, make_image, public_env, run_catdog)


def test_data_check_cli_lists_every_bad_file_once(public_tmp: Path) -> None:
    data = make_dataset(public_tmp / "data", 3)
    bad = {**add_bad_files(data / "cats"), **add_bad_files(data / "dogs", tag="-2")}
    good = add_odd_good_files(data / "cats")
    make_image(data / "dogs" / "big.jpg", size=(6000, 4000), noise=False)
    locked = make_image(data / "dogs" / "locked.jpg")
    locked.chmod(0o000)
    bad[locked] = "permission denied"

    result = run_catdog("data", "check", data, unprivileged=True, env=public_env(public_tmp))

    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert f"{len(bad)} problem(s):" in lines
    for path, reason in bad.items():
        listed = [line for line in lines if line.strip().startswith(f"{path}: ")]
        assert len(listed) == 1 and reason in listed[0], (path, listed)
    for path in good:
        assert str(path) not in result.stdout
    good_counts = {"cats": 3 + len(good), "dogs": 3 + 1}
    total = sum(good_counts.values())
    assert f"  train: {total} images (cats {good_counts['cats']}, dogs {good_counts['dogs']})" in lines


def test_data_check_clean_dataset_exits_zero(tiny_dataset: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)   # main() replaces it
    assert main(["data", "check", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    assert "no problems found" in out and "train: 10 images (cats 5, dogs 5)" in out


def test_check_dataset_both_splits_and_duplicates(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root / "training_set" / "training_set", 2)
    make_dataset(root / "test_set" / "test_set", 2)
    copy = root / "test_set" / "test_set" / "cats" / "copy.jpg"
    copy.write_bytes((root / "training_set" / "training_set" / "cats" / "cats.0.jpg").read_bytes())
    bad = add_bad_files(root / "test_set" / "test_set" / "dogs")

    report = check_dataset(root)

    assert report.counts == {"train": {"cats": 2, "dogs": 2}, "test": {"cats": 3, "dogs": 2}}
    assert len(report.problems) == len(bad) + 1
    assert any(problem.startswith(f"{copy}: duplicate of ") for problem in report.problems)
    for path, reason in bad.items():
        listed = [problem for problem in report.problems if problem.startswith(f"{path}: ")]
        assert len(listed) == 1 and reason in listed[0], (path, listed)
