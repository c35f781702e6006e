"""``notebook.setup(DATA_DIR, drive=DRIVE)`` on an emulated Colab (a fake ``google.colab`` module): where the data
and runs go with and without Google Drive. Only the real Drive mount cannot run here."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from catdog_lib import config, download, notebook
from conftest import make_dataset


@pytest.fixture
def colab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A fake google.colab (no secrets; ``drive.mount`` records its folder); returns the mounts made."""
    mounts: list[str] = []

    def no_secret(name: str) -> str:
        raise KeyError(name)   # as userdata.get for a secret that is not set

    drive = types.SimpleNamespace(mount=mounts.append)
    module = types.ModuleType("google.colab")
    module.drive, module.userdata = drive, types.SimpleNamespace(get=no_secret)
    google = sys.modules.get("google") or types.ModuleType("google")
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setattr(google, "colab", module, raising=False)
    monkeypatch.setitem(sys.modules, "google.colab", module)
    monkeypatch.setattr(notebook, "DRIVE_HOME", str(tmp_path / "drive" / "MyDrive" / "catdog"))
    monkeypatch.setattr(notebook, "_said", [])
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "course"))
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)
    for name in notebook.KAGGLE_SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(download, "get_course_data", lambda *a, **k: pytest.fail("the photos are there already"))
    (tmp_path / "course").mkdir()
    return mounts


def _photos(root: Path) -> Path:
    make_dataset(root / "training_set", {"cats": 2, "dogs": 2})
    make_dataset(root / "test_set", {"cats": 1, "dogs": 1})
    return root


def test_drive_keeps_data_and_runs_on_drive(colab: list[str], tmp_path: Path, capsys) -> None:
    kept = Path(notebook.DRIVE_HOME)
    _photos(kept / "data" / "cat-and-dog")   # what an earlier notebook left on Drive

    notebook.setup(None, drive=True)

    assert colab == [notebook.DRIVE_MOUNT]
    assert config.data_root().resolve() == (kept / "data" / "cat-and-dog").resolve()
    assert (config.runs_dir() / "course").resolve() == (kept / "runs" / "course").resolve()  # 05/06 find 04's run
    assert notebook.NO_DRIVE not in capsys.readouterr().out


def test_without_drive_the_retrain_is_announced_once(colab: list[str], tmp_path: Path, capsys) -> None:
    _photos(tmp_path / "course" / "data" / "cat-and-dog")

    notebook.setup(None, drive=False)
    notebook.setup(None, drive=False)

    assert colab == []
    assert capsys.readouterr().out.count(notebook.NO_DRIVE) == 1
    assert not (tmp_path / "course" / "data").is_symlink()
    assert "retrain" in notebook.NO_DRIVE and "DRIVE = True" in notebook.NO_DRIVE


def test_off_colab_drive_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path))
    notebook.setup(None, drive=True)
    assert capsys.readouterr().out == "" and list(tmp_path.iterdir()) == []
