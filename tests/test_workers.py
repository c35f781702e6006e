"""DataLoader workers never start by a plain fork of the (multi-threaded) training process: Python 3.12+ warns
"This process is multi-threaded, use of fork() may lead to deadlocks in the child" about that."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO, make_dataset, subprocess_env

from catdog_lib import datasets
from catdog_lib.data.layout import read_class_folders
from catdog_lib.data.transforms import Preprocessing, eval_transform

EXPECTED = "forkserver" if sys.platform.startswith("linux") else "spawn"

TRAIN_WITH_WORKERS = """
import os, sys
from catdog_lib import datasets
from catdog_lib.cli import main
datasets.default_num_workers = lambda: 2  # workers on, even on a 2-core machine
os.register_at_fork(before=lambda: print("catdog-test: the training process forked", file=sys.stderr))
status = main(sys.argv[1:])
from multiprocessing import forkserver
print("fork server:", forkserver._forkserver._forkserver_pid is not None)
sys.exit(status)
"""


def test_workers_start_from_a_fork_server_or_spawn(tmp_path: Path) -> None:
    samples = read_class_folders(make_dataset(tmp_path / "data", per_class=4)).samples
    loader = datasets.make_loader(samples, eval_transform(Preprocessing(32)), 4, num_workers=2, min_size=32)
    assert loader.num_workers == 2 and loader.multiprocessing_context.get_start_method() == EXPECTED
    assert sum(len(labels) for _, labels, _ in loader) == 8


def test_a_dataset_that_cannot_travel_to_a_worker_is_read_without_workers(tmp_path: Path) -> None:
    """A lambda (or a notebook's own class) cannot be pickled for a spawned worker: no workers, no crash."""
    samples = read_class_folders(make_dataset(tmp_path / "data", per_class=2)).samples
    loader = datasets.make_loader(samples, lambda image: eval_transform(Preprocessing(32))(image), 2, num_workers=2)
    assert loader.num_workers == 0
    assert sum(len(labels) for _, labels, _ in loader) == 4


def test_cli_training_with_workers_never_forks_and_warns_nothing(tmp_path: Path) -> None:
    """`catdog train` with 2 workers under -W error::DeprecationWarning (passed on to the fork server too): the
    training process itself never calls fork(), and no multiprocessing warning is printed."""
    data = make_dataset(tmp_path / "data", per_class=6, size=(32, 32))
    args = ["train", "--data", data, "--out", tmp_path / "run", "--arch", "efficientnet_lite0", "--epochs", "1",
            "--batch-size", "4", "--weights", "none", "--device", "cpu", "--quiet"]
    result = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", TRAIN_WITH_WORKERS,
                             *map(str, args)], capture_output=True, encoding="utf-8", timeout=600, cwd=REPO,
                            env=subprocess_env(CATDOG_CACHE_DIR=str(tmp_path / "cache")))
    assert result.returncode == 0, result.stderr
    assert "forked" not in result.stderr and "fork()" not in result.stderr, result.stderr
    assert "multi-threaded" not in result.stderr and "DeprecationWarning" not in result.stderr, result.stderr
    assert ("fork server: True" in result.stdout) == sys.platform.startswith("linux"), result.stdout
    assert (tmp_path / "run" / "best.pt").is_file() and "device: cpu (CPU); precision: " in result.stdout
