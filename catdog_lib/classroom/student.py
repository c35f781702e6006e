"""The student copy of the course: each worked solution replaced by a placeholder, outputs stripped.

Solutions live in cells tagged ``solution``. A code solution starts with comment lines saying
which exercise it answers (``# Exercise 2: ...``); the student copy keeps those lines, adds
``# YOUR CODE HERE`` and drops the code. The placeholder defines nothing, so no later cell may
depend on a solution: the student copy must still run from top to bottom (the tests check it).
A markdown solution (answers to the questions) keeps its first line, followed by a space to write in.
The Colab badges and install cells point at where the copy is published: by default the ``student/``
folder of the course's repository.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from pathlib import Path

import nbformat

from ..errors import CatdogError
from ..files import atomic_write_text
from .notebook import REPOSITORY, set_links

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"  # what a placeholder cell is tagged instead
PLACEHOLDER = "# YOUR CODE HERE"
ANSWER_PLACEHOLDERS = {"en": "*Your answers here.*", "ko": "*여기에 답을 적으세요.*"}  # by config.LANGUAGES
STUDENT_FOLDER = "student"  # where the student copy is published in the repository (`make student` writes it)


def is_solution(cell: nbformat.NotebookNode) -> bool:
    return SOLUTION_TAG in cell.metadata.get("tags", [])


def placeholder_source(cell: nbformat.NotebookNode, lang: str = "en") -> str:
    """Code: the leading comment lines (the exercise it answers) and ``# YOUR CODE HERE``.
    Markdown: the first line (its heading) and a space for the answers."""
    if cell.cell_type == "markdown":
        return "\n\n".join([cell.source.splitlines()[0] if cell.source else "", ANSWER_PLACEHOLDERS[lang]])
    header = itertools.takewhile(lambda line: line.startswith("#"), cell.source.splitlines())
    return "\n".join([*header, PLACEHOLDER])


def student_notebook(nb: nbformat.NotebookNode, name: str = "", repository: str = REPOSITORY,
                     folder: str = STUDENT_FOLDER, lang: str = "en") -> nbformat.NotebookNode:
    """A copy of ``nb`` with placeholders (in ``lang``) for its solution cells and no outputs (cell ids kept);
    with a ``name``, its badge and install cell open ``folder/name`` in ``repository``."""
    nb = copy.deepcopy(nb)
    if name:
        set_links(nb, name, repository, folder)
    nb.metadata.pop("widgets", None)  # saved widget state is output too
    for cell in nb.cells:
        if is_solution(cell):
            cell.source = placeholder_source(cell, lang)
            cell.metadata["tags"] = [EXERCISE_TAG if tag == SOLUTION_TAG else tag for tag in cell.metadata["tags"]]
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return nb


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def write_student_copy(notebooks: Sequence[Path], out: Path, repository: str = REPOSITORY,
                       folder: str = STUDENT_FOLDER, lang: str = "en") -> list[Path]:
    """Write the student copy of ``notebooks`` into ``out``; returns its files (identical ones are not rewritten).
    Its badges and install cells open the copy published as ``folder`` in ``repository``.

    A notebook already in ``out`` is only replaced by an identical one: if it differs (a student's
    work, or a copy made from older notebooks) nothing is written and the error names it.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CatdogError(f"{out} is a file; choose a folder for the student copy (catdog course --student OUT).")
    texts = {}
    for path in notebooks:
        try:
            nb = nbformat.read(path, as_version=4)
        except (OSError, ValueError) as error:
            raise CatdogError(f"{path}: cannot read the notebook ({error}).") from None
        name = Path(path).name
        texts[out / name] = nbformat.writes(student_notebook(nb, name, repository, folder, lang)) + "\n"
    for target, text in texts.items():
        if target.exists() and _read(target) != text:
            raise CatdogError(f"{target} already exists and differs from a fresh student copy (a student's "
                              "work?); move it away, or write the copy elsewhere with --student OUT.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CatdogError(f"cannot create {out}: {error.strerror or error}; choose a writable folder.") from None
    for target, text in texts.items():
        if _read(target) != text:  # an identical copy is left alone (the folder may be read-only)
            atomic_write_text(target, text)
    return list(texts)
