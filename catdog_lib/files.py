"""Reading and writing the course's files safely in folders others may write: atomic writes, leftovers, error
advice, and the one file hasher.

Every file the course writes at a predictable name goes through :func:`atomic_write` (a random temporary
name created exclusively, then renamed over the target), so a symlink planted at that name in a shared folder
is replaced, never written through. Every file the course hashes goes through :func:`file_digest` (regular
files only, read in chunks). Torch-free, so that downloads and the command line can use it.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from .errors import CatdogError
from .names import NAME_MAX, fit_name

STALE_TMP_S = 3600  # a write takes seconds to minutes: a temporary file this old was left by a killed process
HASH_CHUNK = 1 << 20  # files are hashed in chunks of this many bytes, never read whole


class RefusedFile(OSError):
    """A file refused unread: not a regular file (a FIFO, device, socket or folder: see ``mode``), or over the
    caller's size limit (``size``). An OSError, so that callers handling unreadable files handle it too."""

    def __init__(self, path: Path, info: os.stat_result, why: str):
        super().__init__(f"{path}: {why}; not read")
        self.mode, self.size = info.st_mode, info.st_size


def os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error``, if any: torch.save reports a failed write (full disk, file too large)
    as a RuntimeError raised while handling the OSError."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def write_advice(error: OSError) -> str:
    """What to do about a failed write, following its cause (a full disk is not the only one)."""
    if error.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
        return "Free disk space (or ask for a larger quota) or choose another --out folder"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "Choose a writable --out folder"
    if error.errno == errno.ENOENT:
        return "The folder was removed while writing (by another run?); run the command again"
    if error.errno == errno.ENOTDIR:
        return "A part of the path is a file, not a folder; choose another --out folder"
    return "Choose another --out folder"


def umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def set_mode(handle: int, name: str, mode: int) -> None:
    """Set the mode of a file just created: through its descriptor where possible (a path could be swapped)."""
    if hasattr(os, "fchmod"):
        os.fchmod(handle, mode)
    else:  # Windows before Python 3.13
        os.chmod(name, mode)


def can_lock() -> bool:
    """Whether this system has ``flock`` (not Windows): then a write in progress can be told by its lock."""
    try:
        import fcntl  # noqa: F401
    except ImportError:
        return False
    return True


def take_lock(handle: int, wait: bool = True) -> bool:
    """An exclusive ``flock`` on an open file (True if taken); where there is none (Windows), True."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except OSError:
        return False
    return True


def abandoned(path: Path, age_s: float = STALE_TMP_S) -> bool:
    """True for a temporary file or folder of this user that no process holds locked, over ``age_s`` seconds
    old (over ``STALE_TMP_S`` where there are no locks to ask)."""
    try:
        info = path.lstat()
        if info.st_uid != getattr(os, "getuid", lambda: info.st_uid)():
            return False
        age = time.time() - info.st_mtime
        if age <= (age_s if can_lock() else max(age_s, STALE_TMP_S)):
            return False
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        return take_lock(handle, wait=False)
    finally:
        os.close(handle)


def remove_stale(paths: Iterable[Path], age_s: float = STALE_TMP_S) -> None:
    """Remove those of ``paths`` (temporary files) that are :func:`abandoned`."""
    for stale in paths:
        if abandoned(stale, age_s):
            Path(stale).unlink(missing_ok=True)


def temporary_files(folder: Path, prefix: str) -> Iterable[Path]:
    """The temporary files ``prefix*.tmp`` in ``folder`` (what ``mkstemp(prefix, ".tmp")`` creates there)."""
    return folder.glob(f"{glob.escape(prefix)}*.tmp")


def new_temporary(path: Path) -> tuple[int, str]:
    """A new temporary file ``.NAME.<random>.tmp`` beside ``path`` (NAME shortened to fit), created exclusively
    and locked (a write in progress): (descriptor, name). This user's leftovers of killed writes of ``path``
    (unlocked ones) are removed first."""
    prefix = f".{fit_name(path.name, limit=NAME_MAX - 24)}."
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CatdogError(f"cannot write {path}: {error.strerror or error}. {write_advice(error)}.") from None
    take_lock(handle)  # released when the file is closed or the process dies
    remove_stale((left for left in temporary_files(path.parent, prefix) if left.name != Path(name).name), age_s=0)
    return handle, name


def atomic_write(path: Path, write: Callable[[BinaryIO], object], others_write: bool = True) -> None:
    """Call ``write`` on a new temporary file beside ``path``, fsync, then rename it over ``path``.

    The temporary file has a random name and is created exclusively (``mkstemp``: ``O_EXCL``, so a name
    planted in a shared folder, a symlink to someone's file included, is never written through). It gets the
    mode a plain ``open`` would give (0o666 less the umask), so a group-shared folder stays shared; with
    ``others_write`` False (cache entries), never writable by group or others. An interrupted or failed
    write (full disk, read-only folder) leaves any previous file intact. This user's temporary files of
    ``path`` left by a killed process (``.NAME.*.tmp``, no longer locked by a writer) are removed; one still
    locked is another process's write in progress.
    """
    path = Path(path)
    handle, tmp_name = new_temporary(path)
    try:
        set_mode(handle, tmp_name, 0o666 & ~umask() & ~(0 if others_write else 0o022))
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        cause = os_error(error)
        if cause is not None:
            raise CatdogError(
                f"cannot write {path}: {cause.strerror or cause}. {write_advice(cause)}; the previous "
                f"{'checkpoint' if path.suffix == '.pt' else 'file'} there is unchanged."
            ) from None
        raise


def atomic_write_bytes(path: Path, data: bytes, others_write: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda file: file.write(data), others_write)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically (see :func:`atomic_write`); a clear error if it cannot."""
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def own_regular_size(path: Path) -> int:
    """The size of ``path`` if it is this user's regular file (a symlink is not followed), else 0."""
    try:
        info = path.lstat()
    except OSError:
        return 0
    mine = info.st_uid == getattr(os, "getuid", lambda: info.st_uid)()
    return info.st_size if stat.S_ISREG(info.st_mode) and mine else 0


def open_partial(path: Path, append: bool) -> BinaryIO:
    """Open a partial download at the predictable name ``path`` to write it, never through a symlink.

    ``append``: add to this user's regular file (resuming); anything else there is refused (CatdogError), so
    a file planted in a shared folder is never written. Otherwise whatever is there (a symlink included, not
    its target) is removed and a new file is created exclusively.
    """
    flags = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    try:
        if append:  # non-blocking: a FIFO planted there fails at once instead of waiting for a reader
            handle = os.open(path, flags | os.O_APPEND | getattr(os, "O_NONBLOCK", 0))
        else:
            path.unlink(missing_ok=True)
            handle = os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise CatdogError(f"cannot write {path}: {error.strerror or error}. Delete it (or choose another "
                          "folder) and run the command again.") from None
    info = os.fstat(handle)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != getattr(os, "getuid", lambda: info.st_uid)():
        os.close(handle)
        raise CatdogError(f"{path}: not your own regular file; nothing was written to it. Delete it and run "
                          "the command again.")
    return os.fdopen(handle, "ab")


def _refuse(path: Path, info: os.stat_result, max_bytes: int | None) -> None:
    """RefusedFile unless ``info`` is a regular file of at most ``max_bytes``."""
    if stat.S_ISDIR(info.st_mode):
        raise RefusedFile(path, info, "is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise RefusedFile(path, info, f"is {kind}, not a regular file")
    if max_bytes is not None and info.st_size > max_bytes:
        raise RefusedFile(path, info, f"{info.st_size:,} bytes, over the limit of {max_bytes:,}")


def open_regular(path: str | Path, max_bytes: int | None = None) -> BinaryIO:
    """Open a file for reading, only if it is a regular file (of at most ``max_bytes``): else RefusedFile.

    A FIFO or device (reading one can block forever or never end) is refused from ``os.stat`` without opening
    it, and again from the opened file: it is opened non-blocking, so a FIFO swapped in meanwhile cannot hang
    the open. Other OSErrors as ``open``.
    """
    path = Path(path)
    _refuse(path, os.stat(path), max_bytes)
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    file = os.fdopen(handle, "rb")  # O_NONBLOCK changes nothing for a regular file's reads
    try:
        _refuse(path, os.fstat(handle), max_bytes)
    except BaseException:
        file.close()
        raise
    return file


def file_digest(path: str | Path, algorithm: str = "sha1", max_bytes: int | None = None) -> str:
    """The hex digest of a regular file (see :func:`open_regular`), read in chunks of ``HASH_CHUNK``."""
    digest = hashlib.new(algorithm)
    with open_regular(path, max_bytes) as file:
        for block in iter(lambda: file.read(HASH_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
