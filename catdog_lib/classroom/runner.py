"""Running the course: ``run_course`` is what ``catdog course`` and ``make run`` do.

It executes the six notebooks in order with nbclient (each in its own folder, as Jupyter and nbval
do; the kernels run this Python and see the same course folder), saves each executed notebook and
an HTML copy in ``runs/<timestamp>/``, and prints what data was used, the test accuracy notebook 05
measured and the time per notebook, last. On a machine without photos it downloads them first.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .. import config
from ..config import DATA_ENV, FAST_ENV, HOME_ENV, data_root, fast_mode
from ..data.layout import find_dataset
from ..errors import CatdogError
from ..files import atomic_write_text
from ..train.runlock import hold_course
from .course import COURSE_RUN, course_data_root, has_dataset

NOTEBOOK_DIR = config.notebook_dir()
NOTEBOOKS = config.NOTEBOOK_NAMES
TRAINING_NOTEBOOK = "04_transfer_learning.ipynb"
NOTEBOOK_TIMEOUT_S = 3600  # per cell


@dataclass
class NotebookRun:
    """How one notebook went: seconds taken and, if it failed, why."""

    name: str
    seconds: float
    error: str | None = None


def _first_line(cell) -> str:
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")]
    return (lines or [""])[0].strip()[:60]


def failed_cell(nb) -> str:
    """Which cell of an executed notebook failed (number counting all cells, first code line, error)."""
    code_cells = [(i, cell) for i, cell in enumerate(nb.cells, start=1) if cell.cell_type == "code"]
    for number, cell in code_cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"cell {number} ({_first_line(cell)!r}): {output['ename']}: {output['evalue']}"
    started = [(number, cell) for number, cell in code_cells if cell.get("execution_count")]
    if started:
        number, cell = started[-1]
        return f"cell {number} ({_first_line(cell)!r}) did not finish"
    return "no cell ran"


def execute_notebook(path: Path, out_dir: Path) -> NotebookRun:
    """Run one notebook in its own folder; write it executed (``.ipynb``) and as ``.html`` to ``out_dir``."""
    try:
        import nbformat
        from ipykernel.kernelspec import write_kernel_spec
        from jupyter_client import AsyncKernelManager
        from jupyter_client.kernelspec import KernelSpecManager
        from nbclient import NotebookClient
        from nbclient.exceptions import (
            CellExecutionError,
            CellTimeoutError,
            DeadKernelError,
        )
        from nbconvert import HTMLExporter
    except ImportError as error:
        raise CatdogError(f"running the notebooks needs {error.name}: pip install 'catdog-course[jupyter]'") from None

    nb = nbformat.read(path, as_version=4)
    started = time.perf_counter()
    error = None
    with tempfile.TemporaryDirectory(prefix="catdog-kernel-") as folder:
        # The kernel runs this very Python (not whatever "python3" kernel Jupyter finds first), over local
        # sockets (IPC) where the system has them: no TCP port, no "running over TCP without encryption".
        write_kernel_spec(Path(folder) / "kernels" / "python3")
        specs = KernelSpecManager(kernel_dirs=[str(Path(folder) / "kernels")], ensure_native_kernel=False)
        sockets = {} if os.name == "nt" else {"transport": "ipc", "ip": str(Path(folder) / "kernel")}
        kernel = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=specs, **sockets)
        client = NotebookClient(nb, km=kernel, timeout=NOTEBOOK_TIMEOUT_S, kernel_name="python3",
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute(cleanup_kc=True)  # shut the kernel down (it is ours, not the client's)
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            error = failed_cell(nb) if not isinstance(exc, DeadKernelError) else f"the kernel died ({exc})"
    seconds = time.perf_counter() - started
    text = nbformat.writes(nb)
    atomic_write_text(out_dir / path.name, text if text.endswith("\n") else text + "\n")  # as nbformat.write
    html, _ = HTMLExporter().from_notebook_node(nb)
    atomic_write_text(out_dir / path.with_suffix(".html").name, html)
    return NotebookRun(path.name, seconds, error)


def check_training(run: Path, since: float) -> str | None:
    """Why the training notebook did not really train (metrics.json stale, missing or 0 epochs), or None."""
    metrics = run / "metrics.json"
    if not metrics.is_file() or metrics.stat().st_mtime < since:
        return f"it did not train: {metrics} was not written during this run"
    if json.loads(metrics.read_text(encoding="utf-8")).get("epochs_run", 0) <= 0:
        return f"it did not train: {metrics} says 0 epochs were run"
    return None


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """Set (or leave alone, for None) an environment variable the notebook kernels inherit."""
    previous = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def data_lines(root: Path, synthetic: bool) -> list[str]:
    kind = "SYNTHETIC generated shapes, not photos" if synthetic else "real photos"
    layout = find_dataset(root)
    lines = [f"data: {root} ({kind})"]
    parts = [("train", layout.train())] + ([("test", layout.test())] if layout.test_dir else [])
    for part, folders in parts:
        counts = folders.counts()
        lines.append(f"  {part}: {sum(counts.values())} images (" +
                     ", ".join(f"{name} {n}" for name, n in counts.items()) + ")")
    return lines


def _fresh_json(path: Path, since: float) -> dict | None:
    """A JSON file's content if it was written during this run."""
    if not path.is_file() or path.stat().st_mtime < since:
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def _result_lines(run: Path, since: float) -> list[str]:
    lines = []
    metrics = _fresh_json(run / "metrics.json", since)
    if metrics:
        counts = metrics["counts"]
        lines.append(f"trained {metrics['arch']} for {metrics['epochs_run']} epochs on "
                     f"{sum(counts['train'].values())} images, validated on {sum(counts['valid'].values())}: "
                     f"best valid accuracy {metrics['best_valid_accuracy']:.4f} (epoch {metrics['best_epoch']})")
    evaluation = _fresh_json(run / "evaluation.json", since)
    if evaluation:
        lines.append(f"test accuracy: {evaluation['accuracy']:.4f} on {evaluation['n']} images "
                     f"(loss {evaluation['loss']:.4f})" + (" -- SYNTHETIC data" if evaluation["synthetic"] else ""))
    else:
        lines.append("test accuracy: not measured (notebook 05 did not finish)")
    return lines


def _fetch_course_data(all_photos: bool) -> str | None:
    """On a machine without photos, download the default no-account source (or reuse it) and return
    the root to use; None (and a loud notice) when that fails, so the course falls back to synthetic data."""
    from ..data.download import get_course_data

    try:
        return str(get_course_data(all_photos=all_photos))
    except CatdogError as error:
        rule = "!" * 78
        print(f"{rule}\nCould not get real photos: {error}\nThe course runs on SYNTHETIC data instead.\n{rule}")
        return None


def run_course(fast: bool, out: Path | None, notebooks: Sequence[Path] | None = None,
               course_run: Path = COURSE_RUN, fetch_data: bool = False, all_photos: bool = False) -> int:
    """Execute the notebooks in order, stopping at the first failure; 0 when all ran and notebook 04 trained.

    With ``fetch_data`` and no data of one's own (no $CATDOG_DATA_DIR, nothing in ``data/cat-and-dog``
    but a subset made here), the photos are downloaded first: see ``_fetch_course_data``. One course at a
    time in a course folder: a second one gets one clear error and changes nothing.
    """
    with hold_course(course_run):
        return _run_course(fast, out, notebooks, course_run, fetch_data, all_photos)


def _run_course(fast: bool, out: Path | None, notebooks: Sequence[Path] | None, course_run: Path,
                fetch_data: bool, all_photos: bool) -> int:
    fast = fast or fast_mode()
    out = Path(out) if out else config.runs_dir() / datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CatdogError(f"cannot write to {out}: {error.strerror or error}. The course writes its data and runs "
                          f"in the course folder {config.home()}: run it from a folder you can write, set "
                          "CATDOG_HOME (or CATDOG_RUNS_DIR) to one, or pass --out.") from None
    paths = [Path(p) for p in notebooks] if notebooks is not None else [NOTEBOOK_DIR / n for n in NOTEBOOKS]
    since = time.time() - 1  # file times may be rounded down a little
    print(f"course run into {out} ({'fast mode' if fast else 'full course'})")
    own_data = os.environ.get(DATA_ENV) or (has_dataset(data_root()) and not
                                            (data_root() / ".catdog-complete-subset").exists())
    chosen = _fetch_course_data(all_photos) if fetch_data and not own_data else None
    with _environment(FAST_ENV, "1" if fast else None), _environment(DATA_ENV, chosen), \
            _environment(HOME_ENV, str(config.home())):
        root, synthetic = course_data_root()
        runs: list[NotebookRun] = []
        for path in paths:
            print(f"running {path.name} ...", flush=True)
            started = time.time()
            result = execute_notebook(path, out)
            if result.error is None and path.name == TRAINING_NOTEBOOK:
                result.error = check_training(course_run, started - 1)
            runs.append(result)
            if result.error:
                break
    lines = [f"course run {out} ({'fast mode' if fast else 'full course'})", *data_lines(root, synthetic),
             *_result_lines(course_run, since), "notebooks:"]
    for result in runs:
        status = f"FAILED: {result.error}" if result.error else "ok"
        lines.append(f"  {result.name:<28} {result.seconds:7.1f} s  {status}")
    lines.extend(f"  {path.name:<28}       -    not run" for path in paths[len(runs):])
    failed = any(result.error for result in runs)
    lines.append(f"total {sum(r.seconds for r in runs):.1f} s; " + ("FAILED" if failed else "all notebooks ran"))
    summary = "\n".join(lines)
    atomic_write_text(out / "summary.txt", summary + "\n")
    print(summary)
    return 1 if failed else 0
