"""Pick CUDA, Apple MPS or CPU, and make a model fast for inference there."""

from __future__ import annotations

import contextlib
import os
import platform
import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .errors import CatdogError


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


DEVICE_NAMES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then CPU; ``cpu``/``cuda``/``mps`` force one."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in DEVICE_NAMES:
        raise CatdogError(f"unknown device {name!r}; use auto, cpu, cuda or mps.")
    if name == "cuda" and not torch.cuda.is_available():
        raise CatdogError("--device cuda: no CUDA GPU is visible. Use --device auto or cpu.")
    if name == "mps" and not torch.backends.mps.is_available():
        raise CatdogError("--device mps: Apple MPS is not available. Use --device auto or cpu.")
    return torch.device(name)


def to_fast_layout(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Move to ``device`` in channels_last memory layout (about 2x faster convolutions on CPU)."""
    return module.to(device=device, memory_format=torch.channels_last)


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN runs bfloat16 natively (AVX512-BF16 or AMX): about 2-3x faster inference."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and bool(torch.cpu._is_avx512_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def precision_for(device_type: str, capability: tuple[int, int] | None = None,
                  cpu_bf16: bool = False) -> torch.dtype:
    """The frozen backbone's precision on a device, from what it is (no GPU needed: tests force any case).

    CUDA: float16 from compute capability 7.0 (tensor cores: V100, T4 7.5, A100, L4, H100/H200 9.0) or when it is
    unknown, float32 below. Never bfloat16 on CUDA: a T4 has none, and where there is some float16 runs on the same tensor cores
    (not measured faster or slower here: no GPU). CPU: bfloat16 where oneDNN runs it natively. MPS: float32.
    """
    if device_type == "cuda":
        return torch.float32 if capability is not None and tuple(capability) < (7, 0) else torch.float16
    if device_type == "cpu" and cpu_bf16:
        return torch.bfloat16
    return torch.float32


def inference_dtype(device: torch.device, enabled: bool = True) -> torch.dtype:
    """:func:`precision_for` this machine's ``device`` (float32 when not ``enabled``)."""
    if not enabled:
        return torch.float32
    visible = device.type == "cuda" and torch.cuda.is_available()
    capability = torch.cuda.get_device_capability(device) if visible else None
    return precision_for(device.type, capability, device.type == "cpu" and cpu_has_fast_bf16())


def describe_device(device: torch.device, reduced_precision: bool = True) -> str:
    """One line: the device (the GPU's name and capability) and the precisions used on it."""
    name = "CPU"
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        name = f"{torch.cuda.get_device_name(device)}, compute capability {major}.{minor}"
    elif device.type == "mps":
        name = "Apple GPU"
    frozen = str(inference_dtype(device, reduced_precision)).removeprefix("torch.")
    if device.type == "cpu":  # features.py runs the frozen backbone on an inference engine when one is installed
        frozen = f"an inference engine's (OpenVINO: float32, or int8 on large runs) or PyTorch's {frozen}"
    return f"device: {device.type} ({name}); precision: {frozen} for the frozen backbone, float32 for training"


def inference_autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Autocast to :func:`inference_dtype` (a no-op in float32)."""
    dtype = inference_dtype(device, enabled)
    return contextlib.nullcontext() if dtype == torch.float32 else torch.autocast(device.type, dtype=dtype)


# The instruction sets that decide a backbone's speed on a CPU (docs/BENCHMARKS.md quotes figures per class)
ISA_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "VNNI", "avx_vnni": "AVX-VNNI",
             "avx512_bf16": "BF16", "amx_tile": "AMX"}
ISA_CAP_ENV = "ONEDNN_MAX_CPU_ISA"  # oneDNN (PyTorch's and OpenVINO's) uses no instruction set above this


def instruction_sets(cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """The ISA_FLAGS the first CPU in /proc/cpuinfo has (empty where it cannot be read, e.g. not Linux);
    only AVX2 under ONEDNN_MAX_CPU_ISA=AVX2 (how `make bench ARGS=--avx2` plays a laptop without AVX-512)."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith(("flags", "features")):
                flags = set(line.split(":", 1)[1].split())
                found = [name for flag, name in ISA_FLAGS.items() if flag in flags]
                return [name for name in found if name == "AVX2"] if os.environ.get(ISA_CAP_ENV) == "AVX2" else found
    return []


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    with contextlib.suppress(OSError):
        for line in cpuinfo.read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_class(isa: Sequence[str]) -> str:
    """The class figures are quoted for: the best of AMX, AVX-512 with BF16, AVX-512, AVX2, other."""
    for needed, label in (("AMX", "AMX"), ("BF16", "AVX512-BF16"), ("AVX-512", "AVX-512"), ("AVX2", "AVX2")):
        if needed in isa:
            return label
    return "no AVX2"


def cpu_has_int8_dot(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True where int8 convolutions have a dot-product instruction (VNNI, AVX-VNNI or AMX): 1.9x float32 on
    the default backbone; AVX2 alone gave 1.3x, which quantizing (~7 s) does not pay back (docs/BENCHMARKS.md)."""
    return any(name in instruction_sets(cpuinfo) for name in ("VNNI", "AVX-VNNI", "AMX"))
