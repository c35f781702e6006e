"""`catdog data check`: find every image that would break or skew training, before training."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..files import file_digest
from .images import BadImageError, image_problem
from .layout import ClassFolders, find_dataset, read_class_folders


@dataclass
class CheckReport:
    """Counts per split and class, and every problem found (one line per file)."""

    root: Path
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)

    def format(self) -> str:
        lines = [f"dataset {self.root}"]
        for split, per_class in self.counts.items():
            total = sum(per_class.values())
            lines.append(f"  {split}: {total} images (" + ", ".join(f"{k} {v}" for k, v in per_class.items()) + ")")
        if self.unused:
            lines.append(f"{len(self.unused)} file(s) or folder(s) not used:")
            lines.extend(f"  {line}" for line in self.unused)
        if self.problems:
            lines.append(f"{len(self.problems)} problem(s):")
            lines.extend(f"  {problem}" for problem in self.problems)
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def check_folders(folders: ClassFolders, split: str, report: CheckReport, seen: dict[str, Path]) -> None:
    """Decode every image fully; record bad files and byte-identical duplicates (across splits too)."""
    good: dict[str, int] = defaultdict(int)
    for name in folders.classes:
        for path in folders.files[name]:
            problem = image_problem(path)
            if problem:
                report.problems.append(problem)
                continue
            try:
                digest = file_digest(path)  # streamed; a file swapped for a FIFO since is refused, never waited on
            except (BadImageError, OSError) as error:
                report.problems.append(f"{path}: changed while checked ({error})")
                continue
            if digest in seen:
                report.problems.append(f"{path}: duplicate of {seen[digest]} (same content)")
            else:
                seen[digest] = path
            good[name] += 1
    report.counts[split] = {name: good[name] for name in folders.classes}
    report.unused.extend(f"{path}: {why}" for path, why in folders.unused)
    report.problems.extend(f"{folders.root}: class {name} has no readable photo; training would learn nothing "
                           "about it" for name in folders.classes if not good[name])


def check_dataset(root: Path) -> CheckReport:
    """Check a dataset root (train and test splits) or a plain class-folder root."""
    layout = find_dataset(root)
    report = CheckReport(Path(root))
    seen: dict[str, Path] = {}
    report.unused.extend(f"{path}: {why}" for path, why in layout.unused())
    check_folders(read_class_folders(layout.train_dir, min_classes=1), "train", report, seen)
    if layout.test_dir is not None:
        check_folders(read_class_folders(layout.test_dir, min_classes=1), "test", report, seen)
    return report
