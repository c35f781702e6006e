"""One place for the repository: every URL of it in the checkout agrees with ``notebook.REPOSITORY``, and
`make repository URL=...` (tools/repository.py) leaves no copy of the old one."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import tomllib

from catdog_lib import notebook
from conftest import REPO

# Cited, not the course's; and the placeholder of the usage lines.
OTHERS = {"https://github.com/computationalmodelling/nbval", "https://github.com/OWNER/NAME"}
COLAB = re.compile(r"colab\.research\.google\.com/github/([^/\s)]+/[^/\s)]+)/blob/([^/\s)]+)/")
PIP = re.compile(r"git\+(https://[^@\s\"]+)@([A-Za-z0-9_.-]+)")

spec = importlib.util.spec_from_file_location("repository_tool", REPO / "tools" / "repository.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)


def _mentions(root: Path) -> dict[Path, str]:
    files = [*tool.text_files(root), *sorted((root / "notebooks").glob("*.ipynb")),
             *sorted((root / "notebooks" / "ko").glob("*.ipynb"))]
    return {path: path.read_text(encoding="utf-8") for path in files}


def test_every_copy_of_the_repository_agrees_with_the_one_setting() -> None:
    repository, owner_name = notebook.REPOSITORY, notebook.REPOSITORY.removeprefix("https://github.com/")
    for path, text in _mentions(REPO).items():
        assert set(tool.URL.findall(text)) - OTHERS <= {repository}, path
        assert {match for match in COLAB.findall(text)} <= {(owner_name, notebook.RELEASE)}, path
        assert set(PIP.findall(text)) <= {(repository, notebook.RELEASE)}, path
    assert tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["urls"]["Homepage"] == repository
    assert f"git+{repository}@{notebook.RELEASE}" in (REPO / "README.md").read_text()


def test_each_notebook_has_the_badge_and_install_cell_of_the_setting() -> None:
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        assert nb.cells[0].source.splitlines()[0] == notebook.badge(path.name), path.name
        install = next(cell for cell in nb.cells if cell.cell_type == "code")
        assert install.source == notebook.install_cell(), path.name


def test_make_repository_leaves_no_old_url_in_a_copy_of_the_checkout(tmp_path: Path) -> None:
    copy = tmp_path / "checkout"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(*tool.SKIPPED, "*.egg-info", ".pytest_cache"))
    new = "https://github.com/" + "a-teacher/cats-class"   # (not one literal: the other test reads this file)

    result = subprocess.run([sys.executable, str(copy / "tools" / "repository.py"), new + "/", "--root", str(copy)],
                            capture_output=True, text=True, timeout=120)

    assert result.returncode == 0, result.stderr
    old = notebook.REPOSITORY.removeprefix("https://github.com/")
    left = [path for path in copy.rglob("*") if path.is_file() and old in path.read_text(errors="replace")]
    assert not left
    texts = _mentions(copy)
    assert f'Homepage = "{new}"' in texts[copy / "pyproject.toml"]
    assert f'REPOSITORY = "{new}"' in texts[copy / "catdog_lib" / "classroom" / "notebook.py"]
    for name in ("01_download_data.ipynb", "06_save_and_load.ipynb"):
        text = texts[copy / "notebooks" / name]
        assert f"github/a-teacher/cats-class/blob/{notebook.RELEASE}/notebooks/{name}" in text
        assert f"git+{new}@{notebook.RELEASE}" in text
        for korean in (texts[copy / "notebooks" / "ko" / name],  # the Korean editions open the Korean notebook
                       (copy / "docs" / "executed" / "ko" / name).read_text(encoding="utf-8")):
            assert f"github/a-teacher/cats-class/blob/{notebook.RELEASE}/notebooks/ko/{name}" in korean
            assert f"git+{new}@{notebook.RELEASE}" in korean


def test_make_repository_refuses_what_is_not_a_github_url(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "tools" / "repository.py"), "github.com/x", "--root",
                             str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "URL=https://github.com/OWNER/NAME" in result.stderr
