"""The notebooks' helpers: the course's data (real or loudly synthetic), its split, its training run
and its evaluation file, shared by the six notebooks. Running the notebooks is ``runner.py``'s job."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from .. import config
from ..config import DATA_ENV, data_root, fast_mode
from ..data.layout import (
    Sample,
    evaluation_folders,
    find_dataset,
    is_hidden_or_junk,
    match_classes,
    natural_key,
)
from ..data.split import Split, stratified_split, subset_per_class
from ..data.synthetic import make_synthetic_dataset
from ..errors import CatdogError
from ..files import atomic_write_text, file_digest
from ..infer.evaluation import Evaluation
from ..model.backbones import DEFAULT_ARCH
from ..train.runlock import LOCK, MARKER, RunFolderBusy, claim_run_folder, run_owner
from ..train.training import TrainConfig, train

COURSE_RUN = config.runs_dir() / "course"  # notebook 04 trains here; 05 and 06 read it
COURSE_SPLIT = config.runs_dir() / "course-split.json"  # notebook 01 splits the data; 02-06 use its split
SYNTHETIC_ROOT = config.data_dir() / "synthetic-cats-vs-dogs"
FAST_PER_CLASS = 60  # fast mode: training photos per class (and a quarter of that for validation)
FAST_EPOCHS = 10
FAST_FINETUNE_EPOCHS = 2  # fast mode: most epochs of notebook 04's fine-tuning
FAST_CURVE_SEEDS = 2  # fast mode: seeds per size of notebook 04's learning curve
FAST_WHOLE_PER_CLASS = 10  # fast mode: training photos per class of notebook 04's whole-network comparison
FAST_TEST_PER_CLASS = 50


# --- data and the course's training run ----------------------------------------------------------


def fast_cap(name: str, value: int, cap: int) -> int:
    """``value``, or ``cap`` in fast mode when it is smaller, said in one printed line (a parameter that fast
    mode shrinks never loses its meaning silently)."""
    if fast_mode() and value > cap:
        print(f"fast mode: {name} {value} capped at {cap}")
        return cap
    return value


def has_dataset(root: Path) -> bool:
    """True when ``root`` holds a dataset with images in at least two class folders."""
    try:
        find_dataset(root).train()
    except CatdogError:
        return False
    return True


def course_data_root(data_dir: str | os.PathLike | None = None) -> tuple[Path, bool]:
    """The photos to use and whether they are synthetic.

    ``config.data_root(data_dir)`` when it holds a dataset. A data folder that was given (``data_dir``,
    $CATDOG_DATA_DIR) or that exists (``data/cat-and-dog``) but holds no usable dataset is an error naming
    the folder and what it lacks: nobody should believe they trained on their photos. Only without either,
    the SYNTHETIC set (made on first use in ``data/synthetic-cats-vs-dogs``), announced loudly.
    """
    root = data_root(data_dir)
    given = "DATA_DIR" if data_dir else DATA_ENV if os.environ.get(DATA_ENV, "").strip() else None
    if given or root.exists():
        try:
            find_dataset(root).train()
        except CatdogError as error:
            source = ("The data folder is DATA_DIR (parameters cell): point it at a dataset, or set it to None "
                      "for the course's data." if given == "DATA_DIR" else
                      f"The data folder is ${DATA_ENV}: point it at a dataset, or unset it for the course's data."
                      if given else "It is the course's data folder: finish getting the photos (`catdog data "
                      "download`), or remove the folder to run on synthetic data.")
            raise CatdogError(f"{error} {source}") from None
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


def _course_split_file(root: Path, path: Path = COURSE_SPLIT) -> Path:
    """Notebook 01's saved split of ``root`` (made now if it has none), for ``TrainConfig.split_file``."""
    course_split(root, path)
    return path


def fresh_course_run(run: Path = COURSE_RUN) -> Path:
    """Empty a previous course run so that training really starts from scratch.

    The run folder is locked first and stays locked by this process (notebook 04's kernel) while it trains
    there; its lock file is kept, so that another course's fresh start cannot delete the run meanwhile.
    """
    try:
        claim_run_folder(run, None, resume=False)
    except RunFolderBusy:
        raise CatdogError(f"{run}: another course (process {run_owner(run)}) is training in this folder; "
                          "its run was left alone. Wait for it to finish, then run this notebook again.") from None
    previous = [entry for entry in run.iterdir() if entry.name not in {LOCK, MARKER}]
    for entry in previous:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    if previous:
        print(f"removed the previous course run in {run}")
    return run


def _mismatch(run: Path, root: Path) -> str | None:
    """Why the course run in ``run`` does not fit data ``root`` and the current mode, or None if it does."""
    best = run / "best.pt"
    if not best.is_file():
        return "there is none"
    try:
        config = json.loads((run / "metrics.json").read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError):
        return "its metrics.json is missing"
    if Path(config["data"]).resolve() != Path(root).resolve():
        return f"it was trained on other data ({config['data']})"
    if config.get("per_class") != (FAST_PER_CLASS if fast_mode() else None):
        return "it was trained in the other mode (fast vs full)"
    valid = {str(path) for path, _ in course_split(root).valid}
    try:
        trained_on = {str(path) for path, _ in Split.load(run / "split.json").train}
    except CatdogError:
        return "its split.json is missing"
    if not trained_on.isdisjoint(valid):
        return "it was trained on photos of notebook 01's validation split"
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
                      split_file=str(_course_split_file(root)), per_class=FAST_PER_CLASS if fast else None))
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
