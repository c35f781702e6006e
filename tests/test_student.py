"""The student copy: solutions replaced by placeholders, no outputs, and it still runs top to bottom."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from catdog_lib.classroom.notebook import REPOSITORY, badge, install_cell
from catdog_lib.classroom.runner import NOTEBOOK_DIR, NOTEBOOKS
from catdog_lib.classroom.student import ANSWER_PLACEHOLDERS, PLACEHOLDER, is_solution, student_notebook
from conftest import assert_clean_error, run_catdog


def tagged(cell, *tags: str):
    cell.metadata["tags"] = list(tags)
    return cell


def test_solution_cells_become_placeholders_and_outputs_go():
    nb = new_notebook(cells=[
        new_markdown_cell("## Exercises\n\n1. **Try it.** Count the photos."),
        tagged(new_code_cell("# Exercise 1: count the photos.\n# (two comment lines)\nn = len(photos)\nprint(n)",
                             outputs=[new_output("stream", text="2000\n")], execution_count=7), "solution"),
        tagged(new_markdown_cell("**Answers.**\n\n1. 2,000 photos."), "solution"),
        tagged(new_code_cell("SEED = 1", outputs=[new_output("stream", text="x\n")], execution_count=8), "parameters"),
    ])
    nb.metadata["widgets"] = {"state": {}}
    student = student_notebook(nb)

    code, answers, parameters = student.cells[1], student.cells[2], student.cells[3]
    assert code.source == "# Exercise 1: count the photos.\n# (two comment lines)\n" + PLACEHOLDER
    assert code.metadata["tags"] == ["exercise"] and code.outputs == [] and code.execution_count is None
    assert answers.source.startswith("**Answers.**") and "2,000" not in answers.source
    assert parameters.source == "SEED = 1" and parameters.outputs == [] and parameters.metadata["tags"] == ["parameters"]
    assert [c.id for c in student.cells] == [c.id for c in nb.cells]
    assert "widgets" not in student.metadata
    assert nb.cells[1].source.endswith("print(n)")  # the original is left alone
    nbformat.validate(student)


def test_catdog_course_student_writes_the_copy_and_never_overwrites_a_students_work(tmp_path):
    out = tmp_path / "student"
    result = run_catdog("course", "--student", out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(NOTEBOOKS)
    for name in NOTEBOOKS:
        original = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
        copy = nbformat.read(out / name, as_version=4)
        assert [c.id for c in copy.cells] == [c.id for c in original.cells]
        assert not any(is_solution(cell) for cell in copy.cells)
        placeholders = [cell for cell in copy.cells if "exercise" in cell.metadata.get("tags", [])]
        assert len(placeholders) == sum(is_solution(cell) for cell in original.cells) >= 2
        assert copy.cells[0].source.splitlines()[0] == badge(name, REPOSITORY, "student")   # opens the copy
        assert copy.cells[0].source.splitlines()[1:] == original.cells[0].source.splitlines()[1:]
        for before, after in zip(original.cells[1:], copy.cells[1:]):
            if after.cell_type == "code":
                assert after.outputs == [] and after.execution_count is None
            if not is_solution(before):
                assert after.source == before.source
            elif after.cell_type == "code":
                assert after.source.startswith("# Exercise ") and after.source.endswith(PLACEHOLDER)
                assert compile(after.source, name, "exec").co_names == ()  # defines and runs nothing
            else:
                assert after.source == before.source.splitlines()[0] + "\n\n" + ANSWER_PLACEHOLDERS["en"]

    assert run_catdog("course", "--student", out).returncode == 0  # the same copy again: nothing to do
    work = out / NOTEBOOKS[0]
    edited = work.read_text().replace(PLACEHOLDER, "print('my own answer')", 1)
    work.write_text(edited)
    assert_clean_error(run_catdog("course", "--student", out), str(work), "already exists")
    assert work.read_text() == edited
    assert_clean_error(run_catdog("course", "--student", out, "--fast"), "--student")


def test_the_student_copy_opens_where_it_is_published(tmp_path):
    elsewhere = "https://github.com/" + "a-teacher/cats-class"
    out = tmp_path / "copy"
    result = run_catdog("course", "--student", out, "--student-repository", elsewhere, "--student-folder", "week1")
    assert result.returncode == 0, result.stderr
    for name in NOTEBOOKS:
        copy = nbformat.read(out / name, as_version=4)
        assert copy.cells[0].source.splitlines()[0] == badge(name, elsewhere, "week1")
        assert "github/a-teacher/cats-class/blob/" in copy.cells[0].source
        assert next(cell for cell in copy.cells if cell.cell_type == "code").source == install_cell(elsewhere)
        assert REPOSITORY not in nbformat.writes(copy)


def test_the_student_copy_runs_top_to_bottom_under_nbval_in_fast_mode(tmp_path):
    """Like fastai's clean-folder check: without the solutions every notebook still runs."""
    out = tmp_path / "student"
    assert run_catdog("course", "--student", out).returncode == 0
    env = {**os.environ, "CATDOG_FAST": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                             "--nbval-current-env", *sorted(map(str, out.glob("*.ipynb")))],
                            capture_output=True, text=True, env=env, cwd=out, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout
