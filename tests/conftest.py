"""Shared fixtures: tiny images made with PIL, tiny class-folder datasets, the real CLI in a subprocess,
and subprocesses that really lack the power to bypass file permissions (tests run as root in CI)."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import io
import struct
import os
import socket
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import warnings
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_lib.cli import main

REPO = Path(__file__).resolve().parent.parent
NOBODY = 65534
CLASS_COLORS = {"cats": (210, 90, 60), "dogs": (60, 90, 210), "birds": (60, 200, 80)}


def pytest_report_header(config: pytest.Config) -> str:
    """Which Pillow decodes the photos in this run: installing the demo extra (Gradio pins pillow<13) replaces the
    course's Pillow, so the browser tests may decode with another version than `make test`."""
    import importlib.metadata
    import importlib.util

    import PIL

    gradio = importlib.util.find_spec("gradio") and importlib.metadata.version("gradio")
    return f"Pillow {PIL.__version__}" + (f" (Gradio {gradio} installed: it pins pillow<13)" if gradio else "")


# --- images and datasets --------------------------------------------------------------------------


def make_image(path: str | Path, mode: str = "RGB", size: tuple[int, int] = (16, 16),
               color: tuple[int, int, int] = (200, 120, 40), noise: bool = True, **save_kwargs) -> Path:
    """Write an image file (format from the suffix, any case) and return its path.

    Pixels are ``color`` plus a little noise seeded by the path, so no two files are byte-identical
    (`catdog data check` reports duplicates). ``mode`` is any Pillow mode; "I;16" writes 16-bit samples.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    rgb = np.empty((height, width, 3), dtype=np.int16)
    rgb[...] = color
    if noise:
        rng = np.random.default_rng(zlib.crc32(str(path).encode()))
        rgb += rng.integers(-25, 26, size=rgb.shape, dtype=np.int16)
    rgb8 = rgb.clip(0, 255).astype(np.uint8)
    if mode == "I;16":
        image = Image.fromarray(rgb8[..., 0].astype(np.uint16) * 257)
        assert image.mode == "I;16"
    else:
        image = Image.fromarray(rgb8)
        if mode != "RGB":
            image = image.convert(mode)
    image.save(path, **save_kwargs)
    return path


def make_dataset(root: str | Path, per_class: int | dict[str, int] = 5,
                 classes: Sequence[str] = ("cats", "dogs"), size: tuple[int, int] = (24, 24)) -> Path:
    """A class-folder root: ``root/<class>/<class>.<i>.jpg``, each class its own colour."""
    root = Path(root)
    counts = per_class if isinstance(per_class, dict) else {name: per_class for name in classes}
    for index, (name, count) in enumerate(counts.items()):
        color = CLASS_COLORS.get(name.lower(), ((70 * index) % 256, 128, 255 - (70 * index) % 256))
        for i in range(count):
            make_image(root / name / f"{name.lower()}.{i}.jpg", size=size, color=color)
    return root


@contextlib.contextmanager
def full_mode_course(base: Path, per_class: int) -> Iterator[Path]:
    """Notebooks in full mode (no CATDOG_FAST) with their runs and feature cache under ``base`` (kernels inherit the
    environment), on a dataset of ``per_class`` small photos per class there: yields the dataset's root."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CATDOG_RUNS_DIR", str(base / "runs"))
        patch.setenv("CATDOG_CACHE_DIR", str(base / "cache"))
        patch.delenv("CATDOG_FAST", raising=False)
        yield make_dataset(base / "data", per_class, size=(64, 64))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, well-formed PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)   # 8-bit RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def truncated_jpeg(path: Path) -> Path:
    """The first half of a real (noisy, so not trivially short) JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def exif_rotated_jpeg(path: Path, orientation: int = 6) -> Path:
    """A 40x20 photo stored sideways (left half red, right half blue) with an EXIF orientation tag."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=exif.tobytes(), quality=95)
    return path


def add_bad_files(folder: Path, tag: str = "") -> dict[Path, str]:
    """One of each kind of bad file in ``folder``: {path: words its problem message contains}.

    (Unreadable permissions need an unprivileged process; tests add that file themselves.)
    """
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        folder / f"empty{tag}.jpg": "empty file",
        folder / f"truncated{tag}.jpg": "truncated",
        folder / f"notes{tag}.jpg": "not an image",
        folder / f"page{tag}.jpeg": "not an image",
        folder / f"bomb{tag}.png": "decompression bomb",
        folder / f"고장난{tag}.JPG": "truncated",
    }
    paths = list(bad)
    paths[0].write_bytes(b"")
    truncated_jpeg(paths[1])
    paths[2].write_text("these are my notes, not a photo\n")
    paths[3].write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>")
    paths[4].write_bytes(png_claiming(40_000, 40_000))
    paths[5].write_bytes(b"\xff\xd8\xff\xe0 half a header")
    return bad


def add_odd_good_files(folder: Path, color: tuple[int, int, int] = (200, 120, 40)) -> list[Path]:
    """Readable images in every awkward form: alpha, palette, grayscale, CMYK, 16-bit, EXIF-rotated,
    upper-case extensions, 1x1, non-ASCII names."""
    files = [
        make_image(folder / "alpha.png", "RGBA", color=color),
        make_image(folder / "palette.png", "P", color=color),
        make_image(folder / "palette-transparent.png", "P", color=color, transparency=0),
        make_image(folder / "gray.jpg", "L", color=color),
        make_image(folder / "cmyk.jpg", "CMYK", color=color),
        make_image(folder / "deep16.png", "I;16", color=color),
        exif_rotated_jpeg(folder / "phone.jpg"),
        make_image(folder / "UPPER.JPG", color=color),
        make_image(folder / "long.jpeg", color=color),
        make_image(folder / "Shout.PNG", color=color),
        make_image(folder / "dot.png", size=(1, 1), color=color),
        make_image(folder / "고양이.jpg", color=color),
        make_image(folder / "chat_été.jpg", color=color),
    ]
    return files


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    """cats/ and dogs/ with 5 small JPEGs each."""
    return make_dataset(tmp_path / "data")


@pytest.fixture
def real_data_root() -> Path:
    """The real Kaggle subset named by CATDOG_DATA_DIR; the test is skipped (with the reason) without it."""
    root = os.environ.get("CATDOG_DATA_DIR")
    if not root or not (Path(root) / "training_set").is_dir():
        pytest.skip("real photos not present: set CATDOG_DATA_DIR to the cat-and-dog subset")
    return Path(root)


@pytest.fixture(scope="session")
def _engine_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Backbones exported for an inference engine (catdog_lib/model/engine.py), shared by the session's tests."""
    return tmp_path_factory.mktemp("engines")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
                   _engine_cache: Path) -> None:
    """Feature caches go to a fresh folder, never the repo's data/cache; exported backbones are shared."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / "engines").symlink_to(_engine_cache, target_is_directory=True)
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(cache))


# --- fast, quiet torch ----------------------------------------------------------------------------


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread: on a shared 2-core machine, two spinning threads are several times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_arch(monkeypatch: pytest.MonkeyPatch, one_thread: None) -> str:
    """efficientnet_lite0 at 64 px instead of 224 (12x less compute) for in-process training tests."""
    from catdog_lib import backbones
    from catdog_lib.data.transforms import Preprocessing

    arch = backbones.ARCHS["efficientnet_lite0"]
    small = dataclasses.replace(arch, prep=Preprocessing(64, arch.prep.mean, arch.prep.std))
    monkeypatch.setitem(backbones.ARCHS, "efficientnet_lite0", small)
    return "efficientnet_lite0"


def make_checkpoint(path: Path, classes: Sequence[str], image_size: int = 64, recipe: str = "finetune",
                    arch: str = "efficientnet_lite0") -> Path:
    """A loadable catdog checkpoint with random weights (no training), for evaluate/predict tests."""
    from catdog_lib.model.backbones import create_model, get_arch
    from catdog_lib.model.checkpoint import save_checkpoint
    from catdog_lib.data.transforms import Preprocessing

    prep = get_arch(arch).prep
    model = create_model(arch, len(classes), weights=None)
    meta = {"arch": arch, "classes": list(classes), "recipe": recipe, "backbone_weights": f"{arch}:None",
            "preprocessing": Preprocessing(image_size, prep.mean, prep.std).as_dict()}
    save_checkpoint(path, model.state_dict(), meta)
    return path


# --- the real CLI ---------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ctrl_c_reaches() -> dict:
    """Popen arguments for a server a test stops with Ctrl-C, so that SIGINT reaches it as from a terminal: a test
    run started in the background by a shell without job control has SIGINT ignored, children inherit that, and
    Python then never raises KeyboardInterrupt (Windows has no such inheritance: nothing to do)."""
    if os.name != "posix":
        return {}
    return {"preexec_fn": lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)}


def catdog_command() -> list[str]:
    """The installed `catdog` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("catdog")
    return [str(script)] if script.exists() else [sys.executable, "-m", "catdog_lib.cli"]


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", **extra}
    env.pop("CATDOG_DATA_DIR", None)
    return env


def run_catdog(*args: str | Path, timeout: float = 120, unprivileged: bool = False,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `catdog ARGS` in a subprocess (optionally without permission-bypassing powers)."""
    run = run_unprivileged if unprivileged else subprocess.run
    return run([*catdog_command(), *map(str, args)], capture_output=True, encoding="utf-8", timeout=timeout,
               env=env or subprocess_env())


def run_python(code: str, *args: str | Path, timeout: float = 120, unprivileged: bool = False,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run a Python snippet in a fresh interpreter (``sys.argv[1:]`` are ``args``)."""
    run = run_unprivileged if unprivileged else subprocess.run
    return run([sys.executable, "-c", code, *map(str, args)], capture_output=True, encoding="utf-8", timeout=timeout,
               env=env or subprocess_env(), cwd=REPO)


# --- permissions, for real, even as root ------------------------------------------------------------


def _usable_by_others(path: Path, need: int) -> bool:
    """Whether a user with no special rights can reach ``path`` (every folder above searchable) and has ``need``."""
    path = path.resolve()
    if not all(parent.stat().st_mode & stat.S_IXOTH for parent in path.parents):
        return False
    return path.stat().st_mode & need == need


def _nobody_can_run_python() -> bool:
    stdlib = Path(os.__file__).parent
    return (_usable_by_others(Path(sys.executable), stat.S_IXOTH)
            and _usable_by_others(stdlib, stat.S_IROTH | stat.S_IXOTH))


_PR_CAPBSET_DROP = 24
_FILE_CAPABILITIES = (1, 2, 3)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER


def _drop_file_capabilities_factory():
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork: the child only calls it

    def drop() -> None:
        for capability in _FILE_CAPABILITIES:
            if prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
    return drop


def run_unprivileged(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run for a process that obeys file permissions.

    Not root: nothing to drop. Root: run as nobody (uid 65534) when nobody can execute this Python;
    where the interpreter lives in a private folder (pyenv under /root), stay uid 0 but remove
    CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from the bounding set before exec, so the
    kernel applies the files' mode bits to the process exactly as to any other user. Either way files
    should live under a ``public_tmp`` folder: mode 0o000 is unreadable and 0o555 read-only to it.
    """
    if os.geteuid() == 0:
        if _nobody_can_run_python():
            kwargs.update(user=NOBODY, group=NOBODY, extra_groups=[])
        else:
            kwargs["preexec_fn"] = _drop_file_capabilities_factory()
    return subprocess.run(args, **kwargs)


def _force_rmtree(path: Path) -> None:
    for folder, dirs, files in os.walk(path):
        for name in dirs + files:
            target = Path(folder) / name
            if not target.is_symlink():
                target.chmod(0o700)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def public_tmp() -> Iterator[Path]:
    """A fresh folder under /tmp that an unprivileged process can reach (0o755, unlike pytest's tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="catdog-test-", dir="/tmp"))
    path.chmod(0o755)
    (path / "home").mkdir(mode=0o777)
    (path / "home").chmod(0o777)
    yield path
    _force_rmtree(path)


def public_env(public: Path, **extra: str) -> dict[str, str]:
    """Environment for an unprivileged subprocess: a HOME and a cache it can write."""
    cache = public / "cache"
    cache.mkdir(mode=0o777, exist_ok=True)
    cache.chmod(0o777)
    return subprocess_env(HOME=str(public / "home"), CATDOG_CACHE_DIR=str(cache), MPLCONFIGDIR=str(public / "home"),
                          **extra)


def make_writable_by_all(path: Path) -> Path:
    """A folder an unprivileged process may write (for run folders it must create files in)."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def assert_clean_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2, one `catdog: error:` line naming the problem, and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert "catdog: error:" in result.stderr, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    """`catdog ARGS` in this process (the entry point's main()): (status, stdout, stderr)."""
    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)   # main() replaces it

    def run(*args: str | Path) -> tuple[int, str, str]:
        try:
            status = main([str(arg) for arg in args])
        except SystemExit as exit_:   # argparse errors
            status = exit_.code
        captured = capsys.readouterr()
        return status, captured.out, captured.err
    return run
