"""The run folder of `catdog train`: only a new, empty or catdog run folder, and one run at a time in it."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # filelock warns where it falls back to a lock file (no fcntl, not Windows)
    from filelock import FileLock, Timeout

from .errors import CatdogError

MARKER = ".catdog-run"  # created in every run folder; holds the process id of the run using it
LOCK = ".catdog-run.lock"  # the file the run's lock is taken on (flock on POSIX, msvcrt on Windows)

_held: dict[Path, "RunLock"] = {}


class RunLock:
    """An exclusive lock on a run folder (``filelock``: portable), released by :meth:`release` or on exit."""

    def __init__(self, folder: Path, lock: FileLock):
        self.folder, self.lock = folder, lock

    def release(self) -> None:
        if self.lock.is_locked:
            self.lock.release(force=True)
            _held.pop(self.folder, None)


def check_run_folder(out: str | Path, data: str | Path | None, resume: bool) -> Path:
    """Refuse an ``--out`` that would overwrite or mix in files that are not this run's.

    Allowed: a new folder, an empty one, or a catdog run folder (resumed, or restarted after it failed
    before its first epoch). Refused: '' (the working folder), a folder of other files, a folder inside
    the data folder (its files would be read as photos), and a file.
    """
    if not str(out).strip():
        raise CatdogError("--out is empty. Name a folder for the run, e.g. --out runs/my-run.")
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CatdogError(f"{folder}: is a file, not a folder. Choose a new --out folder.")
    if data and not resume:
        data_dir = Path(data).expanduser().resolve()
        if folder.resolve() == data_dir or data_dir in folder.resolve().parents:
            raise CatdogError(f"{folder}: is inside the data folder {data_dir}; the run's files would be mixed "
                              "with the photos. Choose an --out folder outside it.")
    # A run folder has the marker; one written before the marker existed has last.pt (it can be resumed).
    if folder.is_dir() and not (folder / MARKER).exists() and not (folder / "last.pt").exists():
        others = sorted(p.name for p in folder.iterdir())
        if others:
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            raise CatdogError(f"{folder}: already holds files that are not a catdog run ({shown}). Choose a new "
                              "or empty --out folder; nothing there was changed.")
    return folder


def claim_run_folder(out: str | Path, data: str | Path | None, resume: bool) -> RunLock:
    """Check ``out`` (see :func:`check_run_folder`), create it and lock it for this run.

    A second run on the same folder gets one clear error. A lock this process still holds from a run that
    failed before releasing it (a notebook cell that raised) is taken over.
    """
    folder = check_run_folder(out, data, resume)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MARKER).touch()
        key = folder.resolve()
        if key in _held:
            _held[key].release()
        lock = FileLock(folder / LOCK)
        lock.acquire(timeout=0)
    except Timeout:
        raise CatdogError(f"{folder}: another `catdog train` (process {_owner(folder)}) is using this run folder. "
                          f"Wait for it to finish, or choose another --out (no such process? delete {folder / LOCK})."
                          ) from None
    except OSError as error:
        raise CatdogError(f"cannot write to {folder}: {error.strerror or error}. Choose a writable --out folder.") \
            from None
    (folder / MARKER).write_text(f"{os.getpid()}\n")
    _held[key] = held = RunLock(key, lock)
    return held


def _owner(folder: Path) -> str:
    """The process id the run using ``folder`` wrote in its marker ("?" when unreadable)."""
    try:
        return (folder / MARKER).read_text(errors="replace").strip() or "?"
    except OSError:
        return "?"
