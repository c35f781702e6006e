"""The executed edition a teacher reads before class: `make executed`.

Runs the six notebooks in order, in full mode, on the real photos (`CATDOG_DATA_DIR`), and writes each one,
with every output and figure, to `docs/executed/`: a first cell names the machine (CPU and its class), the
date, the data and the time the notebook took. Progress bars keep their text only; figures are at most
`MAX_WIDTH` pixels wide (PNG, or JPEG for photos). Then the "lesson results" table of docs/BENCHMARKS.md is
written from what the notebooks printed: every paired comparison (`compare.paired`) and every spread over seeds (`compare.spread`).
tests/test_executed.py checks that the edition is current and that every number the notebooks' prose quotes
is printed by it.

    .venv/bin/python tools/executed.py [NAME.ipynb ...]   # default: all six (05 and 06 use 04's run)
    .venv/bin/python tools/executed.py --prose NAME.ipynb  # after a markdown-only edit: its text, the outputs kept

    .venv/bin/python tools/executed.py --korean [NAME.ipynb ...]  # the Korean edition (`make korean` runs it)

`--prose` runs nothing: where the notebook's code cells are those of the edition, it takes the notebook's markdown
cells into the edition (prose does not change what the code prints); any code edit needs the full run. The Korean
edition, `docs/executed/ko/`, is made the same way from `notebooks/ko/` (the same code, so the same outputs): every
run of this tool and `make korean` rewrite it.
"""

from __future__ import annotations

import base64
import copy
import io
import os
import re
import sys
import tempfile
from datetime import date
from pathlib import Path

import nbformat

from catdog_lib.config import NOTEBOOK_NAMES

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "docs" / "executed"
KOREAN_OUT = OUT / "ko"
BENCHMARKS = REPO / "docs" / "BENCHMARKS.md"
RUNS = REPO / "runs" / "executed"  # the edition's own course folder runs: 05 and 06 find 04's model there
MAX_WIDTH = 800
MAX_PNG_BYTES = 150_000  # larger PNGs (grids of photos) become JPEGs
WIDGET = "application/vnd.jupyter.widget-view+json"
TABLE_START, TABLE_END = "<!-- lesson-results:start -->", "<!-- lesson-results:end -->"
PAIRED = re.compile(
    r"^(?P<a>.+?) (?P<acc_a>\d\.\d{3}) vs (?P<b>.+?) (?P<acc_b>\d\.\d{3}) on (?P<n>\d+) photos: .+? right where "
    r".+? was wrong on (?P<better>\d+), the reverse on (?P<worse>\d+)\n"
    r"McNemar p = (?P<p>\S+); 95% bootstrap interval of .+?: (?P<low>\S+) to (?P<high>\S+)\n(?P<verdict>.+)$",
    re.MULTILINE)
HEADER_FACTS = re.compile(r"on (?P<date>\d{4}-\d{2}-\d{2}) by `make executed`, in (?P<seconds>\d+) s\.")
SPREAD = re.compile(r"^.*\d\.\d{3} ± \d\.\d{3} \(sd over \d+ seeds; .*$", re.MULTILINE)


def printed(cell: nbformat.NotebookNode) -> str:
    """What a code cell shows as text: its streams, plain-text results and errors."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif output.get("output_type") == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
        elif "text/plain" in output.get("data", {}) and WIDGET not in output.get("data", {}):
            parts.append(output["data"]["text/plain"])
    return "".join(parts)


def sections(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(the heading a code cell sits under, what it printed), for every code cell in order."""
    heading, found = "", []
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = [line.lstrip("#").strip() for line in cell.source.splitlines() if line.startswith("## ")]
            heading = headings[-1] if headings else heading
        elif cell.cell_type == "code":
            found.append((heading, printed(cell)))
    return found


def lesson_results(notebooks: dict[str, nbformat.NotebookNode]) -> str:
    """The markdown of the lesson-results tables, from the executed notebooks' printed comparisons."""
    paired = ["| notebook | section | A vs B | accuracy A | accuracy B | photos | B right, A wrong | "
              "A right, B wrong | McNemar p | 95% interval of B − A | verdict |", "|" + "---|" * 11]
    spreads = ["| notebook | section | printed over seeds |", "|---|---|---|"]
    for name, nb in notebooks.items():
        short = name.split("_")[0]
        for heading, text in sections(nb):
            for m in PAIRED.finditer(text):
                paired.append(f"| {short} | {heading} | {m['a']} vs {m['b']} | {m['acc_a']} | {m['acc_b']} | {m['n']} "
                              f"| {m['better']} | {m['worse']} | {m['p']} | {m['low']} to {m['high']} | {m['verdict']} |")
            spreads.extend(f"| {short} | {heading} | {line.strip()} |" for line in SPREAD.findall(text))
    return "\n".join(["**Paired comparisons** (two models, the same photos):", "", *paired, "",
                      "**Spreads over seeds** (mean ± sd):", "", *spreads])


def write_lesson_results(notebooks: dict[str, nbformat.NotebookNode]) -> None:
    text = BENCHMARKS.read_text(encoding="utf-8")
    before, _, rest = text.partition(TABLE_START)
    _, _, after = rest.partition(TABLE_END)
    BENCHMARKS.write_text(f"{before}{TABLE_START}\n{lesson_results(notebooks)}\n{TABLE_END}{after}", encoding="utf-8")


def small_figure(data: str) -> tuple[str, str]:
    """A base64 PNG figure at most MAX_WIDTH pixels wide: (mime type, base64), a JPEG where photos make the PNG
    larger than MAX_PNG_BYTES."""
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data)))
    if image.width > MAX_WIDTH:
        image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    if buffer.tell() > MAX_PNG_BYTES:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=80, optimize=True)
        return "image/jpeg", base64.b64encode(buffer.getvalue()).decode("ascii")
    return "image/png", base64.b64encode(buffer.getvalue()).decode("ascii")


def tidy(nb: nbformat.NotebookNode) -> None:
    """Progress bars as their last text, figures small, no widget state."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            data.pop(WIDGET, None)
            if "image/png" in data:
                kind, figure = small_figure(data.pop("image/png"))
                data[kind] = figure
    nb.metadata.pop("widgets", None)


def header(name: str, seconds: float, machine: str, data: list[str]) -> nbformat.NotebookNode:
    lines = [f"> **Executed edition** of `notebooks/{name}`, for reading before class: run top to bottom in "
             f"**full mode** on {date.today().isoformat()} by `make executed`, in {seconds:.0f} s.",
             f"> Machine: {machine}.", *[f"> {line}" for line in data],
             "> Edit and run the notebook in `notebooks/`; this copy is regenerated, not edited."]
    return nbformat.v4.new_markdown_cell("  \n".join(lines), id="executed-edition")  # a line break each


def with_prose(source: nbformat.NotebookNode, edition: nbformat.NotebookNode) -> nbformat.NotebookNode | None:
    """The edition (its header cell first) with the source notebook's markdown cells and its own outputs; None when
    the two notebooks' code differs."""
    ran = [cell for cell in edition.cells[1:] if cell.cell_type == "code"]
    if [cell.source for cell in ran] != [cell.source for cell in source.cells if cell.cell_type == "code"]:
        return None
    outputs, merged = iter(ran), copy.deepcopy(edition)
    merged.cells[1:] = [copy.deepcopy(next(outputs)) if cell.cell_type == "code" else cell for cell in source.cells]
    return merged


def copy_prose(name: str) -> str | None:
    """The notebook's markdown cells into its edition, outputs kept; why not, when its code changed."""
    merged = with_prose(nbformat.read(REPO / "notebooks" / name, as_version=4), nbformat.read(OUT / name, as_version=4))
    if merged is None:
        return f"{name}: its code cells changed since the edition ran: run `make executed`"
    nbformat.write(merged, OUT / name)
    return None


def korean_header(english: str, name: str) -> nbformat.NotebookNode:
    """The Korean edition's first cell: the English header's facts (machine, data) under a Korean first line."""
    facts, lines = HEADER_FACTS.search(english), english.split("  \n")
    year, month, day = (int(part) for part in facts["date"].split("-"))
    first = (f"> **실행본(한국어)** `notebooks/ko/{name}`: 수업 전에 읽도록 {year}년 {month}월 {day}일에 "
             f"`make executed`가 **전체 모드**로 처음부터 끝까지 실행했습니다({facts['seconds']}초). "
             f"코드가 영문판과 같으므로 출력은 영문 실행본 `docs/executed/{name}`의 출력 그대로입니다.")
    last = ("> 고쳐서 실행하려면 `notebooks/ko/`의 노트북을 여세요. "
            "이 사본은 `make korean`이 다시 만들며, 직접 고치지 않습니다.")
    machine = [line.replace("> Machine:", "> 실행한 컴퓨터:", 1) for line in lines[1:-1]]
    return nbformat.v4.new_markdown_cell("  \n".join([first, *machine, last]), id="executed-edition")


def korean_edition(name: str) -> nbformat.NotebookNode | None:
    """The Korean executed edition of ``name``: notebooks/ko's text with the English edition's outputs."""
    english = nbformat.read(OUT / name, as_version=4)
    merged = with_prose(nbformat.read(REPO / "notebooks" / "ko" / name, as_version=4), english)
    if merged is not None:
        merged.cells[0] = korean_header(english.cells[0].source, name)
    return merged


def write_korean(names: list[str]) -> str | None:
    """Write docs/executed/ko/ for ``names``; why not, for a notebook whose Korean code is not the edition's."""
    KOREAN_OUT.mkdir(parents=True, exist_ok=True)
    stale = []
    for name in names:
        if (edition := korean_edition(name)) is None:
            stale.append(name)
        else:
            nbformat.write(edition, KOREAN_OUT / name)
    return f"not written (the code differs from the English edition's: `make korean`, then `make executed`): " \
           f"{', '.join(stale)}" if stale else None


def main(names: list[str]) -> int:
    if names[:1] == ["--prose"]:
        problems = [problem for name in names[1:] if (problem := copy_prose(name))]
        problems += [problem] if not problems and (problem := write_korean(names[1:])) else []
        print("\n".join(problems) or f"prose copied into the edition: {', '.join(names[1:])}")
        return 1 if problems else 0
    if names[:1] == ["--korean"]:
        problem = write_korean(names[1:] or list(NOTEBOOK_NAMES))
        print(problem or f"Korean executed edition written to {KOREAN_OUT.relative_to(REPO)}/")
        return 1 if problem else 0
    os.environ.pop("CATDOG_FAST", None)
    os.environ["CATDOG_RUNS_DIR"] = str(RUNS)
    os.environ["CATDOG_HOME"] = str(REPO)
    sys.path.insert(0, str(REPO))
    import torch

    from catdog_lib import devices, runner
    from catdog_lib.classroom.course import course_data_root

    root, synthetic = course_data_root()
    if synthetic:
        sys.exit("the executed edition needs the real photos: set CATDOG_DATA_DIR (none found, synthetic data)")
    isa = devices.instruction_sets()
    machine = (f"{devices.cpu_model()} ({devices.cpu_class(isa)}: {', '.join(isa) or 'no listed extensions'}), "
               f"{os.cpu_count()} cores, {devices.pick_device()}, torch {torch.__version__}")
    data = [line.replace(str(root), root.name) for line in runner.data_lines(root, synthetic)]
    chosen = names or list(runner.NOTEBOOKS)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="catdog-executed-") as scratch:
        for name in chosen:
            print(f"running {name} in full mode ...", flush=True)
            result = runner.execute_notebook(runner.NOTEBOOK_DIR / name, Path(scratch))
            if result.error:
                print(f"{name} FAILED: {result.error}")
                return 1
            nb = nbformat.read(Path(scratch) / name, as_version=4)
            tidy(nb)
            nb.cells.insert(0, header(name, result.seconds, machine, data))
            nbformat.write(nb, OUT / name)
            print(f"  {result.seconds:.0f} s -> {OUT / name}")
    write_lesson_results({path.name: nbformat.read(path, as_version=4) for path in sorted(OUT.glob("*.ipynb"))})
    if problem := write_korean(chosen):
        print(f"Korean executed edition {problem}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
