"""catdog_lib: the shared library behind the catdog course notebooks and CLI.

Five sub-packages follow the course, each importing only from the layers below it (catdog_lib/README.md;
tests/test_layers.py keeps it so): ``data`` (photos, splits, downloads) < ``model`` (backbones, features,
checkpoints) < ``train`` and ``infer`` (neither imports the other) < ``classroom`` (the notebooks' helpers,
running the course) < ``cli``. The modules at the top (errors, config, files, names, web, devices, compare) are
the ground floor every layer may use.

The notebooks write ``from catdog_lib import backbones, training``: each module is also reachable by its own
name here, imported on first use, so a lesson's import line names what it teaches, not where it lives. Inside the
library, modules import from their home (``from ..model import backbones``).
"""

from __future__ import annotations

import importlib
from types import ModuleType

__version__ = "0.1.0"

HOMES = {
    "data": ("layout", "images", "split", "datasets", "transforms", "integrity", "synthetic", "download",
             "remote_zip", "prefetch", "archives", "petimages"),
    "model": ("backbones", "checkpoint", "modelfile", "engine", "features", "cachefiles"),
    "train": ("training", "batching", "finetune", "runlock", "parameters"),
    "infer": ("evaluation", "export", "gradcam", "calibration", "demo", "upload", "own_photo"),
    "classroom": ("course", "notebook", "runner", "student", "plots"),
}
_HOME_OF = {module: package for package, modules in HOMES.items() for module in modules}


def __getattr__(name: str) -> ModuleType:
    """``catdog_lib.backbones`` is ``catdog_lib.model.backbones``, imported when first asked for."""
    if name not in _HOME_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{_HOME_OF[name]}.{name}")
    globals()[name] = module
    return module


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME_OF])
