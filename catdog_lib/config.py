"""Where things live: the data root, caches, run folders, and the course's fast mode.

Everything the course writes goes under the *course folder*: ``$CATDOG_HOME`` when set, else the
working folder (its parent when that is a checkout's ``notebooks/`` folder, ``notebooks/ko/``'s grandparent, so a notebook opened
in JupyterLab and ``make run`` share one ``data/`` and ``runs/``). Nothing is written inside the
installed package.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "CATDOG_HOME"
DATA_ENV = "CATDOG_DATA_DIR"
CACHE_ENV = "CATDOG_CACHE_DIR"
RUNS_ENV = "CATDOG_RUNS_DIR"
FAST_ENV = "CATDOG_FAST"
# The checkout this module lives in; for development tools only (benchmarks), never a runtime default.
REPO_ROOT = Path(__file__).resolve().parent.parent
PACKAGE_DIR = Path(__file__).resolve().parent
NOTEBOOK_NAMES = (
    "01_download_data.ipynb",
    "02_visualize_data.ipynb",
    "03_augmentation.ipynb",
    "04_transfer_learning.ipynb",
    "05_evaluate.ipynb",
    "06_save_and_load.ipynb",
)
# The course's editions: the English notebooks, and the Korean ones (한국어판) generated from them in notebooks/ko/.
LANGUAGES = {"en": "", "ko": "ko"}


def _from_env(name: str) -> Path | None:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().absolute() if value else None


def home() -> Path:
    """The course folder: $CATDOG_HOME, else the working folder (its parent inside a course's notebooks/)."""
    chosen = _from_env(HOME_ENV)
    if chosen:
        return chosen
    here = Path.cwd()
    if here.name == "ko" and here.parent.name == "notebooks" and (here / NOTEBOOK_NAMES[0]).is_file():
        return here.parent.parent  # the Korean edition's folder shares the course folder with the English one
    if here.name == "notebooks" and (here / NOTEBOOK_NAMES[0]).is_file():
        return here.parent
    return here


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: the argument, else $CATDOG_DATA_DIR, else `data/cat-and-dog` in the course folder."""
    if root:
        return Path(root).expanduser()
    return _from_env(DATA_ENV) or home() / "data" / "cat-and-dog"


def data_dir() -> Path:
    """Where downloads and generated data go: the folder holding the default dataset root."""
    return home() / "data"


def cache_dir() -> Path:
    """Where extracted features are cached: $CATDOG_CACHE_DIR, else `data/cache` in the course folder."""
    return _from_env(CACHE_ENV) or home() / "data" / "cache"


def runs_dir() -> Path:
    """Where run folders go: $CATDOG_RUNS_DIR, else `runs` in the course folder."""
    return _from_env(RUNS_ENV) or home() / "runs"


def notebook_dir(lang: str = "en") -> Path:
    """The course notebooks in ``lang`` (a key of LANGUAGES): a checkout's `notebooks/` (`notebooks/ko/`), else the
    copies installed with the package."""
    checkout = REPO_ROOT / "notebooks"
    return (checkout if (checkout / NOTEBOOK_NAMES[0]).is_file() else PACKAGE_DIR / "notebooks") / LANGUAGES[lang]


def fast_mode() -> bool:
    """True when CATDOG_FAST=1: the course uses a small real subset and few epochs."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}

