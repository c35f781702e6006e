"""Run the frozen backbone on a CPU inference engine: OpenVINO, else ONNX Runtime, else PyTorch.

A frozen backbone is a fixed function of its weights, so it is exported once to ONNX (which both
engines read), checked against PyTorch in float32, and cached on disk (``$CATDOG_CACHE_DIR/engines``)
under a key made of the backbone's id, a digest of its architecture and weights, and the engine: the
next run only loads it, once its files match the SHA-256s its check recorded, or, for an export another
user wrote (a classroom's shared cache), once its features match PyTorch's (docs/RELIABILITY.md, round 4). The export takes any batch and image size, so one file serves every view.
Both engines run in float32 and agree with PyTorch's float32 to about 1e-5; on 2 CPU cores OpenVINO
runs the default backbone about twice as fast as PyTorch in bfloat16 (docs/BENCHMARKS.md). GPUs, and
machines without an engine, use PyTorch.

With NNCF installed, a training run that extracts at least ``QUANTIZE_FROM`` photos first quantizes the
backbone to int8 for OpenVINO (post-training, calibrated on ``CALIBRATION_PHOTOS`` of its training
photos; once per weights and cache), 1.3-1.9x faster than float32. Int8 features are not equal to float32
ones (cosine ~0.99 per photo), so it is judged where it matters: a head trained on them classifies the
validation photos as well as one trained on float32 features and agrees with it on 99.75% of them
(tests/test_int8.py, docs/BENCHMARKS.md). Its identity names the calibration ("openvino:int8/1a2b3c4d"),
so features of two quantized models never mix. ``CATDOG_ENGINE=openvino`` keeps float32.

``backbone_runner(...)`` returns a :class:`BackboneRunner`, ``runner(images[B, 3, H, W]) -> features[B, D]``
(float32, on the CPU) whatever runs it; ``runner.identity`` ("openvino:fp32", "torch:bfloat16", ...) names the
engine and precision, and belongs in any cache of its outputs. ``CATDOG_ENGINE=openvino|onnxruntime|torch``
(or ``openvino-int8``) forces one.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import stat
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from torch import nn

from ..config import cache_dir
from ..devices import cpu_has_int8_dot, inference_autocast, inference_dtype, to_fast_layout
from ..errors import CatdogError
from ..files import abandoned, file_digest, os_error, take_lock, umask
from . import cachefiles

if TYPE_CHECKING:
    import onnxruntime

ENGINE_ENV = "CATDOG_ENGINE"
MIN_COSINE = 0.999  # a float32 engine's features must point the same way as PyTorch's float32 ones
# int8: a median cosine below this means a broken quantization (photos: 0.992-0.996; generated shapes: 0.55)
INT8_MIN_MEDIAN_COSINE = 0.98
QUANTIZE_FROM = 1000  # photos to extract before quantizing pays for itself (~4 s, at 3-8 ms saved per photo)
CALIBRATION_PHOTOS = 32  # 20, 64 and 300 calibration photos gave the same valid accuracy (docs/BENCHMARKS.md)
CHECK_PHOTOS = 8  # of them, compared with PyTorch float32 after quantizing
INT8 = "openvino-int8"
MODEL_FILE, CHECK_FILE = "backbone.onnx", "check.json"  # a float32 export and its check
PROBE_SIZE = 224  # the exactness check's image size (the export takes any)
CHUNK = 2  # images per OpenVINO inference
TELEMETRY = "openvino_telemetry"  # OpenVINO's usage reporting (pip package openvino-telemetry)


def import_engine(name: str) -> ModuleType:
    """Import an engine's module; OpenVINO without its usage telemetry.

    ``import openvino`` sends a usage event to Google Analytics unless ~/intel/openvino_telemetry says
    no, from a new process (which, under the spawn start method, imports the caller's main module again:
    ~700 MB and seconds of CPU during a run). A course does not report its students' use without asking,
    so the telemetry module is hidden while OpenVINO (or NNCF, which reports the same way) is imported;
    they then use their own no-op stubs.
    """
    hide = name in ("openvino", "nncf") and name not in sys.modules and TELEMETRY not in sys.modules
    if hide:
        sys.modules[TELEMETRY] = None  # type: ignore[assignment]  # None in sys.modules: ImportError
    try:
        return importlib.import_module(name)
    finally:
        if hide:
            del sys.modules[TELEMETRY]


class BackboneRunner(Protocol):
    """Runs a frozen backbone: ``images[B, 3, H, W] -> features[B, D]`` (float32, on the CPU)."""

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

    def __init__(self, path: Path, identity: str = "openvino:fp32"):
        self.identity = identity
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


def onnx_session(path: Path) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session for the model file ``path`` on the CPU, with as many threads as PyTorch."""
    onnxruntime = import_engine("onnxruntime")
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings are not the student's to fix
    options.intra_op_num_threads = torch.get_num_threads()  # as many threads as PyTorch, for fair timings
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class OnnxRuntimeRunner:
    """The backbone in an ONNX Runtime session on the CPU."""

    def __init__(self, path: Path, identity: str = "onnxruntime:fp32"):
        self.identity = identity
        self.session = onnx_session(path)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        (output,) = self.session.run(None, {"images": images.detach().float().cpu().contiguous().numpy()})
        return torch.from_numpy(output)


def export_backbone_onnx(backbone: nn.Module, example: torch.Tensor, path: Path) -> None:
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
    """An inference engine and precision: the modules (pip packages) it needs, its runner and its model file."""

    name: str  # what CATDOG_ENGINE calls it
    modules: tuple[str, ...]
    load: Callable[[Path, str], BackboneRunner]  # (model file, identity) -> runner
    precision: str = "fp32"
    model_file: str = MODEL_FILE

    @property
    def identity(self) -> str:
        return f"{self.modules[0]}:{self.precision}"

    def installed(self) -> bool:
        return all(installed(module) for module in self.modules)


ENGINES = {  # fastest first, measured on 2 CPU cores (docs/BENCHMARKS.md)
    INT8: Engine(INT8, ("openvino", "nncf"), OpenVINORunner, "int8", "backbone.xml"),
    "openvino": Engine("openvino", ("openvino",), OpenVINORunner),
    "onnxruntime": Engine("onnxruntime", ("onnxruntime",), OnnxRuntimeRunner),
}


def installed(module: str) -> bool:
    """True if ``module`` can be imported (found without importing it; a hidden module counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def engine_name(device: torch.device) -> str:
    """$CATDOG_ENGINE if set, else the fastest installed engine (int8 only where the CPU has a dot-product
    instruction for it); PyTorch on GPUs and without an engine."""
    wanted = os.environ.get(ENGINE_ENV, "").strip().lower() or "auto"
    if wanted not in {"auto", "torch", *ENGINES}:
        raise CatdogError(f"{ENGINE_ENV}={wanted}: unknown engine; use auto, torch, {', '.join(ENGINES)}.")
    if wanted not in {"auto", "torch"} and not ENGINES[wanted].installed():
        packages = " ".join(ENGINES[wanted].modules)
        raise CatdogError(f"{ENGINE_ENV}={wanted}: {packages} not installed. "
                          f"pip install {packages}, or unset {ENGINE_ENV}.")
    if device.type != "cpu" or wanted == "torch":
        return "torch"
    if wanted != "auto":
        return wanted
    return next((name for name, engine in ENGINES.items()
                 if engine.installed() and (name != INT8 or cpu_has_int8_dot())), "torch")


def torch_identity(device: torch.device, reduced_precision: bool = True) -> str:
    """"torch:bfloat16", "torch:float16" or "torch:float32": how PyTorch runs a frozen backbone on ``device``."""
    return "torch:" + str(inference_dtype(device, reduced_precision)).removeprefix("torch.")


def engine_identity(device: torch.device, reduced_precision: bool = True, backbone: nn.Module | None = None,
                    cache_root: Path | None = None) -> str:
    """The identity of the runner :func:`backbone_runner` would pick without calibration photos, without
    building it: int8 only where ``backbone`` has a quantized model in the cache already."""
    name = engine_name(device)
    if name == INT8:
        check = _int8_check(backbone, cache_root) if backbone is not None else None
        if check is not None and check["passed"]:
            return check["identity"]
        name = "openvino"
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
    versions = [importlib.metadata.version(module) for module in engine.modules]  # pip packages, named alike
    key = json.dumps({"backbone": backbone_id, "weights": weights_digest(backbone),
                      "engine": engine.identity, "version": versions, "torch": str(torch.__version__)},
                     sort_keys=True)
    return Path(root) / f"{engine.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}"


def _probe() -> torch.Tensor:
    """Two fixed pseudo-random normalized images: the export's example input and its exactness check."""
    return torch.randn(2, 3, PROBE_SIZE, PROBE_SIZE, generator=torch.Generator().manual_seed(0))


def _float32_copy(backbone: nn.Module) -> nn.Module:
    return copy.deepcopy(backbone).float().cpu().eval().to(memory_format=torch.contiguous_format)


def _min_cosine(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(got, expected, dim=1).min())


def _float32_check(engine: Engine, backbone: nn.Module, staging: Path) -> dict:
    """Export ``backbone`` to ``staging`` and compare the engine with PyTorch float32 on two probe images."""
    plain, probe = _float32_copy(backbone), _probe()
    with torch.inference_mode():
        expected = plain(probe)
    export_backbone_onnx(plain, probe, staging / engine.model_file)
    cosine = _min_cosine(engine.load(staging / engine.model_file, engine.identity)(probe), expected)
    return {"identity": engine.identity, "passed": cosine >= MIN_COSINE,
            "why": f"its features differ from PyTorch's (cosine {cosine:.5f} < {MIN_COSINE})"}


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF's log lines and progress bars (rich, also in Jupyter), and torch's no-CUDA line, off for the duration."""
    console = importlib.import_module("rich").get_console()
    loggers = [logging.getLogger(name) for name in ("nncf", "torch.utils.cpp_extension")]
    console_quiet, levels = console.quiet, [logger.level for logger in loggers]
    console.quiet = True
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        console.quiet = console_quiet
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _int8_check(backbone: nn.Module, root: Path | None) -> dict | None:
    """The check of ``backbone``'s quantized model in the cache, written by this user (another user's cannot be
    checked without photos: see :func:`_load_export`), or None if there is none (or it is damaged)."""
    shared = export_folder(root or cache_dir() / "engines", ENGINES[INT8], backbone, "")
    for folder in _candidates(shared):
        try:
            return json.loads(cachefiles.read_entry(folder / CHECK_FILE)[0])
        except (OSError, ValueError):
            continue
    return None


def _int8_quantize(engine: Engine, backbone: nn.Module, staging: Path, photos: torch.Tensor) -> dict:
    """Quantize ``backbone`` to int8 with NNCF, calibrated on ``photos`` (normalized, [N, 3, H, W]), into ``staging``.

    The check: int8 features against PyTorch float32 on the same photos, median cosine (a guard against a
    broken quantization, on ``CHECK_PHOTOS`` of them; how well int8 classifies is measured in
    tests/test_int8.py and `make bench`).
    """
    with _quiet_nncf():  # importing NNCF logs that torch found no CUDA
        openvino, nncf = import_engine("openvino"), import_engine("nncf")
    plain = _float32_copy(backbone)
    export_backbone_onnx(plain, photos[:CHUNK], staging / "float32.onnx")
    model = openvino.Core().read_model(staging / "float32.onnx")
    batches = [photos[i:i + CHUNK].contiguous().numpy() for i in range(0, len(photos) - CHUNK + 1, CHUNK)]
    with _quiet_nncf():
        quantized = nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches),
                                  preset=nncf.QuantizationPreset.PERFORMANCE)
    openvino.save_model(quantized, staging / engine.model_file)
    (staging / "float32.onnx").unlink()
    calibration = hashlib.sha1(photos.float().contiguous().numpy().tobytes()).hexdigest()[:8]
    identity = f"{engine.identity}/{calibration}"
    checked = photos[:CHECK_PHOTOS]
    with torch.inference_mode():
        expected = torch.cat([plain(chunk) for chunk in checked.split(CHUNK)])  # small chunks: small peak memory
    cosine = torch.nn.functional.cosine_similarity(engine.load(staging / engine.model_file, identity)(checked),
                                                   expected, dim=1)
    median = float(cosine.median())
    return {"identity": identity, "photos": len(photos), "median_cosine": median,
            "passed": median >= INT8_MIN_MEDIAN_COSINE,
            "why": f"int8 features differ too much from float32 (median cosine {median:.4f} < "
                   f"{INT8_MIN_MEDIAN_COSINE})"}


class _Unusable(Exception):
    """A cached export that is damaged, or another user's that does not match PyTorch: made again."""


class ExportMismatch(ValueError):
    """This user's export failed its check against PyTorch: the engine does not run this backbone right."""


STALE_STAGING_S = 600  # an export's staging folder this old, and no longer locked, was left by a killed export
_RUN_ONLY: dict[Path, BackboneRunner] = {}  # exports that could not be cached, made once per process


def _share(staging: Path) -> None:
    """Modes of a finished export: readable by the cache folder's group (setgid kept), writable by its writer only."""
    mask = umask() | 0o022
    for path in staging.iterdir():
        path.chmod(0o666 & ~mask)
    staging.chmod((0o777 & ~mask) | (staging.stat().st_mode & stat.S_ISGID))


def _sweep_staging(root: Path) -> None:
    """Remove this user's staging folders of exports killed over ``STALE_STAGING_S`` ago (never a locked one)."""
    for path in root.glob(".*"):
        if path.is_dir() and not path.is_symlink() and abandoned(path, STALE_STAGING_S):
            shutil.rmtree(path, ignore_errors=True)


def _publish(folder: Path, make: Callable[[Path], dict]) -> None:
    """Write a model and its check (``make(staging)``, plus each file's SHA-256) to a staging folder, locked
    while it is written, then rename it to ``folder``."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    _sweep_staging(folder.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        handle = os.open(staging, os.O_RDONLY)
    except OSError:  # Windows opens no folder: the sweep goes by age there
        handle = None
    try:
        if handle is not None:
            take_lock(handle)
        check = make(staging)
        check["files"] = {path.name: file_digest(path, "sha256") for path in sorted(staging.iterdir())}
        (staging / CHECK_FILE).write_text(json.dumps(check))
        _share(staging)
        try:
            staging.rename(folder)
        except OSError:  # another process published the same export first
            pass
    finally:
        if handle is not None:
            os.close(handle)
        shutil.rmtree(staging, ignore_errors=True)


def _candidates(shared: Path) -> list[Path]:
    """Where an export may be cached: the shared folder, then this user's own (written when another user's
    export in the shared one does not match PyTorch)."""
    me = cachefiles.current_user()
    return [shared] if me is None else [shared, shared.with_name(f"{shared.name}-u{me}")]


def _own_folder(folder: Path) -> bool:
    info = folder.stat()
    return cachefiles.current_user() in (None, info.st_uid) and not cachefiles.others_could_write(info)


def _load_export(engine: Engine, folder: Path, backbone: nn.Module) -> BackboneRunner:
    """Load a cached export. This user's: its files must have the SHA-256s its check recorded (a flipped bit
    is a damaged export); a failed check raises ValueError. Another user's (a shared cache): copied out, then
    its features must match PyTorch float32's on the probe images (an int8 one cannot be checked so: unusable)."""
    data, ours = cachefiles.read_entry(folder / CHECK_FILE, own_only=False)
    check = json.loads(data)
    if ours and _own_folder(folder):
        if not check["passed"]:
            raise ExportMismatch(check["why"])
        if engine.model_file not in check["files"]:
            raise _Unusable("no digest of the model")
        for name, digest in check["files"].items():
            if file_digest(folder / name, "sha256") != digest:
                raise _Unusable(f"{name} changed since it was checked")
        return engine.load(folder / engine.model_file, check["identity"])
    if engine.name == INT8:
        raise _Unusable("another user's int8 export")
    with tempfile.TemporaryDirectory(prefix="catdog-engine-") as private:
        copy = Path(private) / engine.model_file
        copy.write_bytes(cachefiles.read_entry(folder / engine.model_file, own_only=False)[0])
        runner = engine.load(copy, engine.identity)  # the engines keep the model in memory once loaded
    plain, probe = _float32_copy(backbone), _probe()
    with torch.inference_mode():
        expected = plain(probe)
    cosine = _min_cosine(runner(probe), expected)
    if cosine < MIN_COSINE:
        raise _Unusable(f"another user's export differs from PyTorch (cosine {cosine:.5f})")
    return runner


def _engine_runner(engine: Engine, backbone: nn.Module, backbone_id: str, root: Path,
                   make: Callable[[Path], dict]) -> BackboneRunner:
    """The cached export of ``backbone`` for ``engine`` (``make``-d on first use), loaded.

    A damaged cached export is made again; a cache that cannot be written gets one warning and an
    export for this process only (the engines keep the model in memory once loaded).
    """
    shared = export_folder(root, engine, backbone, backbone_id)
    if shared in _RUN_ONLY:
        return _RUN_ONLY[shared]
    candidates = _candidates(shared)
    for folder in reversed(candidates):  # this user's own first: it needs no check against PyTorch
        if (folder / CHECK_FILE).exists():
            try:
                return _load_export(engine, folder, backbone)
            except ExportMismatch:
                raise
            except Exception:  # noqa: BLE001 - damaged or unusable: made again below
                pass
        if folder.exists() and _own_folder(folder):
            shutil.rmtree(folder, ignore_errors=True)  # damaged, or left incomplete by hand
    target = next((folder for folder in candidates if not folder.exists()), candidates[-1])
    try:
        _publish(target, make)
        return _load_export(engine, target, backbone)
    except Exception as error:  # noqa: BLE001 - a full disk shows as torch's RuntimeError too
        if not isinstance(error, _Unusable) and os_error(error) is None:
            raise
        warnings.warn(f"exported backbone not cached ({error}); exported for this run only. "
                      "Set CATDOG_CACHE_DIR to a writable folder to keep it.", stacklevel=3)
    with tempfile.TemporaryDirectory(prefix="catdog-engine-") as tmp:
        _publish(Path(tmp) / target.name, make)
        _RUN_ONLY[shared] = _load_export(engine, Path(tmp) / target.name, backbone)
    return _RUN_ONLY[shared]


def backbone_runner(backbone: nn.Module, backbone_id: str, device: torch.device, reduced_precision: bool = True,
                    cache_root: Path | None = None,
                    calibration: Callable[[], torch.Tensor] | None = None) -> BackboneRunner:
    """The fastest good enough way to run the frozen ``backbone`` on ``device`` (see the module docstring).

    Int8 runs where a quantized model is cached, or is made now from ``calibration()`` (photos, normalized;
    given only by a run with enough photos to extract); otherwise OpenVINO float32. An engine that cannot
    export, load or match this backbone only costs speed: a warning, then the next one (PyTorch last).
    """
    name, root = engine_name(device), cache_root or cache_dir() / "engines"
    if name == INT8:
        engine = ENGINES[INT8]
        try:
            if calibration is not None or _int8_check(backbone, root) is not None:
                # the export folder is keyed without backbone_id: one quantized model per weights and cache
                return _engine_runner(engine, backbone, "", root,
                                      lambda staging: _int8_quantize(engine, backbone, staging, calibration()))
        except Exception as error:  # noqa: BLE001 - int8 is optional: float32 OpenVINO next
            warnings.warn(f"int8 not used for the backbone ({type(error).__name__}: {error}); running it in "
                          f"float32. Set {ENGINE_ENV}=openvino to skip the attempt.", stacklevel=2)
        name = "openvino"
    if name != "torch":
        engine = ENGINES[name]
        try:
            return _engine_runner(engine, backbone, backbone_id, root,
                                  lambda staging: _float32_check(engine, backbone, staging))
        except Exception as error:  # noqa: BLE001 - any failure of an optional engine falls back to PyTorch
            warnings.warn(f"{engine.name} not used for the backbone ({type(error).__name__}: {error}); "
                          f"running it in PyTorch. Set {ENGINE_ENV}=torch to skip the attempt.", stacklevel=2)
    return TorchRunner(backbone, device, reduced_precision)
