"""The frozen backbone's precision per device, forced on a CPU: a T4 (no bfloat16) gets float16, never bfloat16."""

from __future__ import annotations

import pytest
import torch

from catdog_lib import devices


@pytest.mark.parametrize(("name", "capability", "expected"), [
    ("K80", (3, 7), torch.float32), ("P100", (6, 0), torch.float32), ("V100", (7, 0), torch.float16),
    ("T4", (7, 5), torch.float16), ("A100", (8, 0), torch.float16), ("L4", (8, 9), torch.float16),
    ("H200", (9, 0), torch.float16)])
def test_cuda_precision_by_compute_capability(name: str, capability: tuple[int, int], expected: torch.dtype) -> None:
    assert devices.precision_for("cuda", capability) == expected, name
    assert devices.precision_for("cuda", capability, cpu_bf16=True) != torch.bfloat16


def test_a_gpu_of_unknown_capability_gets_float16() -> None:
    assert devices.precision_for("cuda") == torch.float16


def test_cpu_and_mps_precision() -> None:
    assert devices.precision_for("cpu", cpu_bf16=True) == torch.bfloat16
    assert devices.precision_for("cpu", cpu_bf16=False) == torch.float32
    assert devices.precision_for("mps", cpu_bf16=True) == torch.float32


def test_a_t4_runs_the_frozen_backbone_in_float16(monkeypatch: pytest.MonkeyPatch) -> None:
    """inference_dtype and the one-line description read the GPU's capability: forced to a T4's here."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    cuda = torch.device("cuda")
    assert devices.inference_dtype(cuda) == torch.float16
    assert devices.inference_dtype(cuda, enabled=False) == torch.float32
    assert devices.describe_device(cuda) == ("device: cuda (Tesla T4, compute capability 7.5); precision: float16 "
                                             "for the frozen backbone, float32 for training")


def test_the_cpu_line_names_this_cpus_precision() -> None:
    dtype = "bfloat16" if devices.cpu_has_fast_bf16() else "float32"
    assert devices.describe_device(torch.device("cpu")) == (
        f"device: cpu (CPU); precision: an inference engine's (OpenVINO: float32, or int8 on large runs) or "
        f"PyTorch's {dtype} for the frozen backbone, float32 for training")
