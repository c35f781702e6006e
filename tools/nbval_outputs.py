"""Decide which notebook cells strict `pytest --nbval` compares, and commit those cells' outputs.

Each notebook runs twice in fast mode: on the real photos (CATDOG_DATA_DIR) and on the synthetic
fallback. A cell whose printed text is the same in both runs (after notebooks/nbval-sanitize.cfg)
does not depend on the data, the machine or the clock: its output is committed and compared. Every
other cell that shows something is tagged `nbval-ignore-output`, with the reason in its metadata
(`catdog.nbval`). A cell whose output must never be compared (e.g. it depends on a library's version) says so
in a first line `# NBVAL_IGNORE_OUTPUT: reason`; this tool moves that line out of the student's sight, into
the metadata (`catdog.pinned`), where it stays.

    .venv/bin/python tools/nbval_outputs.py [notebooks/NAME.ipynb ...]
"""

from __future__ import annotations

import configparser
import os
import re
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
IGNORE_TAG = "nbval-ignore-output"
PIN_COMMENT = "# NBVAL_IGNORE_OUTPUT"


def pin(cell: nbformat.NotebookNode) -> str | None:
    """Why the cell's output is never compared: its `catdog.pinned` metadata, or a first-line
    `# NBVAL_IGNORE_OUTPUT: reason` comment (removed from the source and kept in the metadata)."""
    first, _, rest = cell.source.partition("\n")
    if first.startswith(PIN_COMMENT):
        cell.source = rest
        reason = first.removeprefix(PIN_COMMENT).lstrip(": ").strip() or "it varies from run to run"
        cell.metadata.setdefault("catdog", {})["pinned"] = reason
    return cell.metadata.get("catdog", {}).get("pinned")


def sanitizers() -> list[tuple[re.Pattern, str]]:
    parser = configparser.ConfigParser()
    parser.read(NOTEBOOKS / "nbval-sanitize.cfg")
    return [(re.compile(parser[name]["regex"]), parser[name]["replace"]) for name in parser.sections()]


def execute(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return nb


def text(outputs: list, rules: list[tuple[re.Pattern, str]]) -> str:
    joined = "".join(out.get("text", "") for out in outputs if out.get("output_type") == "stream")
    for pattern, replacement in rules:
        joined = pattern.sub(replacement, joined)
    return joined


def why_ignored(real: list, synthetic_text: str, real_text: str) -> str | None:
    """None when the cell's output is compared, else the reason it is not."""
    kinds = {out.get("output_type") for out in real}
    data = {key for out in real for key in out.get("data", {})}
    if "application/vnd.jupyter.widget-view+json" in data:
        return "a progress bar: its text holds timings"
    if any(out.get("name") == "stderr" for out in real):
        return "messages on stderr (warnings, progress) vary with the libraries installed"
    if kinds - {"stream"}:
        return "a figure or rich output: its pixels vary with the plotting library's version"
    if real_text != synthetic_text:
        return "depends on the photos used (real or synthetic, fast or full mode)"
    return None


def refresh(path: Path, real_env: dict[str, str], synthetic_env: dict[str, str]) -> None:
    rules = sanitizers()
    real, synthetic = execute(path, real_env), execute(path, synthetic_env)
    nb = nbformat.read(path, as_version=4)
    count = 0
    for cell, ran, other in zip(nb.cells, real.cells, synthetic.cells):
        if cell.cell_type != "code":
            continue
        count += 1
        tags = [tag for tag in cell.metadata.get("tags", []) if tag != IGNORE_TAG]
        pinned = pin(cell)
        cell.metadata.pop("catdog", None)
        cell.outputs, cell.execution_count = [], None
        reason = None
        if pinned:
            tags.append(IGNORE_TAG)
            cell.metadata["catdog"] = {"nbval": f"output not compared: {pinned}", "pinned": pinned}
        elif ran.outputs:
            reason = why_ignored(ran.outputs, text(other.outputs, rules), text(ran.outputs, rules))
            if reason is None:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text(ran.outputs, []))]
                cell.execution_count = count  # nbval compares only cells that show they ran
            else:
                tags.append(IGNORE_TAG)
                cell.metadata["catdog"] = {"nbval": f"output not compared: {reason}"}
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    nbformat.write(nb, path)
    compared = sum(1 for cell in nb.cells if cell.cell_type == "code" and cell.outputs)
    print(f"{path.name}: {compared} cells compared")


def main(names: list[str]) -> None:
    real_data = os.environ.get("CATDOG_DATA_DIR")
    if not real_data:
        sys.exit("set CATDOG_DATA_DIR to the real photos (the comparison needs them and the synthetic set)")
    with tempfile.TemporaryDirectory() as tmp:
        common = {"CATDOG_FAST": "1", "CATDOG_CACHE_DIR": f"{tmp}/cache"}
        real_env = {**common, "CATDOG_DATA_DIR": real_data, "CATDOG_RUNS_DIR": f"{tmp}/runs-real"}
        # no data folder given ("" is none) and none in the course folder: the synthetic fallback (a data folder
        # that is given but holds no photos is an error)
        synthetic_env = {**common, "CATDOG_DATA_DIR": "", "CATDOG_HOME": f"{tmp}/no-photos",
                         "CATDOG_RUNS_DIR": f"{tmp}/runs-synthetic"}
        for path in [Path(name) for name in names] or sorted(NOTEBOOKS.glob("*.ipynb")):
            refresh(path.resolve(), real_env, synthetic_env)


if __name__ == "__main__":
    main(sys.argv[1:])
