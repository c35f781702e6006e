"""Where things live: the data root, caches, run folders, and the course's fast mode."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ENV = "CATDOG_DATA_DIR"
FAST_ENV = "CATDOG_FAST"
CACHE_ENV = "CATDOG_CACHE_DIR"
RUNS_ENV = "CATDOG_RUNS_DIR"


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The dataset root: the argument, else $CATDOG_DATA_DIR, else `data/cat-and-dog` in the repo."""
    if root:
        return Path(root).expanduser()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser()
    return REPO_ROOT / "data" / "cat-and-dog"


def cache_dir() -> Path:
    """Where extracted features are cached: $CATDOG_CACHE_DIR, else `data/cache` in the repo."""
    return Path(os.environ.get(CACHE_ENV) or REPO_ROOT / "data" / "cache").expanduser()


def fast_mode() -> bool:
    """True when CATDOG_FAST=1: the course uses a small real subset and few epochs."""
    return os.environ.get(FAST_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def runs_dir() -> Path:
    """Where the course's runs go: $CATDOG_RUNS_DIR, else `runs` in the repo."""
    return Path(os.environ.get(RUNS_ENV) or REPO_ROOT / "runs").expanduser()
