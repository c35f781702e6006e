"""Dataset shapes on disk: what is found, what is ignored, and one clear error (CLI exit 2, no traceback)
for every shape that cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from catdog_lib.model.checkpoint import load_checkpoint
from catdog_lib.errors import CatdogError
from catdog_lib.infer.evaluation import evaluate_folder, load_model
from catdog_lib.data.layout import evaluation_folders, find_dataset, match_classes, read_class_folders
from catdog_lib.train.training import TrainConfig, train
from conftest import assert_clean_error, make_checkpoint, make_dataset, make_image, run_catdog


def _assert_one_clean_error(status: int, err: str, *needles: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err
    assert err.count("catdog: error:") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


# --- shapes that cannot work ------------------------------------------------------------------------------


def _empty_class(root: Path) -> Path:
    make_dataset(root, {"cats": 3})
    (root / "dogs").mkdir()
    return root


def _one_class(root: Path) -> Path:
    return make_dataset(root, {"cats": 3})


def _missing(root: Path) -> Path:
    return root / "does-not-exist"


def _a_file(root: Path) -> Path:
    return make_image(root.parent / "photo.jpg")


LAYOUT_ERRORS = {
    # case: (build, problem, fix)
    "empty-class-folder": (_empty_class, "class folder(s) dogs hold no images", "Put that class's photos in them"),
    "one-class-only": (_one_class, "found 1 class folder(s) (cats); need at least 2", "one folder of images per class"),
    "root-does-not-exist": (_missing, "no such folder", "CATDOG_DATA_DIR"),
    "file-not-folder": (_a_file, "is a file, not a folder", "Pass the dataset's folder"),
}


@pytest.mark.parametrize("case", sorted(LAYOUT_ERRORS))
def test_train_layout_errors_are_one_clear_error(tmp_path: Path, cli, case: str) -> None:
    build, problem, fix = LAYOUT_ERRORS[case]
    data = build(tmp_path / "data")

    with pytest.raises(CatdogError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        find_dataset(data).train()
    status, _, err = cli("train", "--data", data, "--out", tmp_path / "run", "--arch", "efficientnet_lite0",
                         "--weights", "none", "--epochs", "1", "--quiet")

    _assert_one_clean_error(status, err, str(data), problem, fix)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("case", ["empty-class-folder", "root-does-not-exist", "file-not-folder"])
def test_data_check_layout_errors_are_one_clear_error(tmp_path: Path, cli, case: str) -> None:
    build, problem, _ = LAYOUT_ERRORS[case]
    status, _, err = cli("data", "check", build(tmp_path / "data"))
    _assert_one_clean_error(status, err, problem)


def test_train_with_one_class_from_the_real_cli(tmp_path: Path) -> None:
    data = _one_class(tmp_path / "data")
    result = run_catdog("train", "--data", data, "--out", tmp_path / "run", "--arch", "efficientnet_lite0",
                        "--weights", "none", "--quiet")
    assert_clean_error(result, "need at least 2", "cats")


def test_evaluate_on_folders_matching_no_class(tmp_path: Path, cli) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    data = make_dataset(tmp_path / "eval", {"hamsters": 2, "rabbits": 2})

    with pytest.raises(CatdogError, match="none of its class folders"):
        match_classes(evaluation_folders(data), ["cats", "dogs"])
    status, _, err = cli("evaluate", "--checkpoint", checkpoint, "--data", data, "--device", "cpu")

    _assert_one_clean_error(status, err, "hamsters, rabbits", "cats, dogs", "Rename the folders")


def test_evaluate_on_a_missing_folder_is_an_argument_error(tmp_path: Path, cli) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    status, _, err = cli("evaluate", "--checkpoint", checkpoint, "--data", tmp_path / "nowhere")
    _assert_one_clean_error(status, err, "no such file or folder")


# --- what is found and what is ignored -----------------------------------------------------------------


def _add_junk(root: Path) -> None:
    """What macOS, Windows and Jupyter leave in a dataset folder."""
    (root / "cats" / "__MACOSX").mkdir(parents=True)
    (root / "cats" / "__MACOSX" / "._cats.0.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    make_image(root / "cats" / "__MACOSX" / "nested.jpg")
    make_image(root / "cats" / ".ipynb_checkpoints" / "cats.0-checkpoint.jpg")
    make_image(root / ".ipynb_checkpoints" / "stray.jpg")
    make_image(root / "__MACOSX" / "cats" / "._x.jpg")
    make_image(root / "__MACOSX" / "dogs" / "._y.jpg")
    (root / "_DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "cats" / "_DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "dogs" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (root / "dogs" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    (root / "dogs" / "README.txt").write_text("photos from the shelter")


def test_junk_files_and_folders_are_ignored(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 3, "dogs": 4})
    _add_junk(root)

    folders = read_class_folders(root)

    assert folders.classes == ["cats", "dogs"]
    assert folders.counts() == {"cats": 3, "dogs": 4}
    assert all(path.parent.parent == root and not path.name.startswith((".", "_")) for path, _ in folders.samples)


def test_three_classes_train_a_three_way_head(tmp_path: Path, small_arch: str) -> None:
    data = make_dataset(tmp_path / "data", {"birds": 5, "cats": 5, "dogs": 5})
    _add_junk(data)
    out = tmp_path / "run"

    metrics = train(TrainConfig(data=str(data), out=str(out), arch=small_arch, recipe="features", epochs=2,
                                batch_size=8, weights=None, num_workers=0, progress=False))

    saved = load_checkpoint(out / "best.pt")
    assert saved["meta"]["classes"] == ["birds", "cats", "dogs"] == metrics["classes"]
    assert saved["state_dict"]["head.1.weight"].shape[0] == 3
    assert metrics["skipped"] == []   # junk was never even opened
    assert json.loads((out / "metrics.json").read_text())["counts"]["train"] == {"birds": 4, "cats": 4, "dogs": 4}
    loaded = load_model(out / "best.pt", "cpu")
    with torch.no_grad():
        assert loaded.model(torch.zeros(1, 3, 64, 64)).shape == (1, 3)


def _kaggle_nested(root: Path) -> tuple[Path, Path]:
    for split in ("training_set", "test_set"):
        make_dataset(root / split / split, 2)
    (root / "training_set" / "training_set" / "cats" / "_DS_Store").write_bytes(b"junk")
    return root / "training_set" / "training_set", root / "test_set" / "test_set"


def _kaggle_flat(root: Path) -> tuple[Path, Path]:
    for split in ("training_set", "test_set"):
        make_dataset(root / split, 2)
    return root / "training_set", root / "test_set"


def _short_names(root: Path) -> tuple[Path, Path]:
    for split in ("train", "test"):
        make_dataset(root / split, 2)
    return root / "train", root / "test"


def _class_root(root: Path) -> tuple[Path, None]:
    make_dataset(root, {"Cat": 2, "Dog": 2})
    return root, None


@pytest.mark.parametrize("shape", [_kaggle_nested, _kaggle_flat, _short_names, _class_root],
                         ids=["kaggle-nested", "kaggle-flat", "train-test", "class-root"])
def test_dataset_shapes_are_found(tmp_path: Path, shape) -> None:
    root = tmp_path / "data"
    train_dir, test_dir = shape(root)
    (root / "__MACOSX").mkdir(exist_ok=True)

    layout = find_dataset(root)

    assert (layout.train_dir, layout.test_dir) == (train_dir, test_dir)
    assert len(layout.train().classes) == 2 and len(layout.train().samples) == 4
    assert evaluation_folders(root).root == (test_dir or train_dir)


# --- evaluation matches class folders by name ---------------------------------------------------------------


def test_match_classes_by_name_not_order(tmp_path: Path) -> None:
    folders = read_class_folders(make_dataset(tmp_path / "eval", {"Dog": 2, "Cat": 3}), min_classes=1)
    assert folders.classes == ["Cat", "Dog"]

    for classes in (["cats", "dogs"], ["dogs", "cats"]):
        samples = match_classes(folders, classes)
        for path, label in samples:
            assert classes[label].startswith(path.parent.name.lower()), (path, classes[label])
        expected = [classes.index("cats")] * 3 + [classes.index("dogs")] * 2
        assert sorted(label for _, label in samples) == sorted(expected)


def test_match_classes_warns_about_extra_folders(tmp_path: Path) -> None:
    folders = read_class_folders(make_dataset(tmp_path / "eval", {"cat": 1, "dog": 1, "fox": 1}), min_classes=1)
    with pytest.warns(UserWarning, match="ignoring folders that match no class: fox"):
        assert len(match_classes(folders, ["cats", "dogs"])) == 2


def test_evaluate_matches_folders_by_name(tmp_path: Path, one_thread: None) -> None:
    # sorted() puts "Dog" before "cat": evaluating by folder order would swap every label
    data = make_dataset(tmp_path / "eval", {"Dog": 2, "cat": 3})
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])

    result = evaluate_folder(load_model(checkpoint, "cpu"), data, use_cache=False, progress=False)

    assert result.n == 5
    assert {name: row["n"] for name, row in result.per_class.items()} == {"cats": 3, "dogs": 2}
    pairs = {(Path(path).parent.name, label) for path, label in zip(result.paths, result.labels)}
    assert pairs == {("cat", 0), ("Dog", 1)}
