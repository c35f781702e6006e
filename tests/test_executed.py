"""The executed edition (docs/executed/, `make executed`) is current, and backs every number the prose quotes.

A number typed into a notebook's markdown (a decimal such as 0.975, or a percentage) must be printed by
that notebook's executed edition, or be written in its own code, or be quoted from the seed tutorial.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nbformat
import pytest

from catdog_lib.config import NOTEBOOK_NAMES

REPO = Path(__file__).resolve().parent.parent
EXECUTED = REPO / "docs" / "executed"
TUTORIAL = REPO.parent / "shared" / "reference" / "seed-tutorial.md"
spec = importlib.util.spec_from_file_location("executed_tool", REPO / "tools" / "executed.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?\s?%|\d[\d,]*\.\d+)(?![\w.]*\d)")
LINK = re.compile(r"\]\([^)]*\)|https?://\S+")


def notebooks(lang: str = "") -> dict[str, tuple[nbformat.NotebookNode, nbformat.NotebookNode]]:
    """{name: (the notebook, its executed edition)}, in English or (lang "ko") in Korean."""
    return {name: (nbformat.read(REPO / "notebooks" / lang / name, as_version=4),
                   nbformat.read(EXECUTED / lang / name, as_version=4)) for name in NOTEBOOK_NAMES}


def quoted_numbers(markdown: str) -> list[str]:
    """Decimals and percentages in a markdown text, links left out."""
    return [match.replace(" ", "") for match in NUMBER.findall(LINK.sub("", markdown))]


def backed(number: str, printed: str, code: str, tutorial: str) -> bool:
    """Printed by the edition, written in the code, or quoted from the tutorial; 98.2% also as 0.982."""
    plain = number.rstrip("%").replace(",", "")
    forms = {number, number.rstrip("%"), plain, number.replace(",", "")}
    if number.endswith("%"):
        fraction = float(plain) / 100
        forms |= {f"{fraction:.3f}", f"{fraction:.4f}", f"{fraction:.2f}"}
    haystacks = (printed, printed.replace(",", ""), code, tutorial)
    return any(form in haystack for form in forms for haystack in haystacks)


def test_the_number_finder_finds_quoted_results_and_skips_links_and_versions():
    text = "valid accuracy 0.975 ± 0.008, **98.2%** after 30 min, 1,280 numbers, v0.1.0 [x](https://a.b/c0.5)"
    assert quoted_numbers(text) == ["0.975", "0.008", "98.2%"]
    assert backed("98.2%", "test accuracy 0.982", "", "") and backed("0.008", "± 0.008", "", "")
    assert not backed("0.123", "0.456", "x = 0.5", "0.789")


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_the_executed_edition_is_the_current_notebook_run_in_full_mode(name):
    source, executed = notebooks()[name]
    first, *cells = executed.cells
    assert first.cell_type == "markdown" and "**Executed edition**" in first.source and "full mode" in first.source
    assert "Machine: " in first.source and re.search(r"\((AMX|AVX512-BF16|AVX-512|AVX2|no AVX2)", first.source)
    assert "real photos" in first.source and "SYNTHETIC" not in first.source
    assert [(c.cell_type, c.source) for c in cells] == [(c.cell_type, c.source) for c in source.cells], \
        f"docs/executed/{name} is stale: run `make executed` after editing the notebook"
    assert not any(out.get("output_type") == "error" for c in cells for out in c.get("outputs", []))
    code = [c for c in cells if c.cell_type == "code"]
    assert sum(bool(c.outputs) for c in code) >= len(code) // 2  # the evidence is on the page


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_the_korean_executed_edition_is_the_korean_text_over_the_same_outputs(name):
    korean = nbformat.read(EXECUTED / "ko" / name, as_version=4)
    assert nbformat.writes(korean) == nbformat.writes(tool.korean_edition(name)), \
        f"docs/executed/ko/{name} is stale: run `make korean`"
    source, english = nbformat.read(REPO / "notebooks" / "ko" / name, as_version=4), notebooks()[name][1]
    assert [c.source for c in korean.cells[1:]] == [c.source for c in source.cells]
    assert [c.outputs for c in korean.cells if c.cell_type == "code"] == \
        [c.outputs for c in english.cells if c.cell_type == "code"]  # the English edition's full-mode outputs
    header = korean.cells[0].source
    assert "전체 모드" in header and "real photos" in header and english.cells[0].source.split("  \n")[1][10:] in header


@pytest.mark.parametrize("lang", ["", "ko"])
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_every_number_the_prose_quotes_is_printed_by_the_notebook(name, lang):
    if not TUTORIAL.is_file():
        pytest.skip(f"the seed tutorial is not at {TUTORIAL} (quotes from it cannot be checked)")
    source, executed = notebooks(lang)[name]
    printed = "\n".join(tool.printed(cell) for cell in executed.cells if cell.cell_type == "code")
    code = "\n".join(cell.source for cell in source.cells if cell.cell_type == "code")
    tutorial = TUTORIAL.read_text(encoding="utf-8")
    unbacked = [(number, cell.source[:60]) for cell in source.cells if cell.cell_type == "markdown"
                for number in quoted_numbers(cell.source) if not backed(number, printed, code, tutorial)]
    assert not unbacked, f"{name}: numbers in the prose that the executed edition does not print: {unbacked}"


def test_figures_are_in_the_edition():
    images = [(name, data[kind]) for name, (_, executed) in notebooks().items() for c in executed.cells
              for out in c.get("outputs", []) for data in [out.get("data", {})]
              for kind in ("image/png", "image/jpeg") if kind in data]
    assert len({name for name, _ in images}) >= 4 and len(images) >= 10, [name for name, _ in images]
    assert all(len(figure) < 400_000 for _, figure in images)  # modest resolution: the edition stays readable in git


def test_benchmarks_lesson_results_are_those_of_the_edition():
    text = (REPO / "docs" / "BENCHMARKS.md").read_text(encoding="utf-8")
    table = text.split(tool.TABLE_START)[1].split(tool.TABLE_END)[0].strip()
    assert table == tool.lesson_results({name: executed for name, (_, executed) in notebooks().items()})
    assert table.count("\n| 0") >= 3  # comparisons from several notebooks


def test_the_readme_links_every_executed_notebook():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in NOTEBOOK_NAMES:
        assert f"(docs/executed/{name})" in readme, name


def test_prose_only_edits_reach_the_edition_without_a_run_and_code_edits_do_not(tmp_path, monkeypatch):
    v4 = nbformat.v4
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "edition").mkdir()
    monkeypatch.setattr(tool, "REPO", tmp_path)
    monkeypatch.setattr(tool, "OUT", tmp_path / "edition")
    ran = v4.new_code_cell("print(2 + 2)", outputs=[v4.new_output("stream", name="stdout", text="4\n")])
    nbformat.write(v4.new_notebook(cells=[v4.new_markdown_cell("header"), v4.new_markdown_cell("old text"), ran]),
                   tmp_path / "edition" / "x.ipynb")
    source = v4.new_notebook(cells=[v4.new_markdown_cell("new text"), v4.new_code_cell("print(2 + 2)"),
                                    v4.new_markdown_cell("a new closing remark")])
    nbformat.write(source, tmp_path / "notebooks" / "x.ipynb")

    assert tool.copy_prose("x.ipynb") is None
    edition = nbformat.read(tmp_path / "edition" / "x.ipynb", as_version=4)
    assert [c.source for c in edition.cells] == ["header", "new text", "print(2 + 2)", "a new closing remark"]
    assert edition.cells[2].outputs[0].text == "4\n"

    source.cells[1].source = "print(2 + 3)"
    nbformat.write(source, tmp_path / "notebooks" / "x.ipynb")
    assert "make executed" in tool.copy_prose("x.ipynb")
    assert nbformat.read(tmp_path / "edition" / "x.ipynb", as_version=4).cells[2].source == "print(2 + 2)"


def test_the_korean_edition_is_written_only_over_the_same_code(tmp_path, monkeypatch):
    v4 = nbformat.v4
    for folder in ("notebooks/ko", "edition/ko"):
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.setattr(tool, "REPO", tmp_path)
    monkeypatch.setattr(tool, "OUT", tmp_path / "edition")
    monkeypatch.setattr(tool, "KOREAN_OUT", tmp_path / "edition" / "ko")
    header = tool.header("x.ipynb", 12.3, "a CPU (AVX2: AVX2), 2 cores, cpu, torch 2", ["data: photos (real photos)"])
    ran = v4.new_code_cell("print(2 + 2)", outputs=[v4.new_output("stream", name="stdout", text="4\n")])
    nbformat.write(v4.new_notebook(cells=[header, v4.new_markdown_cell("Two and two."), ran]),
                   tmp_path / "edition" / "x.ipynb")
    korean = v4.new_notebook(cells=[v4.new_markdown_cell("둘 더하기 둘."), v4.new_code_cell("print(2 + 2)")])
    nbformat.write(korean, tmp_path / "notebooks" / "ko" / "x.ipynb")

    assert tool.write_korean(["x.ipynb"]) is None
    edition = nbformat.read(tmp_path / "edition" / "ko" / "x.ipynb", as_version=4)
    assert [c.source for c in edition.cells[1:]] == ["둘 더하기 둘.", "print(2 + 2)"]
    assert edition.cells[2].outputs[0].text == "4\n"
    assert "12초" in edition.cells[0].source and "a CPU (AVX2: AVX2)" in edition.cells[0].source

    korean.cells[1].source = "print(2 + 3)"
    nbformat.write(korean, tmp_path / "notebooks" / "ko" / "x.ipynb")
    assert "x.ipynb" in tool.write_korean(["x.ipynb"])
    assert nbformat.read(tmp_path / "edition" / "ko" / "x.ipynb", as_version=4).cells[2].source == "print(2 + 2)"
