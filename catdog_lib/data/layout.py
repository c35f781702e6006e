"""Find a cats-vs-dogs dataset on disk, whatever its shape, and list its labelled images.

Accepted shapes under a root:
- the Kaggle archive's own nesting: ``training_set/training_set/{cats,dogs}``, ``test_set/test_set/...``
- the same without the doubled folder: ``training_set/{cats,dogs}``, ``test_set/...`` (any case: ``Train/``)
- a plain class-folder root: ``cats/``, ``dogs/`` (any case, any script; ``cat``/``dog`` too; any two or
  more classes); photos in sub-folders of a class folder (``cats/persian/``) belong to that class
- the Kaggle *competition* layout: ``train/cat.0.jpg``, ``train/dog.0.jpg`` (labels from the prefix)
"""

from __future__ import annotations

import os
import re
import unicodedata
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CatdogError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                    ".heic", ".heif", ".avif"}
SPLIT_NAMES = {"train": ("training_set", "train"), "test": ("test_set", "test")}
# Folder names that hold a split of a dataset, never a class.
SPLIT_LIKE = {"training_set", "train", "training", "test_set", "test", "test1", "testing", "valid",
              "validation", "val", "dev"}
# What macOS, Windows and Jupyter leave behind (besides any name starting with a dot, e.g. ._IMG_1.JPG).
JUNK_NAMES = {"_ds_store", "__macosx", "__pycache__", "thumbs.db", "ehthumbs.db", "desktop.ini"}
PREFIX_LABEL = re.compile(r"^([^\W\d_][^.]*)\.\d+\.[^.]+$")  # cat.123.jpg -> cat
Sample = tuple[Path, int]
Unused = tuple[Path, str]  # (path, why it is not used)


def is_hidden_or_junk(path: Path) -> bool:
    """Files and folders that tools leave behind: .DS_Store, ._IMG.JPG, _DS_Store, __MACOSX, Thumbs.db.

    Other names starting with ``_`` are real photos (cameras name them ``_DSC0012.JPG``, ``_MG_4021.JPG``).
    """
    return path.name.startswith(".") or path.name.lower() in JUNK_NAMES


def is_image_file(path: Path) -> bool:
    """An image by its name: a known extension in any case, not a hidden or junk file."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden_or_junk(path) and path.is_file()


def canonical_class(name: str) -> str:
    """The class a folder name stands for: 'Cats', 'cat', 'CAT' -> 'cat'; '고양이' -> '고양이'.

    Unicode-normalised (NFKC) and case-folded; letters and digits of every script are kept.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    key = "".join(char for char in folded if char.isalnum()) or folded
    return key[:-1] if key.endswith("s") and len(key) > 1 else key


def _natural(text: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text)]


def natural_key(path: Path) -> list:
    """Sort cat.2.jpg before cat.10.jpg (numbers by value, text by text)."""
    return _natural(path.name)


def _walk(folder: Path) -> tuple[list[Path], list[Unused]]:
    """Image files under ``folder`` and its sub-folders (junk skipped), and the other files found there."""
    images, unused = [], []
    for top, dirs, names in os.walk(folder):
        dirs[:] = [name for name in dirs if not is_hidden_or_junk(Path(name))]
        for name in names:
            path = Path(top) / name
            if is_hidden_or_junk(path):
                continue
            if path.suffix.lower() in IMAGE_EXTENSIONS:
                images.append(path)
            else:
                unused.append((path, f"not used: {path.suffix or 'no extension'} is not a photo format "
                                     "(rename it if it is a photo)"))
    images.sort(key=lambda path: _natural(path.relative_to(folder).as_posix()))
    return images, unused


@dataclass(frozen=True)
class ClassFolders:
    """A folder whose subfolders are classes: sorted class names, their image files, and what is not used."""

    root: Path
    classes: list[str]
    files: dict[str, list[Path]]
    unused: list[Unused] = field(default_factory=list)

    @property
    def samples(self) -> list[Sample]:
        """(path, label) pairs in ImageFolder order: classes sorted, files sorted by name."""
        return [(path, label) for label, name in enumerate(self.classes) for path in self.files[name]]

    def counts(self) -> dict[str, int]:
        return {name: len(self.files[name]) for name in self.classes}


def _prefix_classes(folder: Path) -> dict[str, list[Path]] | None:
    """The Kaggle competition layout (``cat.0.jpg``, ``dog.0.jpg`` side by side): files by name prefix."""
    loose = sorted((p for p in folder.iterdir() if is_image_file(p)), key=natural_key)
    labels = [PREFIX_LABEL.match(path.name) for path in loose]
    if not loose or not all(labels):
        return None
    files: dict[str, list[Path]] = defaultdict(list)
    for path, match in zip(loose, labels):
        files[match.group(1).lower()].append(path)
    return dict(files) if len(files) >= 2 else None


def read_class_folders(root: Path, min_classes: int = 2) -> ClassFolders:
    """Read a class-folder root (or a folder of ``cat.N.jpg``/``dog.N.jpg``). Junk is ignored; other
    files that cannot be used are listed in ``unused``."""
    root = Path(root)
    if not root.exists():
        raise CatdogError(f"{root}: no such folder. Pass an existing data folder or set CATDOG_DATA_DIR.")
    if not root.is_dir():
        raise CatdogError(f"{root}: is a file, not a folder. Pass the folder that holds the class folders.")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden_or_junk(p))
    by_prefix = None if folders else _prefix_classes(root)
    if by_prefix:
        return ClassFolders(root=root, classes=sorted(by_prefix), files=by_prefix)
    splits = [f.name for f in folders if f.name.lower() in SPLIT_LIKE]
    if splits:
        raise CatdogError(
            f"{root}: {', '.join(splits)} look like parts of a dataset (train/test), not classes, but hold no "
            "class folders. Put each split's photos in one folder per class (train/cats, train/dogs), or name "
            "the photos cat.N.jpg and dog.N.jpg."
        )
    files, unused = {}, []
    for folder in folders:
        files[folder.name], extra = _walk(folder)
        unused.extend(extra)
    unused.extend((p, "not used: not inside a class folder") for p in sorted(root.iterdir())
                  if p.is_file() and not is_hidden_or_junk(p))
    empty = [name for name, paths in files.items() if not paths]
    if empty:
        raise CatdogError(
            f"{root}: class folder(s) {', '.join(empty)} hold no images. "
            f"Put that class's photos in them, or point --data at a folder that holds only class folders."
        )
    if len(files) < min_classes:
        found = ", ".join(files) or "none"
        raise CatdogError(
            f"{root}: found {len(files)} class folder(s) ({found}); need at least {min_classes}, "
            "one folder of images per class (e.g. cats/ and dogs/)."
        )
    return ClassFolders(root=root, classes=sorted(files), files=files, unused=unused)


def _has_images(folder: Path) -> bool:
    return any(_walk(folder)[0])


def _has_class_folders(path: Path) -> bool:
    return path.is_dir() and (
        any(sub.is_dir() and not is_hidden_or_junk(sub) and _has_images(sub) for sub in path.iterdir())
        or _prefix_classes(path) is not None
    )


def _child(folder: Path, name: str) -> Path | None:
    """``folder``'s sub-folder called ``name`` in any case (Train/, TRAIN/, train/)."""
    if not folder.is_dir():
        return None
    return next((p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() == name), None)


def _split_dir(root: Path, split: str) -> Path | None:
    for name in SPLIT_NAMES[split]:
        outer = _child(root, name)
        if outer is None:
            continue
        for candidate in (_child(outer, name), outer):
            if candidate is not None and _has_class_folders(candidate):
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

    def unused(self) -> list[Unused]:
        """Folders and files beside the train and test splits, which nothing reads (e.g. Kaggle's test1/)."""
        if self.train_dir == self.root:
            return []
        used = {self.train_dir, *([self.test_dir] if self.test_dir else [])}
        return [(p, "not used: not a train or test split with class labels") for p in sorted(self.root.iterdir())
                if not is_hidden_or_junk(p) and not any(p == u or p in u.parents for u in used)]


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


def _refuse_ambiguous(names: list[str], what: str) -> None:
    by_key: dict[str, list[str]] = defaultdict(list)
    for name in names:
        by_key[canonical_class(name)].append(name)
    clashes = [group for group in by_key.values() if len(group) > 1]
    if clashes:
        raise CatdogError(
            f"{what} {' and '.join(', '.join(group) for group in clashes)} stand for the same class "
            "(compared ignoring case, Unicode form, punctuation and a plural s). Merge or rename them."
        )


def match_classes(folders: ClassFolders, classes: list[str]) -> list[Sample]:
    """Relabel ``folders`` by the checkpoint's ``classes``, matching names (cats/Cat/cat, 고양이), not order."""
    _refuse_ambiguous(classes, "the checkpoint's classes")
    _refuse_ambiguous(folders.classes, f"{folders.root}: folders")
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
