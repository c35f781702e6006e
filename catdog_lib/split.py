"""The tutorial's stratified 80/20 train/valid split, reproducible and saved as a manifest."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sklearn.model_selection import train_test_split

from .checkpoint import atomic_write_text
from .errors import CatdogError
from .layout import ClassFolders, Sample


@dataclass(frozen=True)
class Split:
    """Train and valid samples drawn from one class-folder root."""

    root: Path
    classes: list[str]
    train: list[Sample]
    valid: list[Sample]
    valid_fraction: float = 0.2
    seed: int = 42

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each part, e.g. {"train": {"cats": 800, ...}, "valid": {...}}."""
        return {
            part: {self.classes[label]: n for label, n in sorted(Counter(label for _, label in samples).items())}
            for part, samples in (("train", self.train), ("valid", self.valid))
        }

    def to_manifest(self) -> dict:
        def rel(samples: list[Sample]) -> list[list]:
            return [[Path(path).relative_to(self.root).as_posix(), label] for path, label in samples]

        return {
            "root": str(self.root),
            "classes": self.classes,
            "valid_fraction": self.valid_fraction,
            "seed": self.seed,
            "train": rel(self.train),
            "valid": rel(self.valid),
        }

    def save(self, path: Path) -> None:
        atomic_write_text(Path(path), json.dumps(self.to_manifest(), indent=1))

    @classmethod
    def load(cls, path: Path) -> "Split":
        """Read a manifest written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise CatdogError(f"{path}: cannot read split manifest ({error}).") from None
        base = Path(data["root"])

        def absolute(rows: list) -> list[Sample]:
            return [(base / rel, int(label)) for rel, label in rows]

        return cls(base, list(data["classes"]), absolute(data["train"]), absolute(data["valid"]),
                   float(data["valid_fraction"]), int(data["seed"]))


def stratified_split(folders: ClassFolders, valid_fraction: float = 0.2, seed: int = 42) -> Split:
    """Split as the tutorial does: sklearn's train_test_split on indices, stratified, random_state=seed."""
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
    return Split(folders.root, folders.classes, [samples[i] for i in train_idx],
                 [samples[i] for i in valid_idx], valid_fraction, seed)


def subset_per_class(samples: list[Sample], per_class: int) -> list[Sample]:
    """The first ``per_class`` samples of each label (keeps order): the course's fast-mode subset."""
    seen: Counter = Counter()
    kept = []
    for path, label in samples:
        if seen[label] < per_class:
            seen[label] += 1
            kept.append((path, label))
    return kept
