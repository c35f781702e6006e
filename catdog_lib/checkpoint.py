"""Self-describing checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import glob
import os
import pickle
import platform
import tempfile
import zipfile
from collections.abc import Callable
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


def _atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write`` on a temporary file beside ``path``, fsync, then rename it over ``path``.

    The file gets the mode a plain ``open`` would give (0o666 less the umask), so a group-shared folder
    stays shared. An interrupted or failed write (full disk, read-only folder) leaves any previous file
    intact. A temporary file left by a killed process (``.NAME.*.tmp``) is removed by the next successful
    write of ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CatdogError(f"cannot write {path}: {error.strerror or error}. Choose a writable --out folder.") from None
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # not fchmod: Windows has none before Python 3.13
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
                "folder; the previous checkpoint there is unchanged."
            ) from None
        raise
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save ``obj`` to ``path`` atomically (see :func:`_atomic_write`)."""
    _atomic_write(path, lambda file: torch.save(obj, file))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`_atomic_write`)."""
    _atomic_write(path, lambda file: file.write(data))


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temp file beside it, then rename); a clear error if it cannot."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise CatdogError(f"cannot write {path}: {error.strerror or error}. Free disk space or choose "
                          "a writable folder.") from None


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
