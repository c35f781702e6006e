"""The notebooks' install cell (``notebook.install_cell()``) in an IPython shell, as Colab runs it: a failed
install fails the cell ("Run all" stops there) with pip's words and one line saying what failed and what to do."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from catdog_lib import notebook
from conftest import subprocess_env

RUN_CELL = """
import sys, types
from IPython.core.interactiveshell import InteractiveShell

if sys.argv[1] == "colab":
    sys.modules["google.colab"] = types.ModuleType("google.colab")   # what makes the cell install
result = InteractiveShell.instance().run_cell(sys.stdin.read())
print("CELL FAILED" if result.error_in_exec else "CELL OK")
"""


def _run(cell: str, where: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = subprocess_env(PIP_NO_INDEX="1", PIP_FIND_LINKS="", PIP_CONFIG_FILE="/dev/null")
    return subprocess.run([sys.executable, "-c", RUN_CELL, where], input=cell, capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=120)


def test_a_failed_install_stops_the_notebook_with_one_line(tmp_path: Path) -> None:
    requirement = f"{notebook.DISTRIBUTION} @ git+{notebook.REPOSITORY}@{notebook.RELEASE}"
    missing = tmp_path / "no-such-package"
    cell = notebook.install_cell().replace(requirement, str(missing))   # a pip command that fails offline
    assert cell != notebook.install_cell()

    result = _run(cell, "colab", tmp_path)

    assert result.stdout.rstrip().endswith("CELL FAILED"), result.stdout + result.stderr
    plain = re.sub(r"\x1b\[[0-9;]*m", "", result.stdout)   # IPython colours the exception's name
    errors = [line for line in plain.splitlines() if "SystemExit" in line]
    assert errors == [f"SystemExit: pip could not install {missing} (its words are above): check the internet "
                      "connection, then run this cell again."]
    assert "Traceback" not in result.stdout + result.stderr
    assert "ERROR" in result.stdout   # pip's own message is shown above it


def test_off_colab_the_install_cell_does_nothing(tmp_path: Path) -> None:
    result = _run(notebook.install_cell(), "local", tmp_path)
    assert result.stdout == "CELL OK\n" and result.stderr == ""
