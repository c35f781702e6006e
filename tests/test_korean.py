"""The Korean edition (notebooks/ko/) stays in step with the English notebooks: every markdown cell translated
from the English text it was made for, the same code, regenerated, and reachable from the CLI and Colab."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import tomllib
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from catdog_lib import config
from catdog_lib.classroom.notebook import REPOSITORY, badge
from catdog_lib.classroom.student import ANSWER_PLACEHOLDERS
from conftest import REPO, run_catdog

spec = importlib.util.spec_from_file_location("korean_tool", REPO / "tools" / "korean.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
HANGUL = re.compile("[\uac00-\ud7a3]")


@pytest.mark.parametrize("name", config.NOTEBOOK_NAMES)
def test_every_markdown_cell_has_a_current_korean_translation(name):
    _, todo = tool.translate(name)
    assert not todo, (f"{name}: {len(todo)} markdown cells to translate ({', '.join(todo)}): "
                      f"`python tools/korean.py --todo {name}` prints them; then `make korean`")
    for cell_id, (_, text) in tool.read_texts(tool.text_path(name)).items():
        assert HANGUL.search(text), f"{name}: cell {cell_id}'s translation has no Korean in it"


@pytest.mark.parametrize("name", config.NOTEBOOK_NAMES)
def test_the_korean_notebook_is_regenerated_and_runs_the_english_code(name):
    english = nbformat.read(config.notebook_dir() / name, as_version=4)
    korean = nbformat.read(config.notebook_dir("ko") / name, as_version=4)
    assert nbformat.writes(korean) == nbformat.writes(tool.translate(name)[0]), f"run `make korean` ({name} is stale)"
    assert [(c.id, c.cell_type) for c in korean.cells] == [(c.id, c.cell_type) for c in english.cells]
    for ko, en in zip(korean.cells, english.cells):
        if en.cell_type == "code":  # the same code, tags and the outputs strict nbval compares
            assert (ko.source, ko.metadata, ko.outputs) == (en.source, en.metadata, en.outputs), en.id
        else:
            assert ko.metadata == en.metadata and HANGUL.search(ko.source), en.id
    first = korean.cells[0].source.splitlines()[0]
    assert first == badge(name, REPOSITORY, "notebooks/ko") and f"notebooks/ko/{name}" in first


def test_a_changed_english_cell_fails_until_its_translation_is_updated(tmp_path, monkeypatch):
    english, korean = tmp_path / "notebooks", tmp_path / "notebooks" / "ko"
    (korean / "translations").mkdir(parents=True)
    monkeypatch.setattr(tool, "ENGLISH", english)
    monkeypatch.setattr(tool, "KOREAN", korean)
    monkeypatch.setattr(tool, "TEXTS", korean / "translations")
    monkeypatch.setattr(tool, "NOTEBOOK_NAMES", ("01_x.ipynb",))
    nb = new_notebook(cells=[new_markdown_cell("## Learning rate", id="a"), new_code_cell("LR = 1e-3", id="b"),
                             new_markdown_cell("Early stopping.", id="c")])
    nbformat.write(nb, english / "01_x.ipynb")
    texts = korean / "translations" / "01_x.md"
    texts.write_text(tool.block("a", "## Learning rate", "## 학습률") + "\n" + tool.block("c", "Early stopping.", "조기 종료."),
                     encoding="utf-8")
    assert tool.translate("01_x.ipynb")[1] == []

    nb.cells[2].source = "Early stopping, on the valid loss."  # the English changes
    nbformat.write(nb, english / "01_x.ipynb")
    ko, todo = tool.translate("01_x.ipynb")
    assert todo == ["c (stale: the English changed)"]
    assert ko.cells[2].source == "Early stopping, on the valid loss."  # never the old Korean for a changed cell
    assert "Early stopping, on the valid loss." in tool.todo_blocks("01_x.ipynb")
    assert "Learning rate" not in tool.todo_blocks("01_x.ipynb")

    texts.write_text(texts.read_text(encoding="utf-8").split("<!-- cell: c")[0]
                     + tool.block("c", nb.cells[2].source, "검증 손실에 따른 조기 종료.")
                     + tool.block("gone", "old", "옛 셀"), encoding="utf-8")
    assert tool.translate("01_x.ipynb")[1] == ["gone (translates no markdown cell of the English notebook: delete it)"]
    texts.write_text(texts.read_text(encoding="utf-8").split("<!-- cell: gone")[0], encoding="utf-8")
    assert tool.main([]) == 0
    ko = nbformat.read(korean / "01_x.ipynb", as_version=4)
    assert [c.source for c in ko.cells] == ["## 학습률", "LR = 1e-3", "검증 손실에 따른 조기 종료."]

    nb.cells.append(new_markdown_cell("A new cell.", id="d"))
    nbformat.write(nb, english / "01_x.ipynb")
    assert tool.translate("01_x.ipynb")[1] == ["d (missing)"]


def test_catdog_course_writes_the_korean_student_copy(tmp_path):
    out = tmp_path / "student-ko"
    result = run_catdog("course", "--student", out, "--lang", "ko", "--student-folder", "student/ko")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(config.NOTEBOOK_NAMES)
    nb = nbformat.read(out / "04_transfer_learning.ipynb", as_version=4)
    assert "student/ko/04_transfer_learning.ipynb" in nb.cells[0].source.splitlines()[0]
    assert any(ANSWER_PLACEHOLDERS["ko"] in c.source for c in nb.cells if c.cell_type == "markdown")
    assert all(not c.outputs for c in nb.cells if c.cell_type == "code")
    assert HANGUL.search(nb.cells[0].source)


def test_the_korean_edition_shares_the_course_folder_and_ships_with_the_package(tmp_path):
    here = subprocess.run([sys.executable, "-c", "from catdog_lib import config; print(config.home())"],
                          cwd=REPO / "notebooks" / "ko", capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != config.HOME_ENV})
    assert Path(here.stdout.strip()) == REPO, here.stderr
    assert config.notebook_dir("ko") == REPO / "notebooks" / "ko"
    settings = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "ko/*.ipynb" in settings["tool"]["setuptools"]["package-data"]["catdog_lib.notebooks"]
    pytest_settings = settings["tool"]["pytest"]["ini_options"]  # `make test` (pytest --nbval) runs both editions
    assert "notebooks" in pytest_settings["testpaths"]
    assert not any(fnmatch.fnmatch("ko", pattern) for pattern in pytest_settings["norecursedirs"])


def test_the_korean_readme_gives_the_same_two_commands_and_opens_the_korean_notebooks():
    text = (REPO / "README.ko.md").read_text(encoding="utf-8")
    assert "make run" in text and "make test" in text and "make korean" in text and "--lang ko" in text
    for name in config.NOTEBOOK_NAMES:
        assert f"notebooks/ko/{name}" in text and f"(docs/executed/ko/{name})" in text, name
    assert "README.ko.md" in (REPO / "README.md").read_text(encoding="utf-8")
