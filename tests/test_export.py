"""`catdog export` to ONNX, ONNX Runtime against PyTorch on real photos, and `catdog predict` at scale."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from conftest import (add_bad_files, assert_clean_error, make_checkpoint, make_dataset, make_image, public_env,
                      run_catdog)
from trained import real_photos, train_on_real_photos

from catdog_lib.infer.evaluation import load_model, load_onnx
from catdog_lib.model.modelfile import ONNX_FORMAT
from catdog_lib.data.images import load_rgb
from catdog_lib.data.transforms import eval_transform

N_PER_CLASS = 8  # real test photos of each class compared between the two runtimes


def catdog(capsys: pytest.CaptureFixture, *args: str | Path) -> subprocess.CompletedProcess:
    """`catdog ARGS` in this process (torch is imported already: seconds cheaper than a subprocess)."""
    from catdog_lib.cli import main

    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exit:  # argparse's errors
        code = exit.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["catdog", *map(str, args)], code, out, err)


@pytest.fixture(scope="module")
def real_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint trained on real photos and its ONNX export, both made by the real CLI."""
    root = os.environ.get("CATDOG_DATA_DIR")
    if not root or not (Path(root) / "training_set").is_dir():
        pytest.skip("real photos not present: set CATDOG_DATA_DIR to the cat-and-dog subset")
    base = tmp_path_factory.mktemp("export")
    checkpoint = train_on_real_photos(Path(root), base)
    onnx_path = base / "model.onnx"
    result = run_catdog("export", "--checkpoint", checkpoint, "--out", onnx_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert f"wrote {onnx_path}" in result.stdout
    photos = [p for name in ("cats", "dogs") for p in real_photos(Path(root), "test_set", name, N_PER_CLASS)]
    return {"checkpoint": checkpoint, "onnx": onnx_path, "root": Path(root), "photos": photos}


def pytorch_float32(checkpoint: Path, photos: list[Path]) -> np.ndarray:
    """The course's own way: load_model, eval_transform, the whole network in float32, softmax."""
    loaded = load_model(checkpoint, "cpu")
    transform = eval_transform(loaded.prep)
    images = torch.stack([transform(load_rgb(p, loaded.prep.image_size)) for p in photos])
    with torch.inference_mode():
        return loaded.model.float()(images).softmax(1).numpy()


def test_onnx_runtime_matches_pytorch_on_real_photos(real_export, one_thread):
    photos = real_export["photos"]
    expected = pytorch_float32(real_export["checkpoint"], photos)
    model = load_onnx(real_export["onnx"])
    batch = torch.stack([model.transform(load_rgb(p, model.prep.image_size)) for p in photos])
    got = model.probabilities(batch)  # all photos in one batch
    single = model.probabilities(batch[:1])  # the batch axis is dynamic: one photo works too

    assert got.shape == expected.shape == (len(photos), 2)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()
    assert np.abs(got - expected).max() < 1e-3
    assert np.abs(single[0] - expected[0]).max() < 1e-3
    # the trained head tells real cats from real dogs, so the comparison covers confident answers of both classes
    truth = [0] * N_PER_CLASS + [1] * N_PER_CLASS
    assert (got.argmax(1) == truth).mean() >= 0.75


def test_onnx_file_documents_its_preprocessing(real_export):
    proto = onnx.load(real_export["onnx"])
    meta = {prop.key: prop.value for prop in proto.metadata_props}
    checkpoint = load_model(real_export["checkpoint"], "cpu")
    assert meta["format"] == ONNX_FORMAT and meta["arch"] == "efficientnet_lite0"
    assert json.loads(meta["classes"]) == checkpoint.classes == ["cats", "dogs"]
    assert int(meta["image_size"]) == checkpoint.prep.image_size == 224
    assert json.loads(meta["mean"]) == pytest.approx(checkpoint.prep.mean)
    assert json.loads(meta["std"]) == pytest.approx(checkpoint.prep.std)
    assert "[0, 1]" in meta["input"] and "inside the model" in meta["normalization"]
    [image] = proto.graph.input
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # a named, free batch axis
    assert [d.dim_value for d in dims[1:]] == [3, 224, 224]
    assert [o.name for o in proto.graph.output] == ["logits", "probabilities"]


def test_export_refuses_to_overwrite_and_leaves_no_temporary_file(real_export, capsys):
    before = hashlib.sha256(real_export["onnx"].read_bytes()).hexdigest()
    result = catdog(capsys, "export", "--checkpoint", real_export["checkpoint"], "--out", real_export["onnx"])
    assert_clean_error(result, "already exists", "--force")
    assert hashlib.sha256(real_export["onnx"].read_bytes()).hexdigest() == before
    assert sorted(p.name for p in real_export["onnx"].parent.glob("*model.onnx*")) == ["model.onnx"]


def test_export_force_replaces_a_file_atomically(tmp_path, capsys, one_thread):
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs", "birds"], image_size=64)
    out = tmp_path / "exported" / "model.onnx"
    out.parent.mkdir()
    out.write_text("an older export")
    result = catdog(capsys, "export", "--checkpoint", checkpoint, "--out", out, "--force")
    assert result.returncode == 0, result.stderr
    model = load_onnx(out)
    assert model.classes == ["cats", "dogs", "birds"] and model.prep.image_size == 64
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask  # as any new file; not mkstemp's private 0o600


def test_predict_with_the_onnx_model_on_folders_json(real_export, tmp_path):
    photos = real_export["photos"]
    folder = tmp_path / "mixed"
    for photo in photos:
        (folder / photo.parent.name).mkdir(parents=True, exist_ok=True)
        (folder / photo.parent.name / photo.name).symlink_to(photo)
    bad = add_bad_files(folder / "junk")
    result = run_catdog("predict", "--model", real_export["onnx"], folder, "--json")

    assert result.returncode == 1, result.stderr  # some files were skipped
    report = json.loads(result.stdout)
    assert report["classes"] == ["cats", "dogs"]
    predicted = {Path(row["path"]).name: row for row in report["predictions"]}
    expected = pytorch_float32(real_export["checkpoint"], photos)
    assert [predicted[p.name]["label"] for p in photos] == [report["classes"][i] for i in expected.argmax(1)]
    for photo, row in zip(photos, expected):
        assert list(predicted[photo.name]["probabilities"].values()) == pytest.approx(row.tolist(), abs=1e-3)
    skipped = {Path(row["path"]).name: row["error"] for row in report["skipped"]}
    assert skipped.keys() == {p.name for p in bad}
    for path, words in bad.items():
        assert words in skipped[path.name]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(bad) and all("\tskipped: " in line for line in lines)


@pytest.fixture
def random_checkpoint(tmp_path: Path) -> Path:
    return make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], image_size=64)


def test_predict_a_folder_in_order_with_a_progress_bar(tmp_path, random_checkpoint, capsys, one_thread):
    folder = make_dataset(tmp_path / "photos", {"cats": 20, "dogs": 20}, size=(32, 32))
    make_image(folder / ".ipynb_checkpoints" / "cats.0-checkpoint.jpg")  # tool litter: not a photo to predict
    (folder / "notes.txt").write_text("not an image, and not named like one: not listed")
    result = catdog(capsys, "predict", "--checkpoint", random_checkpoint, folder, "--batch-size", "16")

    assert result.returncode == 0, result.stderr
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    expected = [folder / name / f"{name}.{i}.jpg" for name in ("cats", "dogs") for i in range(20)]
    assert [Path(path) for path, _, _ in rows] == expected  # cats.2 before cats.10, subfolders in order
    assert all(label in {"cats", "dogs"} and 0.5 <= float(p) <= 1 for _, label, p in rows)
    assert "40/40" in result.stderr  # past a few dozen photos, a progress bar

    few = catdog(capsys, "predict", "--checkpoint", random_checkpoint, folder / "cats" / "cats.1.jpg", folder / "dogs")
    assert few.returncode == 0 and len(few.stdout.splitlines()) == 21 and "/21" not in few.stderr


def test_predict_skips_bad_files_with_one_line_each(tmp_path, random_checkpoint, capsys, one_thread):
    good = make_image(tmp_path / "cat.png", size=(40, 30))
    bad = add_bad_files(tmp_path / "bad")
    result = catdog(capsys, "predict", "--checkpoint", random_checkpoint, good, tmp_path / "bad")
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert lines[0].startswith(f"{good}\t") and len(lines) == 1 + len(bad)
    by_name = {Path(line.split("\t")[0]).name: line for line in lines[1:]}
    for path, words in bad.items():
        assert words in by_name[path.name] and "\tskipped: " in by_name[path.name]


@pytest.mark.parametrize("args, message", [
    (["predict", "--checkpoint", "{ckpt}", "{tmp}/empty"], "no images in this folder"),
    (["predict", "--model", "{tmp}/notes.onnx", "{tmp}/photo.jpg"], "not a readable ONNX model"),
    (["predict", "--checkpoint", "{ckpt}", "--model", "{tmp}/notes.onnx", "{tmp}/photo.jpg"], "not allowed with"),
    (["predict", "--model", "{tmp}/missing.onnx", "{tmp}/photo.jpg"], "no such file"),
    (["export", "--checkpoint", "{tmp}/photo.jpg", "--out", "{tmp}/m.onnx"], "not a PyTorch checkpoint"),
    (["export", "--checkpoint", "{ckpt}", "--out", "{tmp}"], "is a folder"),
    (["demo", "--checkpoint", "{tmp}"], "is a folder"),
])
def test_wrong_input_is_one_clear_line(tmp_path, random_checkpoint, capsys, args, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.onnx").write_text("not a model")
    make_image(tmp_path / "photo.jpg")
    result = catdog(capsys, *[a.format(tmp=tmp_path, ckpt=random_checkpoint) for a in args])
    assert_clean_error(result, message)
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


def test_an_onnx_file_without_catdog_metadata_is_refused(tmp_path, capsys):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "plain",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save_model(helper.make_model(graph), tmp_path / "plain.onnx")
    Image.new("RGB", (8, 8)).save(tmp_path / "photo.png")
    result = catdog(capsys, "predict", "--model", tmp_path / "plain.onnx", tmp_path / "photo.png")
    assert_clean_error(result, "without catdog's metadata", "catdog export")


def test_export_into_a_read_only_folder_is_one_clear_line(public_tmp):
    checkpoint = make_checkpoint(public_tmp / "best.pt", ["cats", "dogs"], image_size=64)
    checkpoint.chmod(0o644)
    locked = public_tmp / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    result = run_catdog("export", "--checkpoint", checkpoint, "--out", locked / "model.onnx", unprivileged=True,
                        env=public_env(public_tmp))
    assert_clean_error(result, f"cannot write {locked / 'model.onnx'}", "Permission denied")
    assert list(locked.iterdir()) == []
