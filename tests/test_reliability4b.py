"""Reliability, round 4, second half (issue 31): temporary files and predictable names, leftovers of killed
exports and demos, two courses in one course folder, and what a failed write advises.

Every case runs the real code on real files: symlinks planted at the names the course writes, processes
killed with SIGKILL or stopped with SIGHUP/SIGTERM, locks held by another process.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from catdog_lib import files, own_photo, runner, synthetic, web
from catdog_lib.errors import CatdogError
from catdog_lib.train.runlock import COURSE_LOCK, LOCK, MARKER, claim_run_folder, hold_course
from conftest import (REPO, assert_clean_error, catdog_command, free_port, make_checkpoint, make_dataset,
                      subprocess_env)
from test_download import Server, server  # noqa: F401  (the local HTTP server fixture)

THESIS = "my thesis, five years of work\n"
OTHER_USER = 54321
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making files of another user needs root")


def jpeg_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 100, 50)).save(buffer, "JPEG")
    return buffer.getvalue()


# --- 1. predictable names: a planted symlink is replaced, never written through ---------------------------


def _download_part(folder: Path, server: Server) -> tuple[list[Path], Callable[[], object]]:
    (server.root / "data.bin").write_bytes(b"served bytes" * 1000)
    return [folder / "data.bin.part"], lambda: web.fetch(f"{server.url}/data.bin", folder / "data.bin",
                                                         progress=False)


def _run_folder(folder: Path, server: Server) -> tuple[list[Path], Callable[[], object]]:
    return [folder / "run" / MARKER], lambda: claim_run_folder(folder / "run", None, resume=False).release()


def _run_folder_lock(folder: Path, server: Server) -> tuple[list[Path], Callable[[], object]]:
    (folder / "run").mkdir()
    (folder / "run" / MARKER).write_text("")  # a run folder, with a link at its lock file's name
    return [folder / "run" / LOCK], lambda: claim_run_folder(folder / "run", None, resume=False).release()


def _course_lock(folder: Path, server: Server) -> tuple[list[Path], Callable[[], object]]:
    def hold() -> None:
        with hold_course(folder / "runs" / "course"):
            pass
    return [folder / "runs" / COURSE_LOCK], hold


def _synthetic_marker(folder: Path, server: Server) -> tuple[list[Path], Callable[[], object]]:
    return [folder / "set" / synthetic.MARKER], lambda: synthetic.make_synthetic_dataset(
        folder / "set", per_class=1, test_per_class=1, size=16)


def _upload(folder: Path, server: Server) -> tuple[list[Path], Callable[[], object]]:
    return [folder / "uploads" / "cat.jpg"], lambda: own_photo.save_upload("cat.jpg", jpeg_bytes(),
                                                                            folder / "uploads")


def _course_outputs(folder: Path, server: Server) -> tuple[list[Path], Callable[[], object]]:
    """`catdog course`'s summary and its copies of an executed notebook (a one-cell notebook, a real kernel)."""
    notebook = folder / "tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]), notebook)
    data = make_dataset(folder / "data", per_class=2)
    out = folder / "out"

    def run() -> None:
        os.environ["CATDOG_DATA_DIR"] = str(data)  # restored by the test's monkeypatch
        assert runner.run_course(fast=True, out=out, notebooks=[notebook], course_run=folder / "runs" / "course") == 0
        assert "42" in (out / "tiny.ipynb").read_text() and "all notebooks ran" in (out / "summary.txt").read_text()
    return [out / "summary.txt", out / "tiny.ipynb", out / "tiny.html"], run


@pytest.mark.parametrize("writer", [_download_part, _run_folder, _run_folder_lock, _course_lock, _synthetic_marker,
                                    _upload, _course_outputs], ids=lambda writer: writer.__name__.strip("_"))
def test_a_symlink_planted_at_a_predictable_name_is_never_written_through(
        writer: Callable, tmp_path: Path, server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CATDOG_DATA_DIR", "")
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "home"))
    thesis = tmp_path / "victim" / "thesis.txt"
    thesis.parent.mkdir()
    thesis.write_text(THESIS)
    shared = tmp_path / "shared"
    shared.mkdir()
    planted, write = writer(shared, server)
    for link in planted:
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(thesis)

    write()

    assert thesis.read_text() == THESIS
    for link in planted:  # replaced by the course's own file
        assert not link.is_symlink(), link


def test_a_partial_download_is_resumed_only_from_ones_own_regular_file(tmp_path: Path) -> None:
    part = tmp_path / "data.bin.part"
    part.write_bytes(b"first half")
    with files.open_partial(part, append=True) as file:  # this user's own partial download: resumed
        file.write(b", second half")
    assert part.read_bytes() == b"first half, second half"

    thesis = tmp_path / "thesis.txt"
    thesis.write_text(THESIS)
    link = tmp_path / "link.part"
    link.symlink_to(thesis)
    fifo = tmp_path / "fifo.part"
    os.mkfifo(fifo)
    for planted in (link, fifo):
        started = time.monotonic()
        with pytest.raises(CatdogError, match="cannot write"):
            files.open_partial(planted, append=True)
        assert time.monotonic() - started < 5  # a FIFO without a reader is refused, not waited on
    assert thesis.read_text() == THESIS and files.own_regular_size(link) == 0


@needs_root
def test_another_users_partial_download_is_never_appended_to(tmp_path: Path, server: Server) -> None:
    part = tmp_path / "data.bin.part"
    part.write_bytes(b"someone else's bytes")
    os.chown(part, OTHER_USER, OTHER_USER)
    with pytest.raises(CatdogError, match="not your own regular file; nothing was written"):
        files.open_partial(part, append=True)
    assert part.read_bytes() == b"someone else's bytes"
    # fetch does not resume from it (no Range asked for): the whole file is downloaded into a new file of ours
    (server.root / "data.bin").write_bytes(b"served bytes" * 100)
    assert web.fetch(f"{server.url}/data.bin", tmp_path / "data.bin", progress=False).read_bytes() == \
        b"served bytes" * 100
    assert server.requests == [("/data.bin", None)]


# --- 2. a killed `catdog export --force` leaves no temporary file forever -------------------------------


HOLD_LOCKED = r"""
import fcntl, os, sys, time
handle = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(handle, fcntl.LOCK_EX)   # an export in progress holds its temporary file locked
print("locked", flush=True)
time.sleep(120)
"""


def test_the_next_export_removes_a_killed_exports_temporary_file_but_not_one_in_progress(tmp_path: Path) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    out = tmp_path / "models" / "finetune.onnx"
    out.parent.mkdir()
    out.write_bytes(b"an older export")
    killed = subprocess.Popen([*catdog_command(), "export", "--checkpoint", checkpoint, "--out", out, "--force"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=subprocess_env())
    deadline = time.monotonic() + 120
    while not list(out.parent.glob(".finetune.onnx.*.tmp")):
        assert killed.poll() is None and time.monotonic() < deadline, "the export never started writing"
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    [left] = out.parent.glob(".finetune.onnx.*.tmp")  # what SIGKILL leaves (issue 31: 0 bytes, forever)
    in_progress = out.parent / ".finetune.onnx.inprogress.tmp"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCKED, in_progress], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        old = time.time() - 7200
        os.utime(in_progress, (old, old))  # even an old one is kept while a process holds it

        result = subprocess.run([*catdog_command(), "export", "--checkpoint", checkpoint, "--out", out, "--force"],
                                capture_output=True, text=True, timeout=300, env=subprocess_env())

        assert result.returncode == 0, result.stderr
        assert not left.exists() and in_progress.exists()
        assert sorted(p.name for p in out.parent.iterdir()) == [in_progress.name, out.name]
        onnx = pytest.importorskip("onnx")
        onnx.checker.check_model(onnx.load(str(out)))  # the new export replaced the old file
    finally:
        holder.kill()
        holder.wait()


# --- 3. the demo's private uploads folder: removed on SIGHUP, SIGTERM and a normal exit --------------------


DEMO_FOLDER = r"""
import atexit, os, sys
from catdog_lib import demo
with demo.private_uploads() as folder:
    for number in range(588):                            # a classroom's uploads (issue 31: 588 files)
        (folder / f"upload-{number}.jpg").write_bytes(b"photo")
    # Gradio writes vibe_edit_history into its temp folder from its own exit handlers, registered at its
    # import (after the folder was made): modelled here by one that makes it again at exit
    atexit.register(os.makedirs, folder / "vibe_edit_history", exist_ok=True)
    print(folder, flush=True)
    sys.stdin.readline()                                 # until the test says stop (or a signal comes)
"""


@pytest.mark.parametrize("stop", ["SIGHUP", "SIGTERM", "exit"])
def test_the_demo_leaves_nothing_in_the_temporary_folder(stop: str, tmp_path: Path) -> None:
    temp = tmp_path / "temp"  # the demo's GRADIO_TEMP_DIR and the temporary folder
    temp.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    killed = temp / f"catdog-demo-{dead.stdout.strip()}-abcd"  # a demo killed with SIGKILL earlier
    (killed / "vibe_edit_history").mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-c", DEMO_FOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env=subprocess_env(GRADIO_TEMP_DIR=str(temp), TMPDIR=str(temp)))
    folder = Path(process.stdout.readline().strip())
    assert folder.parent == temp and len(list(folder.iterdir())) == 588 and not killed.exists()
    if stop != "exit":
        process.send_signal(getattr(signal, stop))
    _, err = process.communicate("stop\n", timeout=60)
    assert process.returncode == (0 if stop == "exit" else 128 + getattr(signal, stop)), err
    assert list(temp.iterdir()) == [], err
    assert "Traceback" not in err


@pytest.mark.parametrize("stop", ["SIGHUP", "SIGTERM"])
def test_the_real_demo_stopped_by_a_signal_removes_its_uploads(stop: str, tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="Gradio (the demo extra) is not installed; `make test-browser` installs it")

    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    port = free_port()
    temp = tmp_path / "temp"
    temp.mkdir()
    out = tmp_path / "demo.out"
    with open(out, "w") as stdout:
        demo_process = subprocess.Popen([*catdog_command(), "demo", "--checkpoint", checkpoint, "--port", str(port)],
                                   stdout=stdout, stderr=subprocess.PIPE, text=True,
                                   env=subprocess_env(GRADIO_TEMP_DIR=str(temp), TMPDIR=str(temp)))
    try:
        deadline = time.monotonic() + 240
        while "open http" not in out.read_text():
            assert demo_process.poll() is None and time.monotonic() < deadline
            time.sleep(0.5)
        assert [p.name.startswith("catdog-demo-") for p in temp.iterdir()] == [True]
    finally:
        demo_process.send_signal(getattr(signal, stop))
        _, err = demo_process.communicate(timeout=60)
    assert list(temp.iterdir()) == [], err
    assert "Traceback" not in err


# --- 4. two courses in one course folder ------------------------------------------------------------------


HOLD_COURSE = r"""
import sys, time
from pathlib import Path
from catdog_lib.train.runlock import hold_course
with hold_course(Path(sys.argv[1])):
    print("running", flush=True)
    time.sleep(120)
"""

TRAINING_IN_COURSE_RUN = r"""
import sys, time
from pathlib import Path
from catdog_lib import course
run = course.fresh_course_run(Path(sys.argv[1]))   # what notebook 04 does before training there
(run / "best.pt").write_bytes(b"the first course's checkpoint")
print("training", flush=True)
time.sleep(120)
"""


def _started(code: str, *args: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, text=True,
                               cwd=REPO, env=subprocess_env())
    assert process.stdout.readline().strip() in {"running", "training"}
    return process


def test_a_second_course_in_the_same_course_folder_is_refused_and_the_first_run_survives(tmp_path: Path) -> None:
    home = tmp_path / "course"
    run = home / "runs" / "course"
    run.mkdir(parents=True)
    (run / "best.pt").write_bytes(b"the first course's checkpoint")
    first = _started(HOLD_COURSE, run)
    try:
        started = time.monotonic()
        second = subprocess.run([*catdog_command(), "course", "--fast", "--offline"], capture_output=True,
                                text=True, timeout=120, cwd=home, env=subprocess_env(CATDOG_HOME=str(home)))
        assert time.monotonic() - started < 60  # refused at once, no notebook run
    finally:
        first.kill()
        first.wait()
    assert_clean_error(second, "another `catdog course` is running in this course folder", str(run))
    assert len(second.stderr.strip().splitlines()) == 1
    assert (run / "best.pt").read_bytes() == b"the first course's checkpoint"
    assert sorted(p.name for p in home.iterdir()) == ["runs"]  # nothing else written (no runs/<timestamp>)
    assert sorted(p.name for p in (home / "runs").iterdir()) == [COURSE_LOCK, "course"]


def test_a_fresh_course_start_leaves_the_run_another_course_trains_in_alone(tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture) -> None:
    from catdog_lib import course

    run = tmp_path / "runs" / "course"
    first = _started(TRAINING_IN_COURSE_RUN, run)
    try:
        with pytest.raises(CatdogError, match=rf"another course \(process {first.pid}\) is training in this folder"):
            course.fresh_course_run(run)
        assert (run / "best.pt").read_bytes() == b"the first course's checkpoint"
    finally:
        first.kill()
        first.wait()
    capsys.readouterr()
    assert course.fresh_course_run(run) == run  # once the first has ended: emptied, lock file kept
    assert "removed the previous course run" in capsys.readouterr().out
    assert sorted(p.name for p in run.iterdir()) == [MARKER, LOCK]
    claim_run_folder(run, None, resume=False).release()  # what train() does next: the same lock, then free


# --- 5. a failed write says what to do about its cause -------------------------------------------------------


def test_a_write_into_a_folder_removed_meanwhile_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "runs" / "course"

    def removed_while_writing(file) -> None:
        file.write(b"half a checkpoint")
        shutil.rmtree(folder)  # another course's fresh start

    with pytest.raises(CatdogError) as raised:
        files.atomic_write(folder / "last.pt", removed_while_writing)
    message = str(raised.value)
    assert message.startswith(f"cannot write {folder / 'last.pt'}: No such file or directory. The folder was "
                              "removed while writing (by another run?); run the command again")
    assert "Free disk space" not in message


def test_a_write_under_a_file_says_so(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("a file where a folder should be")
    with pytest.raises(CatdogError) as raised:
        files.atomic_write_text(tmp_path / "runs" / "course" / "metrics.json", "{}")
    assert "Not a directory. A part of the path is a file, not a folder" in str(raised.value)
    assert "Free disk space" not in str(raised.value)


def test_the_advice_follows_the_errno_of_real_errors(tmp_path: Path) -> None:
    causes: dict[int, OSError] = {}
    with open("/dev/full", "wb", buffering=0) as full:  # the kernel's always-full device: ENOSPC
        try:
            full.write(b"x")
        except OSError as error:
            causes[error.errno] = error
    (tmp_path / "a-file").write_text("")
    for folder in (tmp_path / "removed" / "run", tmp_path / "a-file" / "run"):  # ENOENT, ENOTDIR
        try:
            os.mkdir(folder)
        except OSError as error:
            causes[error.errno] = error
    assert sorted(causes) == sorted([errno.ENOSPC, errno.ENOENT, errno.ENOTDIR])
    assert files.write_advice(causes[errno.ENOSPC]).startswith("Free disk space")
    assert files.write_advice(causes[errno.ENOENT]).startswith("The folder was removed while writing")
    assert files.write_advice(causes[errno.ENOTDIR]).startswith("A part of the path is a file")
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES))  # as root no real call is refused
    assert files.write_advice(denied) == "Choose a writable --out folder"
