"""Checkpoints: writes that fail or die midway never damage the previous file, and untrusted or
wrong files are refused with a clear message, without running anything inside them."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from catdog_lib.model.checkpoint import FORMAT, atomic_save, load_checkpoint, save_checkpoint
from catdog_lib.cli import main
from catdog_lib.errors import CatdogError
from conftest import (REPO, assert_clean_error, make_checkpoint, make_image, public_env, run_catdog, run_python,
                      subprocess_env)


def _old_checkpoint(path: Path) -> Path:
    save_checkpoint(path, {"w": torch.ones(3)}, {"classes": ["old"]})
    return path


def _assert_old_intact(path: Path) -> None:
    saved = load_checkpoint(path)
    assert saved["meta"]["classes"] == ["old"] and torch.equal(saved["state_dict"]["w"], torch.ones(3))


def _temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.tmp"))


# --- interrupted and failed writes ---------------------------------------------------------------------------


class ExplodesWhenPickled:
    def __reduce__(self):
        raise RuntimeError("boom while pickling")


def test_write_that_raises_midway_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    best = _old_checkpoint(tmp_path / "best.pt")

    with pytest.raises(RuntimeError, match="boom while pickling"):   # a bug, not the user's fault: not hidden
        atomic_save({"state_dict": {"w": torch.zeros(100_000)}, "bad": ExplodesWhenPickled()}, best)

    _assert_old_intact(best)
    assert _temp_files(tmp_path) == []


def test_interrupt_during_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    best = _old_checkpoint(tmp_path / "best.pt")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt   # Ctrl-C / the notebook's stop button
    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(best, {"w": torch.zeros(3)}, {"classes": ["new"]})

    _assert_old_intact(best)
    assert _temp_files(tmp_path) == []


KILLED_MIDWAY = r"""
import os, sys, time, torch
from pathlib import Path
from catdog_lib import checkpoint

target, marker = Path(sys.argv[1]), Path(sys.argv[2])
real_fdopen = os.fdopen

class StallsHalfway:
    '''The temp file's writer: after 8 KiB are on disk, signal the test and wait to be killed.'''
    def __init__(self, file):
        self.file, self.written = file, 0
    def write(self, data):
        count = self.file.write(data)
        self.written += count
        if self.written > 8192:
            self.file.flush()
            marker.touch()
            time.sleep(300)
        return count
    def __getattr__(self, name):
        return getattr(self.file, name)
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        return self.file.__exit__(*exc)

os.fdopen = lambda fd, mode: StallsHalfway(real_fdopen(fd, mode))
checkpoint.atomic_save({"w": torch.arange(200_000.0)}, target)   # what save_checkpoint calls
"""


def test_process_killed_in_the_middle_of_a_write_never_corrupts_best_pt(tmp_path: Path) -> None:
    best = _old_checkpoint(tmp_path / "best.pt")
    marker = tmp_path / "halfway"
    process = subprocess.Popen([sys.executable, "-c", KILLED_MIDWAY, str(best), str(marker)], cwd=REPO,
                               env=subprocess_env(), stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the writer never got halfway"
            time.sleep(0.02)
        (partial,) = _temp_files(tmp_path)
        assert partial.stat().st_size > 8192            # a real, half-written checkpoint
    finally:
        process.kill()
        process.wait()

    _assert_old_intact(best)                             # best.pt was never touched
    with pytest.raises(CatdogError, match="not a readable checkpoint"):
        load_checkpoint(partial)                         # the half-written file is indeed unusable
    save_checkpoint(best, {"w": torch.zeros(3)}, {"classes": ["next"]})
    assert load_checkpoint(best)["meta"]["classes"] == ["next"]
    assert _temp_files(tmp_path) == []                   # the next save cleared the dead write's temp


SAVE_MUST_FAIL = r"""
import resource, signal, sys, torch
from pathlib import Path
from catdog_lib.model.checkpoint import atomic_save
from catdog_lib.errors import CatdogError

path, numel, size_limit = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
if size_limit:  # a "full disk": a write past the limit fails with EFBIG
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(size_limit[0]),) * 2)
try:
    atomic_save({"w": torch.zeros(numel)}, path)   # what save_checkpoint calls
except CatdogError as error:
    print(error)
    sys.exit(0)
sys.exit("the write did not fail")
"""


def test_full_disk_is_a_clear_error_and_keeps_the_old_checkpoint(tmp_path: Path) -> None:
    best = _old_checkpoint(tmp_path / "best.pt")

    result = run_python(SAVE_MUST_FAIL, best, 1_000_000, 64 * 1024)

    assert result.returncode == 0, result.stderr
    assert "File too large" in result.stdout and "previous checkpoint there is unchanged" in result.stdout
    _assert_old_intact(best)
    assert _temp_files(tmp_path) == []


def test_read_only_output_folder_is_a_clear_error_and_keeps_the_old_checkpoint(public_tmp: Path) -> None:
    run = public_tmp / "run"
    run.mkdir()
    best = _old_checkpoint(run / "best.pt")
    best.chmod(0o644)
    run.chmod(0o555)

    result = run_python(SAVE_MUST_FAIL, best, 3, unprivileged=True, env=public_env(public_tmp))

    assert result.returncode == 0, result.stderr
    assert f"cannot write {best}: Permission denied" in result.stdout and "writable" in result.stdout
    _assert_old_intact(best)
    assert _temp_files(run) == []


def test_train_into_a_read_only_folder_is_a_clear_error(public_tmp: Path) -> None:
    data = public_tmp / "data"
    for name in ("cats", "dogs"):
        for i in range(3):
            make_image(data / name / f"{i}.jpg")
    run = public_tmp / "run"
    run.mkdir(mode=0o555)
    run.chmod(0o555)

    result = run_catdog("train", "--data", data, "--out", run, "--arch", "efficientnet_lite0", "--weights", "none",
                        "--epochs", "1", "--quiet", unprivileged=True, env=public_env(public_tmp))

    assert_clean_error(result, str(run), "Permission denied")


# --- untrusted and wrong files -------------------------------------------------------------------------------


class RunsCode:
    """A pickle payload: unpickling it calls os.system, which would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _booby_trapped(path: Path, marker: Path, legacy: bool = False) -> Path:
    """A file that looks like a catdog checkpoint but carries code."""
    state = {"format": FORMAT, "meta": {"arch": "efficientnet_lite0", "classes": ["cats", "dogs"]},
             "state_dict": {"head.1.bias": torch.zeros(2)}, "extra": RunsCode(marker)}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "legacy-format"])
def test_checkpoint_with_code_is_refused_without_running_it(tmp_path: Path, legacy: bool) -> None:
    marker = tmp_path / "code-ran"
    evil = _booby_trapped(tmp_path / "best.pt", marker, legacy)

    with pytest.raises(CatdogError, match="refused") as caught:
        load_checkpoint(evil)

    message = str(caught.value)
    assert "Only load checkpoints you trust" in message and "system" in message   # names the blocked call
    assert "weights_only" not in message   # and does not suggest the unsafe way round
    assert not marker.exists()
    torch.load(evil, weights_only=False)   # the payload is live: an unsafe load does run it
    assert marker.exists()


def test_evaluate_refuses_a_checkpoint_with_code(tmp_path: Path, tiny_dataset: Path) -> None:
    marker = tmp_path / "code-ran"
    evil = _booby_trapped(tmp_path / "best.pt", marker)

    result = run_catdog("evaluate", "--checkpoint", evil, "--data", tiny_dataset, "--device", "cpu")

    assert_clean_error(result, str(evil), "refused", "Only load checkpoints you trust")
    assert not marker.exists()


def _truncated(path: Path) -> Path:
    make_checkpoint(path, ["cats", "dogs"])
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _png(path: Path) -> Path:
    return make_image(path, format="PNG")


def _jpeg_named_pt(path: Path) -> Path:
    return make_image(path, format="JPEG")


def _tensor(path: Path) -> Path:
    torch.save(torch.zeros(3), path)
    return path


def _state_dict_only(path: Path) -> Path:
    torch.save({"head.1.weight": torch.zeros(2, 4)}, path)
    return path


def _empty(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _text(path: Path) -> Path:
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 123\n")   # an LFS pointer
    return path


WRONG_FILES = {
    "truncated": (_truncated, "not a readable checkpoint (truncated"),
    "png": (_png, "not a PyTorch checkpoint (the file is an image)"),
    "jpeg": (_jpeg_named_pt, "not a PyTorch checkpoint (the file is an image)"),
    "plain-tensor": (_tensor, "not a catdog checkpoint"),
    "bare-state-dict": (_state_dict_only, "not a catdog checkpoint"),
    "empty": (_empty, "not a PyTorch checkpoint (the file is empty)"),
    "text": (_text, "not a PyTorch checkpoint (the file is another format)"),
}


@pytest.mark.parametrize("case", sorted(WRONG_FILES))
def test_wrong_or_damaged_files_give_a_clear_error(tmp_path: Path, case: str) -> None:
    make, message = WRONG_FILES[case]
    path = make(tmp_path / "best.pt")
    with pytest.raises(CatdogError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "refused" not in str(caught.value)   # not mistaken for a security problem


def test_evaluate_with_an_image_as_checkpoint(tmp_path: Path, tiny_dataset: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)   # main() replaces it
    status = main(["evaluate", "--checkpoint", str(_png(tmp_path / "cat.png")), "--data", str(tiny_dataset)])
    err = capsys.readouterr().err
    assert status == 2 and "Traceback" not in err and "not a PyTorch checkpoint" in err


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CatdogError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "best.pt")
