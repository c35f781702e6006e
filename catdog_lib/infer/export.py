"""Export a checkpoint to ONNX for use outside PyTorch (:func:`catdog_lib.infer.evaluation.load_onnx` runs it).

The exported graph is the whole classifier, normalization included. Its input ``image`` is a float32
batch N x 3 x S x S of RGB values in [0, 1] (a photo resized to S x S, as ``ToTensor`` gives it; N is
free); its outputs are ``logits`` and ``probabilities`` (N x classes). The file's metadata holds what
a program elsewhere needs to use it: image size, mean/std (applied inside), class names, architecture.
"""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from .. import __version__
from ..data.transforms import Preprocessing
from ..errors import CatdogError
from ..files import atomic_write
from ..model.modelfile import ONNX_FORMAT
from ..names import check_name_length
from .evaluation import LoadedModel, load_model

INPUT_DOC = "float32 N x 3 x S x S, RGB in [0, 1]: the photo resized to S x S (bilinear), not normalized"


class Deployable(nn.Module):
    """What the ONNX graph computes: normalize with the backbone's mean/std, classify, softmax."""

    def __init__(self, model: nn.Module, prep: Preprocessing):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(prep.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(prep.std).view(1, 3, 1, 1))

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model((image - self.mean) / self.std)
        return logits, logits.softmax(1)


def onnx_metadata(meta: dict) -> dict[str, str]:
    """The ONNX metadata (string to string) describing a checkpoint's model and its preprocessing."""
    prep = Preprocessing.from_dict(meta["preprocessing"])
    return {
        "format": ONNX_FORMAT,
        "arch": meta["arch"],
        "classes": json.dumps(list(meta["classes"])),
        "image_size": str(prep.image_size),
        "mean": json.dumps(list(prep.mean)),
        "std": json.dumps(list(prep.std)),
        "input": INPUT_DOC.replace("S x S", f"{prep.image_size} x {prep.image_size}"),
        "normalization": "inside the model: (image - mean) / std per channel",
        "outputs": "logits, probabilities (softmax of logits); N x classes, classes in the order of 'classes'",
        "recipe": str(meta.get("recipe", "")),
        "catdog_version": __version__,
    }


def _refuse_overwrite(out: Path, force: bool) -> None:
    check_name_length(out, "--out file name")
    if out.is_dir():
        raise CatdogError(f"{out}: is a folder; pass a file name such as {out / 'model.onnx'}.")
    if out.exists() and not force:
        raise CatdogError(f"{out}: already exists; pass --force to replace it, or choose another --out.")


def export_onnx(checkpoint: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write the checkpoint's whole model as ONNX (float32, any batch size) to ``out``, atomically.

    An existing ``out`` is kept unless ``force``; a failed export leaves no partial file, and the temporary
    files of exports killed earlier (``.NAME.*.tmp``, this user's, no longer locked) are removed.
    """
    out = Path(out)
    _refuse_overwrite(out, force)
    loaded = load_model(checkpoint, "cpu")
    # the temporary file is made (and locked) first: an unwritable folder fails before the export's work
    atomic_write(out, lambda file: _write_onnx(loaded, Path(checkpoint).name, file,
                                               lambda: _refuse_overwrite(out, force)))
    return out


def _write_onnx(loaded: LoadedModel, source: str, file: BinaryIO, before_saving: Callable[[], None]) -> None:
    """Trace the model to ONNX, add the metadata, check it, call ``before_saving`` and save it to ``file``.

    TorchScript's exporter (torch marks it as legacy): 2-3 s on 2 cores, where torch.export's took ~12 s
    for the same graph (docs/BENCHMARKS.md); engine.export_backbone_onnx exports the backbone the same way.
    """
    import onnx

    model = Deployable(loaded.model.float().to(memory_format=torch.contiguous_format), loaded.prep).eval()
    size = loaded.prep.image_size
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
            torch.onnx.export(model, (torch.rand(2, 3, size, size),), buffer, dynamo=False, input_names=["image"],
                              output_names=["logits", "probabilities"],
                              dynamic_axes={name: {0: "batch"} for name in ("image", "logits", "probabilities")})
    except Exception as error:  # tracing and the ONNX translation raise many types; name the first line
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CatdogError(f"{source}: cannot export the {loaded.meta['arch']} model to ONNX ({first}).") from None
    proto = onnx.load_from_string(buffer.getvalue())
    meta = onnx_metadata(loaded.meta)
    proto.doc_string = f"catdog {meta['arch']} classifier for {', '.join(loaded.classes)} (from {source}). " \
                       f"Input: {meta['input']}."
    onnx.helper.set_model_props(proto, meta)
    onnx.checker.check_model(proto)
    before_saving()  # e.g. a file that appeared at ``out`` during the export is not replaced either
    file.write(proto.SerializeToString())  # what onnx.save_model writes (no external data: a few MB)
