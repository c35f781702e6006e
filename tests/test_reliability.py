"""Whole-run reliability: bad files are skipped (warned once each, listed in metrics.json), a killed
training run resumes where it stopped, and DataLoader workers work under spawn (macOS/Windows kernels)."""

from __future__ import annotations

import json
import signal
import subprocess
import os
import sys
import time
import types
from pathlib import Path

import pytest
import torch

from catdog_lib import datasets
from catdog_lib.model.checkpoint import load_checkpoint
from catdog_lib.data.datasets import SkippedFiles, default_num_workers, iterate_good, make_loader
from catdog_lib.data.layout import read_class_folders
from catdog_lib.train.training import TrainConfig, train
from catdog_lib.data.transforms import Preprocessing, eval_transform
from conftest import (REPO, add_bad_files, add_odd_good_files, catdog_command, make_checkpoint, make_dataset, make_image,
                      make_writable_by_all, public_env, run_python, subprocess_env)


def _messy_dataset(root: Path) -> tuple[Path, set[str]]:
    """cats/ and dogs/ with good photos, awkward-but-readable ones, and every kind of bad file."""
    make_dataset(root, 6)
    add_odd_good_files(root / "cats", color=(210, 90, 60))
    bad = {**add_bad_files(root / "cats"), **add_bad_files(root / "dogs", tag="-dog")}
    return root, {str(path) for path in bad}


def _skip_warnings(records) -> dict[str, int]:
    """How often each file was named in a 'skipping bad image' warning."""
    counts: dict[str, int] = {}
    for record in records:
        message = str(record.message)
        if message.startswith("skipping bad image "):
            path = message.removeprefix("skipping bad image ").split(": ", 1)[0]
            counts[path] = counts.get(path, 0) + 1
    return counts


# --- bad files in a DataLoader and in training ------------------------------------------------------------------


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_warns_once_per_bad_file_over_two_epochs(tmp_path: Path, workers: int, one_thread: None) -> None:
    root, bad = _messy_dataset(tmp_path / "data")
    samples = read_class_folders(root).samples
    loader = make_loader(samples, eval_transform(Preprocessing(32)), batch_size=5, shuffle=True, num_workers=workers)
    skipped = SkippedFiles()

    with pytest.warns(UserWarning, match="skipping bad image") as records:
        seen = [sum(len(labels) for _, labels in iterate_good(loader, skipped)) for _epoch in range(2)]

    assert seen == [len(samples) - len(bad)] * 2          # every readable image, both epochs
    assert _skip_warnings(records) == {path: 1 for path in bad}
    assert skipped.paths() == sorted(bad)


@pytest.mark.parametrize("recipe", ["features", "whole"])
def test_training_on_a_folder_with_bad_files_completes(tmp_path: Path, small_arch: str, recipe: str) -> None:
    root, bad = _messy_dataset(tmp_path / "data")
    out = tmp_path / "run"

    with pytest.warns(UserWarning, match="skipping bad image") as records:
        train(TrainConfig(data=str(root), out=str(out), arch=small_arch, recipe=recipe, epochs=2, batch_size=8,
                          weights=None, num_workers=0, progress=False))

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and [row["epoch"] for row in metrics["history"]] == [1, 2]
    assert metrics["skipped"] == sorted(bad)
    assert _skip_warnings(records) == {path: 1 for path in bad}
    assert load_checkpoint(out / "best.pt")["meta"]["classes"] == ["cats", "dogs"]


UNPRIVILEGED_TRAINING = r"""
import dataclasses, json, sys, traceback
from catdog_lib import backbones
from catdog_lib.train.training import TrainConfig, train
from catdog_lib.data.transforms import Preprocessing

arch = backbones.ARCHS["efficientnet_lite0"]   # 64 px instead of 224: the same code, a fraction of the work
backbones.ARCHS["efficientnet_lite0"] = dataclasses.replace(arch, prep=Preprocessing(64, arch.prep.mean, arch.prep.std))
data, runs = sys.argv[1], sys.argv[2]
results = {}
for recipe in ("features", "whole"):
    try:
        metrics = train(TrainConfig(data=data, out=f"{runs}/{recipe}", arch="efficientnet_lite0", recipe=recipe,
                                    epochs=1, batch_size=8, weights=None, num_workers=0, progress=False))
        results[recipe] = {"skipped": metrics["skipped"]}
    except Exception as error:
        results[recipe] = {"error": traceback.format_exc()}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def unprivileged_training(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    """Both recipes trained, without permission-bypassing powers, on data holding an unreadable photo."""
    import tempfile

    from conftest import _force_rmtree, run_unprivileged

    public = Path(tempfile.mkdtemp(prefix="catdog-test-", dir="/tmp"))
    public.chmod(0o755)
    make_writable_by_all(public / "home")
    try:
        data = make_dataset(public / "data", 5)
        locked = make_image(data / "cats" / "locked.jpg")
        locked.chmod(0o000)
        runs = make_writable_by_all(public / "runs")
        result = run_unprivileged([sys.executable, "-c", UNPRIVILEGED_TRAINING, str(data), str(runs)], cwd=REPO,
                                  capture_output=True, encoding="utf-8", timeout=180, env=public_env(public))
        assert result.returncode == 0, result.stderr
        yield json.loads(result.stdout.splitlines()[-1]), str(locked)
    finally:
        _force_rmtree(public)


def test_whole_network_training_skips_an_unreadable_file(unprivileged_training: tuple[dict, str]) -> None:
    results, locked = unprivileged_training
    assert results["whole"] == {"skipped": [locked]}, results["whole"]


def test_features_recipe_skips_an_unreadable_file(unprivileged_training: tuple[dict, str]) -> None:
    results, locked = unprivileged_training
    assert results["features"] == {"skipped": [locked]}, results["features"].get("error")


# --- a killed run resumes ---------------------------------------------------------------------------------------


def test_killed_training_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", 5)
    out = tmp_path / "run"
    args = ["--arch", "efficientnet_lite0", "--weights", "none", "--batch-size", "8", "--device", "cpu", "--quiet"]
    process = subprocess.Popen([*catdog_command(), "train", "--data", str(data), "--out", str(out), "--recipe",
                                "whole", "--epochs", "2", *args], env=subprocess_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no epoch finished in time"
            time.sleep(0.02)
        assert process.poll() is None, "the run finished before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == -signal.SIGKILL
    at_kill = load_checkpoint(out / "last.pt")
    done = at_kill["run_state"]["epoch"]
    assert done == 1

    result = subprocess.run([*catdog_command(), "train", "--resume", str(out), "--device", "cpu", "--quiet"],
                            env=subprocess_env(), capture_output=True, encoding="utf-8", timeout=180)

    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2
    assert [row["epoch"] for row in metrics["history"]] == [1, 2]          # no gap, no repeat
    assert metrics["history"][:done] == at_kill["run_state"]["history"]     # earlier epochs kept, not redone
    assert metrics["recipe"] == "whole" and metrics["config"]["epochs"] == 2
    assert load_checkpoint(out / "last.pt")["run_state"]["epoch"] == 2


# --- notebook kernels and spawn-based platforms --------------------------------------------------------------


SPAWN_LOADER = r"""
import sys
from pathlib import Path
from torch.utils.data import DataLoader
from catdog_lib.data.datasets import SkippedFiles, collate_skipping_bad, iterate_good, make_loader
from catdog_lib.data.layout import read_class_folders
from catdog_lib.data.transforms import Preprocessing, eval_transform

# `python -c` has a __main__ without __file__, like a notebook kernel: workers cannot re-import it
samples = read_class_folders(Path(sys.argv[1])).samples
dataset = make_loader(samples, eval_transform(Preprocessing(32)), batch_size=4, num_workers=0).dataset
loader = DataLoader(dataset, batch_size=4, num_workers=2, multiprocessing_context="spawn",
                    collate_fn=collate_skipping_bad, timeout=60)
skipped = SkippedFiles()
print(sum(len(labels) for _, labels in iterate_good(loader, skipped)), len(skipped.paths()))
"""


def test_spawn_workers_complete_without_hanging(tiny_dataset: Path) -> None:
    (tiny_dataset / "dogs" / "broken.jpg").write_text("<html>not a photo</html>")

    result = run_python(SPAWN_LOADER, tiny_dataset, timeout=120)   # TimeoutExpired = a hang

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10", "1"]
    assert "skipping bad image" in result.stderr and "broken.jpg" in result.stderr


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_no_workers_in_an_interactive_kernel_on_spawn_platforms(monkeypatch, platform: str) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))   # a kernel: no __file__

    assert default_num_workers() == 0
    assert make_loader([], eval_transform(Preprocessing(32)), batch_size=2).num_workers == 0


@pytest.mark.parametrize(("platform", "interactive", "cores", "expected"),
                         [("darwin", False, 8, 4), ("win32", False, 4, 2), ("linux", True, 16, 4),
                          ("linux", False, 2, 0), ("darwin", False, 1, 0)])
def test_workers_elsewhere(monkeypatch, platform: str, interactive: bool, cores: int, expected: int) -> None:
    main = types.ModuleType("__main__")
    if not interactive:
        main.__file__ = "/tmp/script.py"
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert datasets.default_num_workers() == expected


def test_bad_file_in_a_batch_never_raises(tmp_path: Path) -> None:
    good = make_image(tmp_path / "good.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    dataset = datasets.ImageSamples([(good, 0), (bad, 1)], eval_transform(Preprocessing(8)))

    images, labels, reasons = datasets.collate_skipping_bad([dataset[0], dataset[1]])

    assert images.shape == (1, 3, 8, 8) and labels.tolist() == [0]
    assert reasons == [(str(bad), f"{bad}: empty file (0 bytes)")]
    assert datasets.collate_skipping_bad([dataset[1]])[0].numel() == 0
    assert torch.is_tensor(images)


def test_bad_file_whose_name_holds_a_colon_keeps_paths_and_labels_aligned(tmp_path: Path) -> None:
    from catdog_lib.infer.evaluation import evaluate, load_model

    root = make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3})
    bad = root / "cats" / "a: b.jpg"
    bad.write_text("not an image")
    checkpoint = make_checkpoint(tmp_path / "model.pt", ["cats", "dogs"], recipe="finetune")
    samples = read_class_folders(root).samples
    with pytest.warns(UserWarning, match="skipping bad image"):
        result = evaluate(load_model(checkpoint), samples, progress=False)
    assert result.skipped == [str(bad)]
    assert result.n == len(result.paths) == len(result.labels) == 6
    assert all(("dogs" in path) == (label == 1) for path, label in zip(result.paths, result.labels))
