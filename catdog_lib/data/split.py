"""The tutorial's stratified 80/20 train/valid split, reproducible and saved as a manifest."""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sklearn.model_selection import train_test_split

from ..config import DATA_ENV, data_root
from ..errors import CatdogError
from ..files import atomic_write_text
from .images import image_problem
from .layout import ClassFolders, Sample, find_dataset


@dataclass(frozen=True)
class Split:
    """Train and valid samples drawn from one class-folder root (and the files there that are not used)."""

    root: Path
    classes: list[str]
    train: list[Sample]
    valid: list[Sample]
    valid_fraction: float = 0.2
    seed: int = 42
    unused: list[str] = field(default_factory=list)

    def counts(self, skipped: set[str] | frozenset[str] = frozenset()) -> dict[str, dict[str, int]]:
        """Images per class in each part, e.g. {"train": {"cats": 800, ...}, "valid": {...}}, not counting
        the ``skipped`` paths (files that turned out unreadable)."""
        return {
            part: {self.classes[label]: n for label, n in
                   sorted(Counter(label for path, label in samples if str(path) not in skipped).items())}
            for part, samples in (("train", self.train), ("valid", self.valid))
        }

    def to_manifest(self) -> dict:
        """The split as JSON-ready data: the root as an absolute path, the files relative to it."""
        def rel(samples: list[Sample]) -> list[list]:
            return [[Path(path).relative_to(self.root).as_posix(), label] for path, label in samples]

        return {
            "root": str(Path(self.root).resolve()),
            "classes": self.classes,
            "valid_fraction": self.valid_fraction,
            "seed": self.seed,
            "train": rel(self.train),
            "valid": rel(self.valid),
            "unused": self.unused,
        }

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_manifest(), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Split":
        """Read a manifest written by :meth:`save`, from any working folder.

        If its data folder is gone but the one $CATDOG_DATA_DIR names holds the same files, that one is used
        (with one warning); else one clear error.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CatdogError(f"{path}: cannot read split manifest ({error}).") from None
        base = Path(data["root"])
        if not base.is_dir():
            base = _moved_data(path, base, data["train"][0][0] if data["train"] else "")

        def absolute(rows: list) -> list[Sample]:
            return [(base / rel, int(label)) for rel, label in rows]

        return cls(base, list(data["classes"]), absolute(data["train"]), absolute(data["valid"]),
                   float(data["valid_fraction"]), int(data["seed"]), list(data.get("unused", [])))


def _moved_data(manifest: Path, root: Path, first: str) -> Path:
    """Where the data of a split whose ``root`` is gone is now: the data folder named by $CATDOG_DATA_DIR
    (or the default), if its training split holds the split's files."""
    try:
        moved = find_dataset(data_root()).train_dir
    except CatdogError:
        moved = None
    if moved is not None and first and (moved / first).is_file():
        warnings.warn(f"{manifest}: the data folder {root} is gone; using {moved}, which holds the same files",
                      stacklevel=3)
        return moved
    raise CatdogError(
        f"{manifest}: the data folder {root} is gone (moved or deleted). Put it back, or set {DATA_ENV} "
        "to its new place to resume."
    )


def _check_every_class_readable(split: Split) -> None:
    """Refuse a split where a class has no readable photo in a part: it would train or validate on nothing."""
    for part, samples in (("training", split.train), ("validation", split.valid)):
        for label, name in enumerate(split.classes):
            paths = [path for path, sample_label in samples if sample_label == label]
            problems = []
            for path in paths:
                problem = image_problem(path)
                if problem is None:
                    break
                problems.append(problem)
            else:
                raise CatdogError(
                    f"{split.root}: class {name} has no readable photo among its {len(paths)} {part} photos "
                    f"(e.g. {problems[0] if problems else 'none'}). Replace them; `catdog data check` lists them all."
                )


def stratified_split(folders: ClassFolders, valid_fraction: float = 0.2, seed: int = 42) -> Split:
    """Split as the tutorial does: sklearn's train_test_split on indices, stratified, random_state=seed.

    A class with no readable photo in either part is refused with one line.
    """
    samples = folders.samples
    labels = [label for _, label in samples]
    try:
        train_idx, valid_idx = train_test_split(
            range(len(samples)), stratify=labels, test_size=valid_fraction, random_state=seed
        )
    except ValueError as error:
        raise CatdogError(
            f"{folders.root}: too few images to split {valid_fraction:.0%} off for validation "
            f"with every class in both parts ({error}). Add images."
        ) from None
    split = Split(folders.root, folders.classes, [samples[i] for i in train_idx],
                  [samples[i] for i in valid_idx], valid_fraction, seed,
                  [f"{path}: {why}" for path, why in folders.unused])
    _check_every_class_readable(split)
    return split


def subset_per_class(samples: list[Sample], per_class: int) -> list[Sample]:
    """The first ``per_class`` samples of each label (keeps order): the course's fast-mode subset."""
    seen: Counter = Counter()
    kept = []
    for path, label in samples:
        if seen[label] < per_class:
            seen[label] += 1
            kept.append((path, label))
    return kept
