"""Self-describing checkpoints: written atomically, read with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import pickle
import platform
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CatdogError
from ..files import atomic_write

FORMAT = "catdog-checkpoint/1"


def library_versions() -> dict[str, str]:
    import torchvision

    from .. import __version__

    return {"catdog": __version__, "torch": str(torch.__version__), "torchvision": str(torchvision.__version__),
            "python": platform.python_version()}


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save ``obj`` to ``path`` atomically (see :func:`files.atomic_write`)."""
    atomic_write(path, lambda file: torch.save(obj, file))


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
