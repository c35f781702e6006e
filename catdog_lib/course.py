"""The course itself: its data, its training run, and running all six notebooks end to end.

``run_course`` is what ``catdog course`` and ``make run`` do: execute the notebooks in order with
nbclient (each in ``notebooks/``, as Jupyter and nbval do), save each executed notebook and an
HTML copy in ``runs/<timestamp>/``, and print what data was used, the test accuracy notebook 05
measured and the time per notebook.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch

from .backbones import DEFAULT_ARCH
from .checkpoint import atomic_write_text
from .config import FAST_ENV, REPO_ROOT, data_root, fast_mode, runs_dir
from .errors import CatdogError
from .evaluation import Evaluation
from .features import file_digest
from .layout import (
    Sample,
    evaluation_folders,
    find_dataset,
    is_hidden_or_junk,
    match_classes,
    natural_key,
)
from .split import Split, stratified_split, subset_per_class
from .synthetic import make_synthetic_dataset
from .training import TrainConfig, train

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = (
    "01_download_data.ipynb",
    "02_visualize_data.ipynb",
    "03_augmentation.ipynb",
    "04_transfer_learning.ipynb",
    "05_evaluate.ipynb",
    "06_save_and_load.ipynb",
)
TRAINING_NOTEBOOK = "04_transfer_learning.ipynb"
COURSE_RUN = runs_dir() / "course"  # notebook 04 trains here; 05 and 06 read it
COURSE_SPLIT = runs_dir() / "course-split.json"  # notebook 01 splits the data; 02-06 use its split
SYNTHETIC_ROOT = REPO_ROOT / "data" / "synthetic-cats-vs-dogs"
FAST_PER_CLASS = 60  # fast mode: training photos per class (and a quarter of that for validation)
FAST_EPOCHS = 10
FAST_TEST_PER_CLASS = 50
NOTEBOOK_TIMEOUT_S = 3600  # per cell


# --- data and the course's training run ----------------------------------------------------------


def has_dataset(root: Path) -> bool:
    """True when ``root`` holds a dataset with images in at least two class folders."""
    try:
        find_dataset(root).train()
    except CatdogError:
        return False
    return True


def course_data_root(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """The photos to use and whether they are synthetic.

    ``config.data_root(data_dir)`` when it holds a dataset; otherwise the SYNTHETIC set (made on first
    use in ``data/synthetic-cats-vs-dogs``), announced loudly, never silently.
    """
    root = data_root(data_dir)
    if has_dataset(root):
        return root, False
    make_synthetic_dataset(SYNTHETIC_ROOT)
    rule = "!" * 78
    print(f"{rule}\nSYNTHETIC data (no real photos found in {root}): using generated shapes in {SYNTHETIC_ROOT}.\n"
          "'cats' are warm-coloured blobs and stripes, 'dogs' cool-coloured checkerboards and rings;\n"
          "accuracies below say nothing about real photos. Get the photos with `catdog data download`\n"
          f"(notebook 01) or point CATDOG_DATA_DIR at them.\n{rule}")
    return SYNTHETIC_ROOT, True


def folder_tree(root: Path, files_per_folder: int = 3) -> str:
    """The folders under ``root`` as an indented tree, showing a few files of each."""
    lines = [f"{root}/"]

    def walk(folder: Path, depth: int) -> None:
        entries = sorted((p for p in folder.iterdir() if not is_hidden_or_junk(p)), key=natural_key)
        folders = [p for p in entries if p.is_dir()]
        files = [p for p in entries if not p.is_dir()]
        indent = "    " * depth
        for sub in folders:
            lines.append(f"{indent}{sub.name}/")
            walk(sub, depth + 1)
        lines.extend(f"{indent}{p.name}" for p in files[:files_per_folder])
        if len(files) > files_per_folder:
            lines.append(f"{indent}... ({len(files) - files_per_folder} more files)")

    walk(Path(root), 1)
    return "\n".join(lines)


def save_course_split(split: Split, path: Path = COURSE_SPLIT) -> Path:
    """Keep notebook 01's train/valid split for the notebooks after it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    split.save(path)
    return path


def course_split(root: Path, path: Path = COURSE_SPLIT) -> Split:
    """The split notebook 01 saved for the data in ``root``; if 01 has not split this data, the tutorial's
    (80/20, seed 42), made and saved now so that every notebook also runs on its own."""
    if path.is_file():
        split = Split.load(path)
        if Path(split.root).resolve() == find_dataset(root).train().root.resolve():
            return split
    split = stratified_split(find_dataset(root).train())
    print(f"notebook 01 has not split {root} yet: using the tutorial's stratified 80/20 split (seed 42).")
    save_course_split(split, path)
    return split


def fresh_course_run(run: Path = COURSE_RUN) -> Path:
    """Remove a previous course run so that training really starts from scratch."""
    if run.exists():
        shutil.rmtree(run)
        print(f"removed the previous course run in {run}")
    return run


def _mismatch(run: Path, root: Path) -> str | None:
    """Why the course run in ``run`` does not fit data ``root`` and the current mode, or None if it does."""
    best = run / "best.pt"
    if not best.is_file():
        return "there is none"
    try:
        config = json.loads((run / "metrics.json").read_text())["config"]
    except (OSError, ValueError, KeyError):
        return "its metrics.json is missing"
    if Path(config["data"]).resolve() != Path(root).resolve():
        return f"it was trained on other data ({config['data']})"
    if config.get("per_class") != (FAST_PER_CLASS if fast_mode() else None):
        return "it was trained in the other mode (fast vs full)"
    if config.get("valid_fraction") != course_split(root).valid_fraction:
        return "it was trained on another train/valid split than notebook 01 made"
    return None


def ensure_course_checkpoint(data: Path | None = None, run: Path = COURSE_RUN) -> Path:
    """The best checkpoint notebook 04 trained on ``data`` (default: the course's data).

    Trains one the same way (default hyperparameters, fast mode honoured) if it is missing, or was
    trained on other data or in the other mode, so that a notebook needing it also runs on its own.
    """
    root = data or course_data_root()[0]
    best = run / "best.pt"
    reason = _mismatch(run, root)
    if reason is None:
        print(f"using the checkpoint notebook 04 trained: {best}")
        return best
    print(f"No course checkpoint for {root} in {run} ({reason}): training one now, as notebook 04 does.")
    fresh_course_run(run)
    fast = fast_mode()
    train(TrainConfig(data=str(root), out=str(run), arch=DEFAULT_ARCH, epochs=FAST_EPOCHS if fast else 40,
                      valid_fraction=course_split(root).valid_fraction, per_class=FAST_PER_CLASS if fast else None))
    return best


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """How many parameter values will learn (``requires_grad``) and how many are frozen."""
    counts = {"trainable": 0, "frozen": 0}
    for parameter in model.parameters():
        counts["trainable" if parameter.requires_grad else "frozen"] += parameter.numel()
    return counts


def evaluation_samples(root: Path, classes: list[str]) -> list[Sample]:
    """The test images, labelled by the checkpoint's ``classes``; the first few per class in fast mode."""
    samples = match_classes(evaluation_folders(root), classes)
    return subset_per_class(samples, FAST_TEST_PER_CLASS) if fast_mode() else samples


def write_evaluation(result: Evaluation, root: Path, synthetic: bool, checkpoint: Path,
                     run: Path = COURSE_RUN) -> Path:
    """Save notebook 05's results (with the data and checkpoint they came from) as ``evaluation.json``."""
    path = run / "evaluation.json"
    atomic_write_text(path, json.dumps({**result.summary(), "data": str(root), "synthetic": synthetic,
                                "checkpoint": str(checkpoint), "checkpoint_sha1": file_digest(checkpoint),
                                "fast": fast_mode()}, indent=1))
    return path


# --- running the notebooks -----------------------------------------------------------------------


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
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import (
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=NOTEBOOK_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.perf_counter()
    error = None
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
        error = failed_cell(nb) if not isinstance(exc, DeadKernelError) else f"the kernel died ({exc})"
    seconds = time.perf_counter() - started
    nbformat.write(nb, out_dir / path.name)
    html, _ = HTMLExporter().from_notebook_node(nb)
    (out_dir / path.with_suffix(".html").name).write_text(html, encoding="utf-8")
    return NotebookRun(path.name, seconds, error)


def check_training(run: Path, since: float) -> str | None:
    """Why the training notebook did not really train (metrics.json stale, missing or 0 epochs), or None."""
    metrics = run / "metrics.json"
    if not metrics.is_file() or metrics.stat().st_mtime < since:
        return f"it did not train: {metrics} was not written during this run"
    if json.loads(metrics.read_text()).get("epochs_run", 0) <= 0:
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


def _data_lines(root: Path, synthetic: bool) -> list[str]:
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
    return json.loads(path.read_text())


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


def run_course(fast: bool, out: Path | None, notebooks: Sequence[Path] | None = None,
               course_run: Path = COURSE_RUN) -> int:
    """Execute the notebooks in order, stopping at the first failure; 0 when all ran and notebook 04 trained."""
    fast = fast or fast_mode()
    out = Path(out) if out else runs_dir() / datetime.now().strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    paths = [Path(p) for p in notebooks] if notebooks is not None else [NOTEBOOK_DIR / n for n in NOTEBOOKS]
    since = time.time() - 1  # file times may be rounded down a little
    print(f"course run into {out} ({'fast mode' if fast else 'full course'})")
    with _environment(FAST_ENV, "1" if fast else None):
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
    lines = [f"course run {out} ({'fast mode' if fast else 'full course'})", *_data_lines(root, synthetic),
             *_result_lines(course_run, since), "notebooks:"]
    for result in runs:
        status = f"FAILED: {result.error}" if result.error else "ok"
        lines.append(f"  {result.name:<28} {result.seconds:7.1f} s  {status}")
    lines.extend(f"  {path.name:<28}       -    not run" for path in paths[len(runs):])
    failed = any(result.error for result in runs)
    lines.append(f"total {sum(r.seconds for r in runs):.1f} s; " + ("FAILED" if failed else "all notebooks ran"))
    summary = "\n".join(lines)
    (out / "summary.txt").write_text(summary + "\n")
    print(summary)
    return 1 if failed else 0
