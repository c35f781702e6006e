"""Reliability, round 3 (issue 22): bombs, tampered model files, hangs and odd names on the new surfaces.

Every hostile input is built for real and small: a progressive JPEG whose header claims 40000x40000
pixels, checkpoints and ONNX files with tampered metadata, a FIFO named like a photo, file names that
are not UTF-8 or hold tabs, a zip bomb, an oversized photo behind a loopback HTTP server. Memory is
measured in a subprocess under a 2 GiB heap limit, so a regression fails instead of
swapping the machine.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from catdog_lib.images import BadImageError, load_rgb
from conftest import REPO, make_checkpoint, make_dataset, make_image, png_claiming, run_catdog, subprocess_env

GIB = 1 << 30


def run_bounded(code: str, *args: str | Path, limit: int = 2 * GIB, timeout: float = 60) -> tuple[str, int]:
    """Run a Python snippet with at most ``limit`` bytes of heap (RLIMIT_DATA: torch maps more address space than
    it uses, so RLIMIT_AS would stop its import); (its output, its peak RSS in bytes)."""
    bounded = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_DATA, (%d, %d))\n" % (limit, limit)
               + code + "\nprint('peak', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    result = subprocess.run([sys.executable, "-c", bounded, *map(str, args)], capture_output=True,
                            encoding="utf-8", timeout=timeout, env=subprocess_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr
    *lines, peak = result.stdout.splitlines()
    return "\n".join(lines), int(peak.split()[1])


# --- 1. progressive-JPEG decompression bombs ---------------------------------------------------------


def progressive_jpeg_claiming(path: Path, width: int, height: int, mode: str = "L") -> Path:
    """A small progressive JPEG whose frame header (SOF2) claims ``width`` x ``height`` pixels."""
    buffer = io.BytesIO()
    Image.new(mode, (64, 64), 128).save(buffer, "JPEG", progressive=True)
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc2")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


LOAD = ("from catdog_lib.images import BadImageError, load_rgb\n"
        "try:\n    load_rgb(sys.argv[1], min_size=int(sys.argv[2]) or None)\n"
        "except BadImageError as error:\n    print(error)")


@pytest.mark.parametrize("min_size", [224, 0], ids=["draft", "full"])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_a_progressive_jpeg_bomb_is_refused_before_decoding(tmp_path: Path, mode: str, min_size: int) -> None:
    bomb = progressive_jpeg_claiming(tmp_path / "bomb.jpg", 40_000, 40_000, mode)
    assert bomb.stat().st_size < 10_000
    message, peak = run_bounded(LOAD, bomb, min_size)
    assert message.startswith(f"{bomb}: claims 40000x40000 pixels, over the "), message
    assert "-pixel limit for a progressive JPEG" in message and "decompression bomb" in message
    assert message.count("pixel") == 2 and message.count("limit") == 1  # one limit named, once
    assert peak < 1e9, peak  # 3.2 GB before


def test_a_progressive_jpeg_within_the_memory_budget_is_decoded(tmp_path: Path) -> None:
    # 12000x9000 gray (108 Mpx, over the plain limit): a 216 MB coefficient buffer, under the budget, so it is
    # decoded in draft mode (its missing scans read as gray), as a baseline JPEG of that size is
    progressive = progressive_jpeg_claiming(tmp_path / "scan.jpg", 12_000, 9_000)
    message, peak = run_bounded(LOAD, progressive, 224)
    assert message == "", message  # loaded
    assert 200e6 < peak < 1.0e9, peak


def test_a_png_bomb_message_names_one_pixel_limit(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(png_claiming(40_000, 40_000))
    with pytest.raises(BadImageError) as caught:
        load_rgb(tmp_path / "bomb.png")
    assert str(caught.value) == (f"{tmp_path / 'bomb.png'}: claims 40000x40000 pixels, over the 89,478,485-pixel "
                                 "limit (a decompression bomb or a scan); resize it below that")


def test_data_check_and_predict_refuse_a_progressive_bomb_in_bounded_memory(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    bomb = progressive_jpeg_claiming(root / "cats" / "bomb.jpg", 40_000, 40_000)
    code = "from catdog_lib.cli import main\nprint('status', main(sys.argv[1:]))"
    output, peak = run_bounded(code, "data", "check", root, limit=3 * GIB)
    assert f"{bomb}: claims 40000x40000 pixels" in output and "status 1" in output, output
    assert peak < 2e9, peak


# --- 3. FIFOs and devices named like photos --------------------------------------------------------------


def test_a_fifo_named_like_a_photo_is_refused_without_opening_it(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    fifo = root / "cats" / "pipe.jpg"
    os.mkfifo(fifo)
    result = run_catdog("data", "check", root, timeout=60)  # it hung here, reading the pipe
    assert result.returncode == 1 and f"{fifo}: is a FIFO" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(BadImageError, match="is a FIFO .named pipe., not a photo file; only regular files"):
        load_rgb(fifo)
    with pytest.raises(BadImageError, match="device or socket"):
        load_rgb("/dev/zero")


# --- 2. tampered model files -------------------------------------------------------------------------------


def tampered_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoints each with one field changed: {case: (file, what its error must name)}."""
    import torch

    from catdog_lib.checkpoint import atomic_save

    base = torch.load(make_checkpoint(folder / "good.pt", ["cats", "dogs", "birds"]), weights_only=True)
    head = [["Dropout", {"p": 0.2}], ["Linear", {"in_features": 1280, "out_features": 2**40, "bias": True}]]
    changes = {
        "image-size-huge": (("preprocessing", "image_size"), 40_000, "image_size is 40000"),
        "image-size-zero": (("preprocessing", "image_size"), 0, "image_size is 0"),
        "image-size-negative": (("preprocessing", "image_size"), -224, "image_size is -224"),
        "image-size-text": (("preprocessing", "image_size"), "224", "image_size is '224'"),
        "std-zero": (("preprocessing", "std"), [0, 0, 0], "std[0] is 0"),
        "mean-nan": (("preprocessing", "mean"), [float("nan")] * 3, "mean[0] is nan"),
        "mean-missing": (("preprocessing", "mean"), None, "mean is None"),
        "no-preprocessing": (("preprocessing",), None, "preprocessing is None"),
        "huge-head": (("head",), head, "head[1].out_features is 1099511627776"),
        "too-few-classes": (("classes",), ["cats", "dogs"], "but must be 3 names, one per output"),
        "arch-list": (("arch",), ["x"], "arch is ['x']"),
        "no-meta": ((), None, "meta is None"),
    }
    cases = {}
    for case, (keys, value, needle) in changes.items():
        data = {**base, "meta": json.loads(json.dumps(base["meta"]))}
        parent, *rest = ("meta", *keys)
        target = data
        for key in (parent, *rest)[:-1]:
            target = target[key]
        if value is None:
            target.pop((parent, *rest)[-1])
        else:
            target[(parent, *rest)[-1]] = value
        atomic_save(data, folder / f"{case}.pt")
        cases[case] = (folder / f"{case}.pt", needle)
    return cases


def tiny_onnx(path: Path, meta: dict[str, str], input_name: str = "image", size: int | str = "S",
              n_classes: int = 2) -> Path:
    """A real ONNX classifier (mean colour times a matrix, softmax) with ``meta`` as its metadata."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.ones((3, n_classes), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", [input_name], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "tiny", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_classes]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", n_classes])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, meta)
    onnx.save_model(model, str(path))
    return path


def tampered_onnx_files(folder: Path) -> dict[str, tuple[Path, str]]:
    good = {"format": "catdog-onnx/1", "arch": "tiny", "classes": '["cats", "dogs"]', "image_size": "32",
            "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]"}
    cases = {
        "onnx-image-size-huge": ({**good, "image_size": "40000"}, {}, "image_size is 40000"),
        "onnx-no-mean": ({k: v for k, v in good.items() if k != "mean"}, {}, "metadata has no 'mean'"),
        "onnx-classes-not-json": ({**good, "classes": "[cats"}, {}, "classes is '[cats', but must be JSON"),
        "onnx-std-zero": ({**good, "std": "[0, 0, 0]"}, {}, "std[0] is 0"),
        "onnx-input-name": (good, {"input_name": "pixels"}, "the model file's input is [('pixels'"),
        "onnx-input-shape": (good, {"size": 99}, "of shape N x 3 x 32 x 32"),
        "onnx-three-outputs": (good, {"n_classes": 3}, "'probabilities' of shape N x 2"),
    }
    return {case: (tiny_onnx(folder / f"{case}.onnx", meta, **kwargs), needle)
            for case, (meta, kwargs, needle) in cases.items()}


PREDICT_EACH = """
import contextlib, io, json
from catdog_lib.cli import main
photo, cases = sys.argv[1], json.loads(sys.argv[2])
for case, (flag, model) in cases.items():
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(["predict", flag, model, photo])
    except BaseException as error:
        status, err = "raised", io.StringIO(f"{type(error).__name__}: {error}")
    print(json.dumps([case, status, err.getvalue()]))
"""


def test_tampered_model_files_are_one_line_naming_the_file_and_the_field(tmp_path: Path) -> None:
    photo = make_image(tmp_path / "cat.jpg", size=(40, 30))
    cases = {**tampered_checkpoints(tmp_path), **tampered_onnx_files(tmp_path)}
    assert tiny_onnx(tmp_path / "good.onnx", json.loads(json.dumps({
        "format": "catdog-onnx/1", "arch": "tiny", "classes": '["cats", "dogs"]', "image_size": "32",
        "mean": "[0.5, 0.5, 0.5]", "std": "[0.5, 0.5, 0.5]"})))
    arguments = {case: ("--model" if path.suffix == ".onnx" else "--checkpoint", str(path))
                 for case, (path, _) in cases.items()}
    arguments["good-onnx"] = ("--model", str(tmp_path / "good.onnx"))
    output, peak = run_bounded(PREDICT_EACH, photo, json.dumps(arguments), timeout=180)
    results = {case: (status, err) for case, status, err in map(json.loads, output.splitlines())}
    assert results.pop("good-onnx")[0] == 0
    for case, (path, needle) in cases.items():
        status, err = results[case]
        assert status == 2 and err.count("\n") == 1 and "Traceback" not in err, (case, status, err)
        assert err.startswith(f"catdog: error: {path}: the model file's ") or "metadata has no" in err, (case, err)
        assert needle in err, (case, needle, err)
    assert peak < 2e9, peak
