"""Run the frozen backbone on a CPU inference engine: OpenVINO, else ONNX Runtime, else PyTorch.

A frozen backbone is a fixed function of its weights, so it is exported once to ONNX (which both
engines read), checked against PyTorch in float32, and cached on disk (``$CATDOG_CACHE_DIR/engines``)
under a key made of the backbone's id, a digest of its architecture and weights, and the engine: the
next run only loads it. The export takes any batch and image size, so one file serves every view.
Both engines run in float32 and agree with PyTorch's float32 to about 1e-5; on 2 CPU cores OpenVINO
runs the default backbone about twice as fast as PyTorch in bfloat16 (docs/BENCHMARKS.md). GPUs, and
machines without an engine, use PyTorch.

``backbone_runner(...)`` returns a callable ``runner(images[B, 3, H, W]) -> features[B, D]`` (float32,
on the CPU) whatever runs it; ``runner.identity`` ("openvino:fp32", "torch:bfloat16", ...) names the
engine and precision, and belongs in any cache of its outputs. ``CATDOG_ENGINE=openvino|onnxruntime|torch``
forces one.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Protocol

import numpy as np
import torch
from torch import nn

from .config import cache_dir
from .devices import inference_autocast, inference_dtype, to_fast_layout
from .errors import CatdogError

ENGINE_ENV = "CATDOG_ENGINE"
MIN_COSINE = 0.999  # an engine's features must point the same way as PyTorch's float32 ones
MODEL_FILE, CHECK_FILE = "backbone.onnx", "check.json"
PROBE_SIZE = 224  # the exactness check's image size (the export takes any)
CHUNK = 2  # images per OpenVINO inference
TELEMETRY = "openvino_telemetry"  # OpenVINO's usage reporting (pip package openvino-telemetry)


def import_engine(name: str) -> ModuleType:
    """Import an engine's module; OpenVINO without its usage telemetry.

    ``import openvino`` sends a usage event to Google Analytics unless ~/intel/openvino_telemetry says
    no, from a new process (which, under the spawn start method, imports the caller's main module again:
    ~700 MB and seconds of CPU during a run). A course does not report its students' use without asking,
    so the telemetry module is hidden while OpenVINO is imported; OpenVINO then uses its own no-op stub.
    """
    hide = name == "openvino" and "openvino" not in sys.modules and TELEMETRY not in sys.modules
    if hide:
        sys.modules[TELEMETRY] = None  # type: ignore[assignment]  # None in sys.modules: ImportError
    try:
        return importlib.import_module(name)
    finally:
        if hide:
            del sys.modules[TELEMETRY]


class Runner(Protocol):
    identity: str

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


class TorchRunner:
    """The backbone in PyTorch: channels_last, autocast to bfloat16/float16 where that is fast."""

    def __init__(self, backbone: nn.Module, device: torch.device, reduced_precision: bool = True):
        self.backbone = to_fast_layout(backbone.eval(), device)
        self.device = device
        self.reduced_precision = reduced_precision
        self.identity = torch_identity(device, reduced_precision)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device).contiguous(memory_format=torch.channels_last)
        with inference_autocast(self.device, self.reduced_precision):
            return self.backbone(images).float().cpu()


class OpenVINORunner:
    """An OpenVINO model compiled for a fixed chunk of images (static shapes run ~20% faster than dynamic).

    Batches are run in chunks of ``CHUNK`` (the last one padded), one compiled model for every batch
    size. Small chunks keep each inference's activations in the CPU's caches: on 2 cores, while the
    prefetch thread decodes, chunks of 2 ran a cold default run in 26-28 s against 30-31 s for chunks of
    8, and buffers shrink with the chunk (docs/BENCHMARKS.md).
    """

    identity = "openvino:fp32"

    def __init__(self, path: Path):
        self.core = import_engine("openvino").Core()
        self.model = self.core.read_model(path)
        self.config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                       "INFERENCE_NUM_THREADS": torch.get_num_threads()}
        self.shape: tuple[int, ...] = ()
        self.request = None

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.detach().float().cpu()
        shape = (CHUNK, *images.shape[1:])
        if shape != self.shape:
            model = self.model.clone()
            model.reshape(list(shape))
            self.request = self.core.compile_model(model, "CPU", self.config).create_infer_request()
            self.shape = shape
        outputs = []
        for start in range(0, len(images), CHUNK):
            chunk = images[start:start + CHUNK].contiguous().numpy()  # a view's slice: copy one chunk at a time
            if len(chunk) < CHUNK:
                chunk = np.concatenate([chunk, np.zeros((CHUNK - len(chunk), *shape[1:]), chunk.dtype)])
            outputs.append(self.request.infer({0: chunk})[0].copy())  # the request reuses its output buffer
        return torch.from_numpy(np.concatenate(outputs)[:len(images)])


class OnnxRuntimeRunner:
    """An ONNX Runtime session on the CPU."""

    identity = "onnxruntime:fp32"

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        (output,) = self.session.run(None, {"images": images.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(output)


def export_onnx(backbone: nn.Module, example: torch.Tensor, path: Path) -> None:
    """Write ``backbone`` as ONNX with a free batch size, height and width.

    TorchScript's exporter: it needs no extra package and takes a second or two on 2 cores (OpenVINO's
    own converter takes about 5x longer, torch.export about 3x); torch marks it as legacy.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(backbone, (example,), str(path), input_names=["images"], output_names=["features"],
                          dynamic_axes={"images": {0: "batch", 2: "height", 3: "width"}, "features": {0: "batch"}},
                          dynamo=False)


@dataclass(frozen=True)
class Engine:
    """An inference engine: its Python module (and pip package) and its runner, built from an ONNX file."""

    name: str
    load: Callable[[Path], Runner]

    @property
    def identity(self) -> str:
        return f"{self.name}:fp32"


ENGINES = {  # fastest first, measured on 2 CPU cores (docs/BENCHMARKS.md)
    "openvino": Engine("openvino", OpenVINORunner),
    "onnxruntime": Engine("onnxruntime", OnnxRuntimeRunner),
}


def installed(module: str) -> bool:
    """True if ``module`` can be imported (found without importing it; a hidden module counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def engine_name(device: torch.device) -> str:
    """$CATDOG_ENGINE if set, else the fastest installed engine; PyTorch on GPUs and without an engine."""
    wanted = os.environ.get(ENGINE_ENV, "").strip().lower() or "auto"
    if wanted not in {"auto", "torch", *ENGINES}:
        raise CatdogError(f"{ENGINE_ENV}={wanted}: unknown engine; use auto, torch, {', '.join(ENGINES)}.")
    if wanted != "auto" and wanted != "torch" and not installed(wanted):
        raise CatdogError(f"{ENGINE_ENV}={wanted}: {wanted} is not installed. "
                          f"pip install {wanted}, or unset {ENGINE_ENV}.")
    if device.type != "cpu" or wanted == "torch":
        return "torch"
    if wanted != "auto":
        return wanted
    return next((name for name in ENGINES if installed(name)), "torch")


def torch_identity(device: torch.device, reduced_precision: bool = True) -> str:
    """"torch:bfloat16", "torch:float16" or "torch:float32": how PyTorch runs a frozen backbone on ``device``."""
    return "torch:" + str(inference_dtype(device, reduced_precision)).removeprefix("torch.")


def engine_identity(device: torch.device, reduced_precision: bool = True) -> str:
    """The identity of the runner :func:`backbone_runner` would pick, without building it."""
    name = engine_name(device)
    return torch_identity(device, reduced_precision) if name == "torch" else ENGINES[name].identity


def weights_digest(backbone: nn.Module) -> str:
    """SHA-1 of a module's architecture (its repr) and every tensor of its state_dict."""
    digest = hashlib.sha1(repr(backbone).encode())
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def export_folder(root: Path, engine: Engine, backbone: nn.Module, backbone_id: str) -> Path:
    """Where ``engine``'s export of ``backbone`` is cached: keyed like the feature cache, plus the weights."""
    version = getattr(import_engine(engine.name), "__version__", "")
    key = json.dumps({"backbone": backbone_id, "weights": weights_digest(backbone),
                      "engine": engine.identity, "version": version, "torch": str(torch.__version__)},
                     sort_keys=True)
    return Path(root) / f"{engine.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def _probe() -> torch.Tensor:
    """Two fixed pseudo-random normalized images: the export's example input and its exactness check."""
    return torch.randn(2, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0))


def _export(engine: Engine, backbone: nn.Module, folder: Path) -> None:
    """Export a float32 CPU copy of ``backbone``, check it against PyTorch, then publish the folder atomically."""
    plain = copy.deepcopy(backbone).float().cpu().eval().to(memory_format=torch.contiguous_format)
    probe = _probe()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with torch.inference_mode():
            expected = plain(probe)
        export_onnx(plain, probe, staging / MODEL_FILE)
        got = engine.load(staging / MODEL_FILE)(probe)
        cosine = float(torch.nn.functional.cosine_similarity(got, expected, dim=1).min())
        check = {"min_cosine": cosine, "exact": cosine >= MIN_COSINE}
        (staging / CHECK_FILE).write_text(json.dumps(check))
        try:
            staging.rename(folder)
        except OSError:  # another process published the same export first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _load_checked(engine: Engine, folder: Path) -> Runner:
    """Load an export that passed its check against PyTorch; raise ValueError for one that did not."""
    check = json.loads((folder / CHECK_FILE).read_text(encoding="utf-8"))
    if not check["exact"]:
        raise ValueError(f"its features differ from PyTorch's (cosine {check['min_cosine']:.5f} < {MIN_COSINE})")
    return engine.load(folder / MODEL_FILE)


def _engine_runner(engine: Engine, backbone: nn.Module, backbone_id: str, root: Path) -> Runner:
    """The cached export of ``backbone`` for ``engine`` (exported on first use), loaded.

    A damaged cached export is exported again; a cache that cannot be written gets a warning and an
    export for this run only (the engines keep the model in memory once loaded).
    """
    folder = export_folder(root, engine, backbone, backbone_id)
    if (folder / CHECK_FILE).exists():
        try:
            return _load_checked(engine, folder)
        except ValueError:
            raise
        except Exception:  # noqa: BLE001 - damaged: export it again below
            pass
    shutil.rmtree(folder, ignore_errors=True)  # damaged, or left incomplete by hand
    try:
        _export(engine, backbone, folder)
    except OSError as error:
        warnings.warn(f"exported backbone not cached ({error}); exporting it again next run. "
                      "Set CATDOG_CACHE_DIR to a writable folder to keep it.", stacklevel=3)
        with tempfile.TemporaryDirectory(prefix="catdog-engine-") as tmp:
            _export(engine, backbone, Path(tmp) / folder.name)
            return _load_checked(engine, Path(tmp) / folder.name)
    return _load_checked(engine, folder)


def backbone_runner(backbone: nn.Module, backbone_id: str, device: torch.device, reduced_precision: bool = True,
                    cache_root: Path | None = None) -> Runner:
    """The fastest exact enough way to run the frozen ``backbone`` on ``device`` (see the module docstring).

    An engine that cannot export, load or match this backbone only costs speed: a warning, then PyTorch.
    """
    name = engine_name(device)
    if name != "torch":
        engine = ENGINES[name]
        try:
            return _engine_runner(engine, backbone, backbone_id, cache_root or cache_dir() / "engines")
        except Exception as error:  # noqa: BLE001 - any failure of an optional engine falls back to PyTorch
            warnings.warn(f"{engine.name} not used for the backbone ({type(error).__name__}: {error}); "
                          f"running it in PyTorch. Set {ENGINE_ENV}=torch to skip the attempt.", stacklevel=2)
    return TorchRunner(backbone, device, reduced_precision)
