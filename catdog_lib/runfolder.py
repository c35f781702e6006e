"""The run folder of `catdog train`: only a new, empty or catdog run folder, and one run at a time in it."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import CatdogError

MARKER = ".catdog-run"  # created in every run folder; also the file the run's lock is taken on

_held: dict[Path, "RunLock"] = {}


class RunLock:
    """An exclusive lock (``flock``) on a run folder's marker file, released by :meth:`release` or on exit."""

    def __init__(self, folder: Path, fd: int):
        self.folder, self.fd = folder, fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1
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
        fd = os.open(folder / MARKER, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as error:
        raise CatdogError(f"cannot write to {folder}: {error.strerror or error}. Choose a writable --out folder.") \
            from None
    key = folder.resolve()
    if key in _held:
        _held[key].release()
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise CatdogError(f"{folder}: another `catdog train` (process {owner}) is using this run folder. Wait "
                          "for it to finish, or choose another --out.") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = lock = RunLock(key, fd)
    return lock
