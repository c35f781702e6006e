"""Find a cats-vs-dogs dataset on disk, whatever its shape, and list its labelled images.

Accepted shapes under a root:
- the Kaggle archive's own nesting: ``training_set/training_set/{cats,dogs}``, ``test_set/test_set/...``
- the same without the doubled folder: ``training_set/{cats,dogs}``, ``test_set/...``
- a plain class-folder root: ``cats/``, ``dogs/`` (any case; ``cat``/``dog`` too; any two or more classes)
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from .errors import CatdogError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLIT_NAMES = {"train": ("training_set", "train"), "test": ("test_set", "test")}
Sample = tuple[Path, int]


def is_hidden_or_junk(path: Path) -> bool:
    """Folders and files that tools leave behind: .DS_Store, _DS_Store, __MACOSX, Thumbs.db."""
    return path.name.startswith((".", "_")) or path.name.lower() in {"thumbs.db", "desktop.ini"}


def is_image_file(path: Path) -> bool:
    """An image by its name: a known extension in any case, not a hidden or junk file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden_or_junk(path) and path.is_file()


def canonical_class(name: str) -> str:
    """The class a folder name stands for: 'Cats', 'cat', 'CAT' -> 'cat'."""
    key = re.sub(r"[^a-z0-9]", "", name.lower())
    return key[:-1] if key.endswith("s") and len(key) > 1 else key


def natural_key(path: Path) -> list:
    """Sort cat.2.jpg before cat.10.jpg (numbers by value, text by text)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", path.name)]


@dataclass(frozen=True)
class ClassFolders:
    """A folder whose subfolders are classes: sorted class names and their image files."""

    root: Path
    classes: list[str]
    files: dict[str, list[Path]]

    @property
    def samples(self) -> list[Sample]:
        """(path, label) pairs in ImageFolder order: classes sorted, files sorted by name."""
        return [(path, label) for label, name in enumerate(self.classes) for path in self.files[name]]

    def counts(self) -> dict[str, int]:
        return {name: len(self.files[name]) for name in self.classes}


def read_class_folders(root: Path, min_classes: int = 2) -> ClassFolders:
    """Read a class-folder root. Hidden or junk folders and files nested inside classes are ignored."""
    root = Path(root)
    if not root.exists():
        raise CatdogError(f"{root}: no such folder. Pass an existing data folder or set CATDOG_DATA_DIR.")
    if not root.is_dir():
        raise CatdogError(f"{root}: is a file, not a folder. Pass the folder that holds the class folders.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden_or_junk(p))
    files = {f.name: sorted((p for p in f.iterdir() if is_image_file(p)), key=natural_key) for f in folders}
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise CatdogError(
            f"{root}: class folder(s) {', '.join(empty)} hold no images. "
            "Put images in them or remove them."
        )
    if len(files) < min_classes:
        found = ", ".join(files) or "none"
        raise CatdogError(
            f"{root}: found {len(files)} class folder(s) ({found}); need at least {min_classes}, "
            "one folder of images per class (e.g. cats/ and dogs/)."
        )
    return ClassFolders(root=root, classes=sorted(files), files=files)


def _has_class_folders(path: Path) -> bool:
    return path.is_dir() and any(
        sub.is_dir() and not is_hidden_or_junk(sub) and any(is_image_file(p) for p in sub.iterdir())
        for sub in path.iterdir()
    )


def _split_dir(root: Path, split: str) -> Path | None:
    for name in SPLIT_NAMES[split]:
        for candidate in (root / name / name, root / name):
            if _has_class_folders(candidate):
                return candidate
    return None


@dataclass(frozen=True)
class DatasetLayout:
    """Where the training and (optional) test class folders of a dataset root are."""

    root: Path
    train_dir: Path
    test_dir: Path | None

    def train(self) -> ClassFolders:
        return read_class_folders(self.train_dir)

    def test(self) -> ClassFolders:
        if self.test_dir is None:
            raise CatdogError(f"{self.root}: no test_set folder. Evaluate on a class-folder root instead.")
        return read_class_folders(self.test_dir)


def find_dataset(root: Path) -> DatasetLayout:
    """Locate the train (and test) class folders under ``root`` in any accepted shape."""
    root = Path(root)
    if not root.exists():
        raise CatdogError(
            f"{root}: no such folder. Download data with `catdog data download`, "
            "or point CATDOG_DATA_DIR (or --data) at a folder of cats/ and dogs/."
        )
    if not root.is_dir():
        raise CatdogError(f"{root}: is a file, not a folder. Pass the dataset's folder.")
    train_dir = _split_dir(root, "train")
    test_dir = _split_dir(root, "test")
    # No train split: the root itself is a class-folder root (read_class_folders explains what is wrong).
    return DatasetLayout(root=root, train_dir=train_dir or root, test_dir=test_dir)


def evaluation_folders(root: Path) -> ClassFolders:
    """The folders to evaluate on: a dataset's test split, else the root as a class-folder root.

    A dataset with a training split but no test split is refused: evaluating on the photos a model
    was trained on would overstate its accuracy.
    """
    layout = find_dataset(root)
    if layout.test_dir is not None:
        return read_class_folders(layout.test_dir, min_classes=1)
    if layout.train_dir != layout.root:
        raise CatdogError(
            f"{root}: has a training split ({layout.train_dir.name}) but no test_set. Evaluate on a test "
            "folder or a class-folder root of photos the model was not trained on."
        )
    return read_class_folders(layout.train_dir, min_classes=1)


def match_classes(folders: ClassFolders, classes: list[str]) -> list[Sample]:
    """Relabel ``folders`` by the checkpoint's ``classes``, matching names (cats/Cat/cat), not order."""
    wanted = {canonical_class(name): index for index, name in enumerate(classes)}
    samples: list[Sample] = []
    unmatched = []
    for name in folders.classes:
        label = wanted.get(canonical_class(name))
        if label is None:
            unmatched.append(name)
            continue
        samples.extend((path, label) for path in folders.files[name])
    if not samples:
        raise CatdogError(
            f"{folders.root}: none of its class folders ({', '.join(folders.classes)}) match the "
            f"checkpoint's classes ({', '.join(classes)}). Rename the folders to the class names."
        )
    if unmatched:
        warnings.warn(f"{folders.root}: ignoring folders that match no class: {', '.join(unmatched)}", stacklevel=2)
    return samples
