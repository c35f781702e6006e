"""The run folder of `catdog train`: only a new, empty or catdog run folder, and one run at a time in it."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # filelock warns where it falls back to a lock file (no fcntl, not Windows)
    from filelock import FileLock, Timeout

from ..errors import CatdogError
from ..files import atomic_write_text

MARKER = ".catdog-run"  # created in every run folder; holds the process id of the run using it
LOCK = ".catdog-run.lock"  # the file the run's lock is taken on (flock on POSIX, msvcrt on Windows)

COURSE_LOCK = ".catdog-course.lock"  # in the runs folder: one `catdog course` at a time per course folder

_held: dict[Path, "RunLock"] = {}


class RunFolderBusy(CatdogError):
    """Another process holds the run folder's lock."""


class RunLock:
    """An exclusive lock on a run folder (``filelock``: portable), released by :meth:`release` or on exit."""

    def __init__(self, folder: Path, lock: FileLock):
        self.folder, self.lock = folder, lock

    def release(self) -> None:
        if self.lock.is_locked:
            self.lock.release(force=True)
            _held.pop(self.folder, None)


def _file_lock(path: Path) -> FileLock:
    """A lock on the file ``path``; a symlink planted at its name is removed first (filelock before 4 opens the
    lock file following links, with O_TRUNC: it would empty the link's target)."""
    if path.is_symlink():
        path.unlink()
    return FileLock(path)


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

    A second run on the same folder gets one clear error. A lock this process already holds (a notebook
    cell that raised before releasing it, or :func:`course.fresh_course_run`) is kept, never let go meanwhile.
    """
    folder = check_run_folder(out, data, resume)
    marker = folder / MARKER
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not marker.is_symlink():  # marks a run folder before its lock file appears; a planted link is replaced
            os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
                             | getattr(os, "O_NONBLOCK", 0), 0o666))
        key = folder.resolve()
        held = _held.get(key)
        if held is None or not held.lock.is_locked:
            lock = _file_lock(folder / LOCK)
            lock.acquire(timeout=0)
            _held[key] = held = RunLock(key, lock)
    except Timeout:
        raise RunFolderBusy(f"{folder}: another `catdog train` (process {run_owner(folder)}) is using this run "
                            "folder. Wait for it to finish, or choose another --out (no such process? delete "
                            f"{folder / LOCK}).") from None
    except OSError as error:
        raise CatdogError(f"cannot write to {folder}: {error.strerror or error}. Choose a writable --out folder.") \
            from None
    atomic_write_text(marker, f"{os.getpid()}\n")
    return held


@contextlib.contextmanager
def hold_course(course_run: Path) -> Iterator[None]:
    """Hold the lock of the course folder whose notebook 04 trains in ``course_run`` while a `catdog course`
    runs; a second one gets one clear error (its fresh start would delete the first's run)."""
    path = course_run.parent / COURSE_LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = _file_lock(path)
        lock.acquire(timeout=0)
    except Timeout:
        raise CatdogError(f"another `catdog course` is running in this course folder (it trains in {course_run}). "
                          "Wait for it to finish, or run this one in another folder (or set CATDOG_HOME to one)."
                          ) from None
    except OSError as error:
        raise CatdogError(f"cannot write to {path.parent}: {error.strerror or error}. Run the course from a folder "
                          "you can write, or set CATDOG_HOME (or CATDOG_RUNS_DIR) to one.") from None
    try:
        yield
    finally:
        lock.release(force=True)


def run_owner(folder: Path) -> str:
    """The process id the run using ``folder`` wrote in its marker ("?" when unreadable)."""
    try:
        return (folder / MARKER).read_text(errors="replace").strip() or "?"
    except OSError:
        return "?"
