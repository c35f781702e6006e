"""Self-describing checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
import pickle
import platform
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CatdogError

FORMAT = "catdog-checkpoint/1"


def library_versions() -> dict[str, str]:
    import torchvision

    from . import __version__

    return {"catdog": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside ``path``, fsync, then rename over it.

    An interrupted or failed write (full disk, read-only folder) leaves any previous file intact.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise CatdogError(f"cannot write {path}: {error.strerror or error}. Choose a writable --out folder.") from None
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise CatdogError(
                f"cannot write {path}: {error.strerror or error}. Free disk space or choose another --out "
                "folder; the previous checkpoint there is unchanged."
            ) from None
        raise


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
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = str(error).splitlines()
        detail = next((line.strip() for line in lines if "WeightsUnpickler error" in line), lines[0] if lines else "")
        raise CatdogError(
            f"{path}: refused: the file holds Python objects other than tensors and plain data, which could run "
            f"code when loaded ({detail.split('. Please use')[0]}). Only load checkpoints you trust."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CatdogError(
            f"{path}: not a readable checkpoint (truncated or another format: {type(error).__name__}). "
            "Re-download it or retrain."
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CatdogError(f"{path}: not a catdog checkpoint (no '{FORMAT}' marker). Was it saved by `catdog train`?")
    return data
