"""Check every field read from a model file (a checkpoint or an exported ONNX model) before it is used.

A tampered or damaged file gets one line naming the file and the field, never a traceback, a 9 GB
image buffer (``image_size=40000``), a 2**40-wide head or a ``nan`` probability (``std=0``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..data.transforms import Preprocessing
from ..errors import CatdogError

MIN_IMAGE_SIZE, MAX_IMAGE_SIZE = 16, 600  # 600: the largest input of any ImageNet backbone (EfficientNet-B7)
MAX_CLASSES = 1000
MAX_HEAD_WIDTH = 1 << 16
MAX_HEAD_LAYERS = 32
RECIPES = ("features", "finetune", "whole")  # training.RECIPES (tests/test_recipe_matrix.py checks)
ONNX_FORMAT = "catdog-onnx/1"  # an exported model's metadata "format": written by export, read by evaluation


def _bad(path: str | Path, field: str, value: object, must: str) -> CatdogError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return CatdogError(f"{path}: the model file's {field} is {shown}, but must be {must}; the file is damaged or "
                       "was not written by catdog. Train it again, or export it again with `catdog export`.")


def _number(path: str | Path, field: str, value: Any, low: float, high: float, integer: bool = False) -> Any:
    """``value`` when it is a number (an int if ``integer``) from ``low`` to ``high``; nan is refused."""
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise _bad(path, field, value, f"{'an integer' if integer else 'a number'} from {low:g} to {high:g}")
    return value


def _triple(path: str | Path, field: str, value: Any, low: float, high: float) -> tuple[float, float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        raise _bad(path, field, value, "3 numbers, one per RGB channel")
    return tuple(float(_number(path, f"{field}[{i}]", item, low, high)) for i, item in enumerate(value))


def check_preprocessing(path: str | Path, data: Any) -> Preprocessing:
    """The input size and normalization, each in the range an image model in [0, 1] RGB uses."""
    if not isinstance(data, Mapping):
        raise _bad(path, "preprocessing", data, "a mapping of image_size, mean and std")
    size = _number(path, "image_size", data.get("image_size"), MIN_IMAGE_SIZE, MAX_IMAGE_SIZE, integer=True)
    mean = _triple(path, "mean", data.get("mean"), 0.0, 1.0)
    std = _triple(path, "std", data.get("std"), 0.01, 1.0)  # 0 would divide by zero: nan probabilities
    return Preprocessing(size, mean, std)


def check_classes(path: str | Path, value: Any, outputs: int | None) -> list[str]:
    """2 to MAX_CLASSES different, non-empty class names, as many as the model's ``outputs`` (when known)."""
    if (not isinstance(value, list) or not 2 <= len(value) <= MAX_CLASSES
            or not all(isinstance(name, str) and name.strip() for name in value) or len(set(value)) != len(value)):
        raise _bad(path, "classes", value, f"a list of 2 to {MAX_CLASSES} different class names")
    if outputs is not None and outputs != len(value):
        raise _bad(path, "classes", value, f"{outputs} names, one per output of its weights")
    return value


def _head_outputs(path: str | Path, state: Mapping[str, torch.Tensor]) -> int:
    """How many outputs the head's last weight matrix gives."""
    weights = [tensor for key, tensor in state.items()
               if key.startswith("head.") and key.endswith("weight") and tensor.ndim == 2]
    if not weights:
        raise _bad(path, "state_dict", "no head.*weight", "a model's weights, head included")
    return int(weights[-1].shape[0])


def _check_head(path: str | Path, spec: Any, state: Mapping[str, torch.Tensor]) -> None:
    """A saved head: known layers whose sizes are those of the weights stored for them."""
    from .backbones import HEAD_LAYERS

    if not isinstance(spec, list) or not 1 <= len(spec) <= MAX_HEAD_LAYERS:
        raise _bad(path, "head", spec, f"a list of 1 to {MAX_HEAD_LAYERS} [layer, arguments] pairs")
    for index, layer in enumerate(spec):
        field = f"head[{index}]"
        if (not isinstance(layer, (list, tuple)) or len(layer) != 2 or layer[0] not in HEAD_LAYERS
                or not isinstance(layer[1], dict)):
            raise _bad(path, field, layer, f"[layer, arguments] with a layer among {', '.join(HEAD_LAYERS)}")
        name, kwargs = layer
        weight = state.get(f"head.{index}.weight")
        shape = tuple(weight.shape) if isinstance(weight, torch.Tensor) else None
        if name == "Linear":
            sizes = tuple(_number(path, f"{field}.{key}", kwargs.get(key), 1, MAX_HEAD_WIDTH, integer=True)
                          for key in ("out_features", "in_features"))
            expected, keys = sizes, {"in_features", "out_features", "bias"}
        elif name == "BatchNorm1d":
            expected = (_number(path, f"{field}.num_features", kwargs.get("num_features"), 1, MAX_HEAD_WIDTH,
                                integer=True),)
            keys = {"num_features"}
        else:
            expected, keys = None, {"p"} if name == "Dropout" else set()
            _number(path, f"{field}.p", kwargs.get("p", 0.0), 0.0, 1.0)
        if set(kwargs) - keys or (expected is not None and shape != expected):
            raise _bad(path, field, layer, f"a layer whose sizes match its stored weights {shape}")


def check_checkpoint(path: str | Path, data: dict) -> dict:
    """A loaded checkpoint's metadata (returned) and weights: every field the course reads, checked."""
    from .backbones import ARCHS

    meta, state = data.get("meta"), data.get("state_dict")
    if not isinstance(meta, dict):
        raise _bad(path, "meta", meta, "a mapping (arch, classes, preprocessing)")
    if not isinstance(state, dict) or not all(isinstance(key, str) and isinstance(value, torch.Tensor)
                                              for key, value in state.items()):
        raise _bad(path, "state_dict", type(state).__name__, "a mapping of names to tensors")
    arch = meta.get("arch")
    if not isinstance(arch, str) or arch not in ARCHS:
        raise _bad(path, "arch", arch, f"one of {', '.join(ARCHS)}")
    if meta.get("recipe", "finetune") not in RECIPES:
        raise _bad(path, "recipe", meta.get("recipe"), " or ".join(RECIPES))
    if not isinstance(meta.get("backbone_weights", ""), str):
        raise _bad(path, "backbone_weights", meta["backbone_weights"], "a name")
    check_preprocessing(path, meta.get("preprocessing"))
    if meta.get("head") is not None:
        _check_head(path, meta["head"], state)
    check_classes(path, meta.get("classes"), _head_outputs(path, state))
    return meta


def _json_field(path: str | Path, meta: Mapping[str, str], field: str) -> Any:
    if field not in meta:
        raise CatdogError(f"{path}: the model file's metadata has no '{field}'; export it again with `catdog export`.")
    try:
        return json.loads(meta[field])
    except ValueError:
        raise _bad(path, field, meta[field], "JSON") from None


def _fits(shape: Sequence[Any], expected: Sequence[int | None]) -> bool:
    """Whether an ONNX shape (ints, or names and None for free dimensions) can take ``expected`` (None: any)."""
    return len(shape) == len(expected) and all(
        want is None or not isinstance(have, int) or have == want for have, want in zip(shape, expected))


def check_onnx(path: str | Path, meta: Mapping[str, str], inputs: Sequence[Any],
               outputs: Sequence[Any]) -> tuple[list[str], Preprocessing]:
    """An exported model's classes and preprocessing from its metadata, checked against its input and outputs."""
    prep = check_preprocessing(path, {field: _json_field(path, meta, field) for field in ("image_size", "mean", "std")})
    classes = check_classes(path, _json_field(path, meta, "classes"), None)
    size = prep.image_size
    if [node.name for node in inputs] != ["image"] or inputs[0].type != "tensor(float)" \
            or not _fits(inputs[0].shape, (None, 3, size, size)):
        shown = [(node.name, node.type, node.shape) for node in inputs]
        raise _bad(path, "input", shown, f"one float tensor 'image' of shape N x 3 x {size} x {size}")
    found = {node.name: node for node in outputs}
    if "probabilities" not in found or not _fits(found["probabilities"].shape, (None, len(classes))):
        shown = [(node.name, node.shape) for node in outputs]
        raise _bad(path, "outputs", shown, f"'probabilities' of shape N x {len(classes)} (one per class)")
    return classes, prep
