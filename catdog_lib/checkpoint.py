"""Self-describing checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import glob
import os
import pickle
import platform
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from .errors import CatdogError

FORMAT = "catdog-checkpoint/1"


def library_versions() -> dict[str, str]:
    import torchvision

    from . import __version__

    return {"catdog": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def _os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error``, if any: torch.save reports a failed write (full disk, file too large)
    as a RuntimeError raised while handling the OSError."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[BinaryIO], object], others_write: bool = True) -> None:
    """Call ``write`` on a new temporary file beside ``path``, fsync, then rename it over ``path``.

    The temporary file has a random name and is created exclusively (``mkstemp``: ``O_EXCL``, so a name
    planted in a shared folder, a symlink to someone's file included, is never written through). It gets the
    mode a plain ``open`` would give (0o666 less the umask), so a group-shared folder stays shared; with
    ``others_write`` False (cache entries), never writable by group or others. An interrupted or failed
    write (full disk, read-only folder) leaves any previous file intact. This user's temporary files of
    ``path`` left by a killed process (``.NAME.*.tmp``, no longer locked by a writer) are removed by the next
    successful write of ``path``; one still locked is another process's write in progress.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CatdogError(f"cannot write {path}: {error.strerror or error}. Choose a writable --out folder.") from None
    try:
        take_lock(handle)  # released when the file is closed or the process dies: marks a write in progress
        _set_mode(handle, tmp_name, 0o666 & ~_umask() & ~(0 if others_write else 0o022))
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        cause = _os_error(error)
        if cause is not None:
            raise CatdogError(
                f"cannot write {path}: {cause.strerror or cause}. Free disk space or choose another --out "
                f"folder; the previous {'checkpoint' if path.suffix == '.pt' else 'file'} there is unchanged."
            ) from None
        raise
    remove_stale(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"), age_s=0)


STALE_TMP_S = 3600  # a write takes seconds to minutes: a temporary file this old was left by a killed process


def _set_mode(handle: int, name: str, mode: int) -> None:
    """Set the mode of a file just created: through its descriptor where possible (a path could be swapped)."""
    if hasattr(os, "fchmod"):
        os.fchmod(handle, mode)
    else:  # Windows before Python 3.13
        os.chmod(name, mode)


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
        if age <= (age_s if hasattr(os, "getuid") else max(age_s, STALE_TMP_S)):
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


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save ``obj`` to ``path`` atomically (see :func:`_atomic_write`)."""
    _atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write_bytes(path: Path, data: bytes, others_write: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`_atomic_write`)."""
    _atomic_write(path, lambda file: file.write(data), others_write)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a UTF-8 text file atomically (see :func:`_atomic_write`); a clear error if it cannot."""
    _atomic_write(path, lambda file: file.write(text.encode("utf-8")))


def save_checkpoint(path: Path, model_state: dict, meta: dict, **training_state: Any) -> None:
    """One file: the model's state_dict, the metadata needed to use it alone, optional resume state."""
    atomic_save({"format": FORMAT, "meta": {**meta, "versions": library_versions()},
                 "state_dict": model_state, **training_state}, path)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint safely: tensors and plain data only, never code from the file."""
    path = Path(path)
    if not path.is_file():
        raise CatdogError(f"{path}: no such checkpoint file. Train one with `catdog train` first.")
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError as error:
        raise CatdogError(
            f"{path}: cannot read the checkpoint ({error.strerror or error}); check its permissions."
        ) from None
    # torch.save writes a zip archive (b"PK"); very old versions a raw pickle (protocol 2+: b"\x80").
    # Anything else (an image, text, an empty file) would reach the unpickler and read as a security refusal.
    if not head.startswith((b"PK", b"\x80")):
        image = head.startswith((b"\x89PNG", b"\xff\xd8", b"GIF8"))
        kind = "empty" if not head else "an image" if image else "another format"
        raise CatdogError(
            f"{path}: not a PyTorch checkpoint (the file is {kind}). "
            "Pass the best.pt or last.pt written by `catdog train`."
        )
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = str(error).splitlines()
        # torch's first line advises loading with weights_only=False: never repeat that; name what was found
        detail = next((line.strip() for line in lines if "GLOBAL" in line or "WeightsUnpickler error" in line),
                      "unsupported content")
        raise CatdogError(
            f"{path}: refused: the file holds Python objects other than tensors and plain data, which could run "
            f"code when loaded ({detail.split('. Please use')[0].rstrip('.')}). Only load checkpoints you trust."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CatdogError(
            f"{path}: not a readable checkpoint (truncated or another format: {type(error).__name__}). "
            "Re-download it or retrain."
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CatdogError(f"{path}: not a catdog checkpoint (no '{FORMAT}' marker). Was it saved by `catdog train`?")
    return data
