"""The course's time: ``make run`` (``catdog course``: the six notebooks in order, each in a fresh kernel)
and its fast mode, each from a cold feature cache and an empty runs folder, with the seconds of each
notebook read from the course's summary.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from catdog_lib.config import CACHE_ENV, DATA_ENV, RUNS_ENV


def course_notebooks(summary: str) -> dict[str, float]:
    """Seconds of each notebook that ran, from a course run's summary.txt (``catdog_lib.classroom.runner.run_course``)."""
    return {name: float(seconds) for name, seconds in re.findall(r"^ +(\S+\.ipynb) +([\d.]+) s +ok$", summary, re.M)}


def course_part(root: Path, fast: bool) -> dict[str, Any]:
    """``make run`` (``catdog course``), or its fast mode, from a cold feature cache and empty runs folder."""
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        env = {**os.environ, DATA_ENV: str(root), CACHE_ENV: f"{tmp}/cache", RUNS_ENV: f"{tmp}/runs"}
        command = [sys.executable, "-m", "catdog_lib", "course", "--offline", "--out", f"{tmp}/out"]
        started = time.perf_counter()
        done = subprocess.run(command + (["--fast"] if fast else []), env=env, cwd=tmp, capture_output=True, text=True)
        wall_s = time.perf_counter() - started
        summary = Path(tmp, "out", "summary.txt")
        text = summary.read_text() if summary.exists() else ""
    notebooks = course_notebooks(text)
    failure = (done.stdout + done.stderr).strip().splitlines()[-1:] if done.returncode else []
    return {"fast": fast, "ok": done.returncode == 0, "failure": " ".join(failure), "wall_s": wall_s,
            "notebooks": notebooks, "notebooks_s": sum(notebooks.values())}
