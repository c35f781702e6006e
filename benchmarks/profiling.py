"""Where the time goes: JPEG decode + resize with and without draft mode, and the default backbone's
forward pass on every engine and precision installed, timed side by side in one process on the same
batch of photos, each compared with PyTorch float32 (the lowest cosine similarity of a photo's features).
"""

from __future__ import annotations

import copy
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmarks.timing import PROFILE_BATCH, split_photos, sync
from catdog_lib import engine
from catdog_lib.data.images import load_rgb
from catdog_lib.data.transforms import eval_transform
from catdog_lib.devices import instruction_sets, pick_device
from catdog_lib.model.backbones import DEFAULT_ARCH, create_model, get_arch
from catdog_lib.model.engine import ENGINE_ENV, ENGINES, backbone_runner, engine_identity, engine_name


def _rate(work: Callable[[], object], n_items: int, repeats: int) -> float:
    """Items/s of ``work`` (which handles ``n_items``): its fastest of ``repeats`` runs after a warm-up run."""
    work()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return n_items / min(times)


def _forward_variants(backbone: nn.Module, device: torch.device, tmp: Path,
                      batch: torch.Tensor) -> dict[str, tuple[Callable, bool]]:
    """variant name: (images -> features, whether the default recipe uses it), for every engine and precision."""
    picked = engine_identity(device)
    reduced = torch.float16 if device.type == "cuda" else torch.bfloat16
    variants = {}
    for dtype in (torch.float32, reduced):
        for layout in (torch.contiguous_format, torch.channels_last):
            model = copy.deepcopy(backbone).to(memory_format=layout)

            def forward(images: torch.Tensor, model: nn.Module = model, dtype: torch.dtype = dtype,
                        layout: torch.memory_format = layout) -> torch.Tensor:
                with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                    features = model(images.contiguous(memory_format=layout)).float()
                sync(device)
                return features

            precision = "fp32" if dtype == torch.float32 else f"{str(dtype).removeprefix('torch.')} autocast"
            layout_name = "channels_last" if layout == torch.channels_last else "contiguous"
            identity = "torch:" + ("float32" if dtype == torch.float32 else str(dtype).removeprefix("torch."))
            variants[f"PyTorch {precision}, {layout_name}"] = (
                forward, identity == picked and layout == torch.channels_last)
    if device.type == "cpu":
        default = engine_name(device)
        for name, choice in ENGINES.items():
            if not choice.installed():
                continue
            os.environ[ENGINE_ENV] = name
            runner = backbone_runner(backbone, f"{DEFAULT_ARCH}:default", device, cache_root=tmp,
                                     calibration=lambda: batch.cpu())  # int8: calibrated on this batch
            variants[f"{choice.modules[0]} {choice.precision}"] = (runner, name == default)
            if name == "openvino" and {"BF16", "AMX"} & set(instruction_sets()):
                # bfloat16 inference hint: fast, but not exact enough for the library (no bf16 without them)
                bf16 = engine.OpenVINORunner(next(tmp.glob(f"openvino-*/{engine.MODEL_FILE}")))
                bf16.config["INFERENCE_PRECISION_HINT"] = "bf16"
                variants["openvino bf16 (not used: cosine < 0.999)"] = (bf16, False)
        os.environ.pop(ENGINE_ENV)
    return variants


def profile_part(root: Path, repeats: int) -> dict[str, Any]:
    """Images/s of decode+resize (draft or not), and of the backbone on each engine and precision, batch 32.

    The forward variants are timed in turns (one batch each per round, best round kept), so a change in
    the machine's load hits them alike; each is compared with PyTorch float32 on the same batch.
    """
    device = pick_device()
    prep = get_arch(DEFAULT_ARCH).prep
    paths = [path for path, _ in split_photos(root).train[:PROFILE_BATCH]]
    transform = eval_transform(prep)
    rows = []
    for variant, min_size in (("full decode (tutorial)", None), ("JPEG draft mode", prep.image_size)):
        rate = _rate(lambda: [transform(load_rgb(path, min_size)) for path in paths], len(paths), repeats)
        rows.append({"stage": "JPEG decode + resize", "variant": variant, "images_per_s": rate, "ours": bool(min_size)})
    batch = torch.stack([transform(load_rgb(path, prep.image_size)) for path in paths]).to(device)
    backbone = create_model(DEFAULT_ARCH, 2).backbone.eval().to(device)
    with tempfile.TemporaryDirectory(prefix="catdog-bench-") as tmp:
        variants = _forward_variants(backbone, device, Path(tmp), batch)
        reference = variants["PyTorch fp32, contiguous"][0](batch).cpu()
        best = dict.fromkeys(variants, float("inf"))
        cosine = {}
        for name, (forward, _) in variants.items():  # warm-up: compiles each engine for this shape
            features = forward(batch).cpu()
            cosine[name] = float(torch.nn.functional.cosine_similarity(features, reference, dim=1).min())
        for _ in range(repeats):
            for name, (forward, _) in variants.items():
                started = time.perf_counter()
                forward(batch)
                best[name] = min(best[name], time.perf_counter() - started)
    for name, (_, ours) in variants.items():
        rows.append({"stage": "backbone forward", "variant": name, "images_per_s": len(paths) / best[name],
                     "ours": ours, "min_cosine": cosine[name]})
    return {"arch": DEFAULT_ARCH, "batch": len(paths), "repeats": repeats, "rows": rows}
