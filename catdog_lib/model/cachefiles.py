"""Reading cache entries from a folder other users may write (a classroom's shared cache).

A cache entry changes a run's numbers, so it is trusted only if this user wrote it and no one else could
have changed it since: it is owned by this user, a regular file (not a symlink, FIFO or device), and either
not writable by group or others (how :func:`files.atomic_write_bytes` writes entries with
``others_write=False``) or in a folder only its owner can write (so it cannot be renamed to another entry's
name after a change). Where files have no owners (Windows), every entry is this user's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

SHARED_BITS = stat.S_IWGRP | stat.S_IWOTH


class UntrustedEntry(OSError):
    """A cache entry someone other than this user wrote or could have changed."""


def current_user() -> int | None:
    """This process's user id, or None where files have no owners."""
    return os.getuid() if hasattr(os, "getuid") else None


def others_could_write(info: os.stat_result) -> bool:
    """True for a file or folder that a group or other users may write."""
    return bool(info.st_mode & SHARED_BITS)


def trusted(info: os.stat_result, folder: Path) -> bool:
    """True for an entry (its ``fstat``) in ``folder`` that only this user could have written."""
    me = current_user()
    if me is None:
        return True
    if info.st_uid != me:
        return False
    return not others_could_write(info) or not others_could_write(os.stat(folder))


def read_entry(path: Path, own_only: bool = True) -> tuple[bytes, bool]:
    """The bytes of a regular file (symlinks not followed, a FIFO never waited on) and whether it is
    :func:`trusted`; with ``own_only``, UntrustedEntry instead of an untrusted entry's bytes."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    with os.fdopen(os.open(path, flags), "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedEntry(f"{path}: not a regular file")
        ours = trusted(info, path.parent)
        if own_only and not ours:
            raise UntrustedEntry(f"{path}: written by another user, or changeable by one")
        return file.read(), ours
