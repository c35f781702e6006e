"""Give every course notebook the ``DRIVE`` parameter (issue 20): the last line of its parameters cell, passed
to ``notebook.setup`` in the cell after it. Idempotent; changes nothing else (cell ids and formatting kept).
Usage: python tools/notebook_drive.py [NOTEBOOK ...]   (default: notebooks/*.ipynb)
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat

PARAMETER = "DRIVE = False  # True on Colab: data and runs on Google Drive, so 05 and 06 find the model 04 trained"
OLD_CALL = "notebook.setup(DATA_DIR)  # CatdogError as one line; on Colab: get the photos (drive=True: on Drive)"
NEW_CALL = "notebook.setup(DATA_DIR, drive=DRIVE)  # CatdogError as one line; on Colab: get the photos"


def add_drive(nb: nbformat.NotebookNode) -> bool:
    """Add the parameter and pass it to setup; whether ``nb`` changed."""
    index = next(i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", []))
    parameters, setup = nb.cells[index], nb.cells[index + 1]
    if OLD_CALL not in setup.source or "DRIVE =" in parameters.source:
        return False
    parameters.source = parameters.source.rstrip("\n") + "\n" + PARAMETER
    setup.source = setup.source.replace(OLD_CALL, NEW_CALL)
    for cell in (parameters, setup):
        cell.outputs, cell.execution_count = [], None
    return True


def main(paths: list[str]) -> int:
    root = Path(__file__).resolve().parent.parent
    for path in map(Path, paths or sorted((root / "notebooks").glob("*.ipynb"))):
        nb = nbformat.read(path, as_version=4)
        if add_drive(nb):
            nbformat.write(nb, path)
            print(f"DRIVE added: {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
