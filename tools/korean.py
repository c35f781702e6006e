"""The Korean edition (한국어판): `make korean`.

Each notebook in `notebooks/ko/` is generated from its English original and a translation file,
`notebooks/ko/translations/NAME.md`, holding every markdown cell's Korean text under a marker line that names
the cell's id and a digest of the English source it translates:

    <!-- cell: 01-objectives | en: 3f2a9c0d1b7e -->
    ## 학습 목표
    ...

Code cells are copied unchanged, with their tags and the few outputs strict nbval compares (the code a Korean
student runs is the English notebook's code, and `make test` runs both editions), and the Colab badge (a first
line the translation leaves out) opens the Korean notebook. A markdown cell whose English changed since it was translated
(the digest differs) or that has no translation is written in English and listed as to-do;
tests/test_korean.py fails until every cell is translated and the notebooks are regenerated.

    .venv/bin/python tools/korean.py             # regenerate notebooks/ko/*.ipynb, list what needs translating
    .venv/bin/python tools/korean.py --todo NAME  # the blocks to translate, with the English text to replace
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
import sys
from pathlib import Path

import nbformat

from catdog_lib.classroom.notebook import BADGE, set_links
from catdog_lib.config import NOTEBOOK_NAMES

REPO = Path(__file__).resolve().parent.parent
ENGLISH = REPO / "notebooks"
KOREAN = ENGLISH / "ko"
TEXTS = KOREAN / "translations"
FOLDER = "notebooks/ko"  # the Korean notebooks' folder in the repository (their badges open them there)
MARKER = re.compile(r"^<!-- cell: (?P<id>\S+) \| en: (?P<digest>[0-9a-f]{12}) -->$", re.MULTILINE)


def digest(source: str) -> str:
    """The English cell's fingerprint: a translation is current while it matches."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


def text_path(name: str) -> Path:
    return TEXTS / name.replace(".ipynb", ".md")


def read_texts(path: Path) -> dict[str, tuple[str, str]]:
    """A translation file as {cell id: (digest of the English it translates, Korean text)}."""
    if not path.is_file():
        return {}
    content = path.read_text(encoding="utf-8")
    marks = list(MARKER.finditer(content))
    return {mark["id"]: (mark["digest"], content[mark.end():marks[i + 1].start() if i + 1 < len(marks) else None].strip())
            for i, mark in enumerate(marks)}


def block(cell_id: str, source: str, text: str) -> str:
    return f"<!-- cell: {cell_id} | en: {digest(source)} -->\n{text.strip()}\n"


def split_badge(source: str) -> tuple[str, str]:
    """A markdown cell's Colab badge line (written by `set_links`, not translated) and the text to translate."""
    first, _, rest = source.partition("\n")
    return (first, rest.lstrip("\n")) if first.startswith(BADGE) else ("", source)


def translate(name: str) -> tuple[nbformat.NotebookNode, list[str]]:
    """Notebook ``name`` in Korean, and what it still lacks ("missing" or "stale" per cell id)."""
    english = nbformat.read(ENGLISH / name, as_version=4)
    texts, todo = read_texts(text_path(name)), []
    nb = copy.deepcopy(english)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            known, (badge_line, text) = texts.get(cell.id), split_badge(cell.source)
            if known is None or known[0] != digest(text):
                todo.append(f"{cell.id} ({'missing' if known is None else 'stale: the English changed'})")
            else:
                cell.source = "\n\n".join(part for part in (badge_line, known[1]) if part)
    unknown = sorted(set(texts) - {cell.id for cell in english.cells if cell.cell_type == "markdown"})
    todo += [f"{cell_id} (translates no markdown cell of the English notebook: delete it)" for cell_id in unknown]
    set_links(nb, name, folder=FOLDER)
    return nb, todo


def todo_blocks(name: str) -> str:
    """The blocks a translator writes for ``name``: each cell to (re)translate with its English text."""
    english, texts = nbformat.read(ENGLISH / name, as_version=4), read_texts(text_path(name))
    texts_to_do = {cell.id: split_badge(cell.source)[1] for cell in english.cells if cell.cell_type == "markdown"}
    return "\n".join(block(cell_id, text, text) for cell_id, text in texts_to_do.items()
                     if texts.get(cell_id, ("",))[0] != digest(text))


def main(argv: list[str]) -> int:
    if argv[:1] == ["--todo"]:
        for name in argv[1:] or NOTEBOOK_NAMES:
            print(todo_blocks(name))
        return 0
    KOREAN.mkdir(exist_ok=True)
    waiting = 0
    for name in NOTEBOOK_NAMES:
        nb, todo = translate(name)
        nbformat.write(nb, KOREAN / name)
        waiting += len(todo)
        print(f"notebooks/ko/{name}: " + ("translated" if not todo else f"{len(todo)} to translate: " + ", ".join(todo)))
    if waiting:
        print(f"{waiting} cells to translate: `python tools/korean.py --todo NAME` prints them with their English text; "
              f"put the Korean under each marker in {os.path.relpath(TEXTS, REPO)}/NAME.md and run `make korean` again.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
