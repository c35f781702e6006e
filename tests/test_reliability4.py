"""Reliability, round 4 (issue 31), files and caches: special files, whole-file reads, pixel budgets, temporary
files in shared folders, and caches a classmate can write.

"Another user" is played by root giving files to another uid (``os.chown``); the refusal and verification
logic is then exercised directly. Memory is measured in a subprocess under a heap limit (its peak from
``VmHWM``), and every subprocess has a timeout, so a hang or a regression fails instead of blocking.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from catdog_lib import engine
from catdog_lib.files import atomic_write_bytes, atomic_write_text
from catdog_lib.model.features import FeatureCache
from conftest import REPO, make_checkpoint, make_dataset, subprocess_env

GIB = 1 << 30
OTHER_USER = 54321
CPU = torch.device("cpu")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="making files of another user needs root")


def run_measured(code: str, *args: str | Path, limit: int = 3 * GIB, timeout: float = 60,
                 env: dict[str, str] | None = None) -> tuple[str, str, int]:
    """Run a Python snippet under a heap limit (RLIMIT_DATA) and a timeout: (stdout, stderr, peak RSS in bytes)."""
    bounded = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_DATA, (%d, %d))\n" % (limit, limit)
               + code + "\nprint('peak', next(int(line.split()[1]) for line in open('/proc/self/status')"
               " if line.startswith('VmHWM')) * 1024)")
    result = subprocess.run([sys.executable, "-c", bounded, *map(str, args)], capture_output=True,
                            encoding="utf-8", timeout=timeout, env=env or subprocess_env(), cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    *lines, peak = result.stdout.splitlines()
    return "\n".join(lines), result.stderr, int(peak.split()[1])


def sparse_file(path: Path, size: int = 3 * GIB, head: bytes = b"") -> Path:
    """A file of ``size`` bytes that takes no disk space (``truncate``), starting with ``head``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(head)
        file.truncate(size)
    return path


def add_special_files(folder: Path) -> dict[str, Path]:
    """A FIFO, a device (a symlink to /dev/zero) and a sparse 3 GB non-image, all named like photos."""
    folder.mkdir(parents=True, exist_ok=True)
    os.mkfifo(folder / "x.jpg")
    (folder / "z.jpg").symlink_to("/dev/zero")
    return {"fifo": folder / "x.jpg", "device": folder / "z.jpg", "huge": sparse_file(folder / "huge.jpg")}


def in_time(call: Callable[[], object], seconds: float = 30) -> object:
    """``call()`` in a thread; fails (instead of hanging the suite) if it has not returned in ``seconds``."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (blocked on a FIFO?)"
    return result[0]


# --- 1. only regular files are read, and never whole -------------------------------------------------------


def high_water() -> str:
    return "next(int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')) * 1024"


DIGESTS = f"""
from pathlib import Path
from catdog_lib.model.features import cache_digest
print("imported", {high_water()})
for name in sys.argv[1:]:
    print(name, repr(cache_digest(Path(name))))
"""


def test_hashing_a_fifo_a_device_or_a_3_gb_file_reads_none_of_them(tmp_path: Path) -> None:
    files = add_special_files(tmp_path / "cats")
    good = make_dataset(tmp_path / "data", per_class=1) / "cats" / "cats.0.jpg"

    out, _, peak = run_measured(DIGESTS, *files.values(), good, limit=GIB, timeout=60)  # it hung on the FIFO

    lines = dict(line.split(" ", 1) for line in out.splitlines())
    assert [lines[str(path)] for path in files.values()] == ["''"] * 3   # never a cache key, never read
    assert lines[str(good)] == repr(hashlib.sha1(good.read_bytes()).hexdigest())
    assert peak - int(lines["imported"]) < 50 << 20   # before: /dev/zero and the 3 GB file were read whole


LOAD = """
from catdog_lib.data.images import BadImageError, load_rgb
try:
    load_rgb(sys.argv[1], min_size=224)
except BadImageError as error:
    print(error)
"""


def test_a_3_gb_file_that_starts_like_a_jpeg_is_refused_unread(tmp_path: Path) -> None:
    huge = sparse_file(tmp_path / "huge.jpg", head=b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00")

    out, _, peak = run_measured(LOAD, huge, limit=GIB)

    assert out == f"{huge}: 3.0 GB, far larger than any photo (over 1024 MB); not read. Remove it from the folder"
    assert peak < 200 << 20   # before: read whole to cut its EXIF out (MemoryError under the limit)


TRAIN = """
from catdog_lib.cli import main
try:
    print("exit", main(sys.argv[1:]))
except SystemExit as exit:
    print("exit", exit.code)
"""


def test_train_with_a_fifo_a_device_and_a_3_gb_file_finishes_with_one_warning_each(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=6, size=(64, 64))
    files = {**add_special_files(root / "cats"), "dog fifo": root / "dogs" / "y.jpg"}
    os.mkfifo(files["dog fifo"])
    env = subprocess_env(CATDOG_CACHE_DIR=str(tmp_path / "cache"), CATDOG_ENGINE="torch")

    out, err, peak = run_measured(TRAIN, "train", "--data", root, "--out", tmp_path / "run", "--arch",
                                  "efficientnet_lite0", "--epochs", "1", "--quiet", timeout=300, env=env)

    assert "exit 0" in out.splitlines(), out + err
    assert (tmp_path / "run" / "best.pt").is_file()
    for path in files.values():
        assert err.count(f"skipping bad image {path}:") == 1, err   # one warning each
    assert "is a FIFO" in err and "device or socket" in err and "far larger than any photo" in err
    assert peak < 2 * GIB, peak   # before: hung on the FIFO; with the FIFO gone, 4.1 GB for the 3 GB file


# --- 2. a pixel budget ------------------------------------------------------------------------------------


def real_png(path: Path, width: int, height: int, mode: str = "RGB") -> Path:
    """A real, valid PNG of one colour (zeros), compressed row by row: tiny on disk, huge once decoded."""
    channels, color = {"RGB": (3, 2), "RGBA": (4, 6)}[mode]

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    compressor, row, parts = zlib.compressobj(9), bytes(1 + width * channels), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, color, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def pixel_bombs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("bombs")
    return [real_png(folder / "rgb.png", 9000, 9000), real_png(folder / "rgba.png", 9400, 9400, "RGBA")]


def test_pngs_over_the_pixel_budget_are_refused_before_decoding(pixel_bombs: list[Path]) -> None:
    assert pixel_bombs[0].stat().st_size < 400_000   # 258 KB on disk, 243 MB decoded
    code = LOAD.replace("load_rgb(sys.argv[1], min_size=224)", "load_rgb(sys.argv[1])")
    for bomb, size in zip(pixel_bombs, ("9000x9000", "9400x9400")):
        out, _, peak = run_measured(code, bomb, limit=GIB)
        assert out == (f"{bomb}: claims {size} pixels, over the 50,000,000-pixel limit (a decompression bomb or "
                       "a scan); resize it below that")
        assert peak < 200 << 20   # before: decoded (under Pillow's 89 Mpx), 0.3-0.5 GB for the pixels alone


PREDICT_AND_DEMO = """
from catdog_lib.cli import main
from catdog_lib.infer.demo import analyse
from catdog_lib.infer.evaluation import load_model
checkpoint, *bombs = sys.argv[1:]
try:
    print("exit", main(["predict", "--checkpoint", checkpoint, *bombs]))
except SystemExit as exit:
    print("exit", exit.code)
loaded = load_model(checkpoint)
for bomb in bombs:
    print(analyse(loaded, bomb).message)
"""


def test_predict_and_the_demo_refuse_pixel_bombs_in_bounded_memory(tmp_path: Path, pixel_bombs: list[Path]) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], image_size=224)

    out, err, peak = run_measured(PREDICT_AND_DEMO, checkpoint, *pixel_bombs, timeout=120)

    lines = out.splitlines()
    assert "exit 1" in lines, out + err
    for bomb in pixel_bombs:
        assert any(line.startswith(f"{bomb}\tskipped: claims") for line in lines), out
        assert any(line.startswith(f"{bomb.name}: claims") and "50,000,000-pixel limit" in line for line in lines)
    assert peak < GIB, peak   # before: 2.8 GB (predict), 2-3 GB (the demo)


# --- 3. temporary files: exclusive, random, never followed ------------------------------------------------


@pytest.mark.parametrize("name", ["metrics.json", ".course-split.json"])
def test_a_planted_symlink_at_the_old_temporary_name_is_not_written_through(tmp_path: Path, name: str) -> None:
    victim = tmp_path / "thesis.txt"
    victim.write_text("my thesis")
    run = tmp_path / "run"
    run.mkdir()
    (run / f".{name}.tmp").symlink_to(victim)   # a classmate's plant in a group-writable folder

    atomic_write_text(run / name, '{"accuracy": 0.9}')

    assert victim.read_text() == "my thesis"
    assert (run / name).read_text() == '{"accuracy": 0.9}' and not (run / name).is_symlink()


def test_another_processs_write_in_progress_keeps_its_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "best.pt"
    writing, dead = tmp_path / ".best.pt.a1b2c3.tmp", tmp_path / ".best.pt.d4e5f6.tmp"
    writing.write_bytes(b"half")
    dead.write_bytes(b"half")
    with open(writing, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)   # what a live writer holds
        atomic_write_bytes(target, b"new")
        assert writing.exists()   # before: removed under the other writer, whose rename then failed
    assert not dead.exists() and target.read_bytes() == b"new"


# --- 4. caches others can write ------------------------------------------------------------------------------


def _shard(entries: dict[str, torch.Tensor]) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    torch.save({"keys": list(entries), "values": torch.stack(list(entries.values()))}, buffer)
    return hashlib.sha256(buffer.getvalue()).hexdigest(), buffer.getvalue()


@pytest.fixture
def shared_folder(tmp_path: Path):
    """A classroom's cache folder: setgid, group-writable, and umask 002."""
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o2775)
    before = os.umask(0o002)
    yield folder
    os.umask(before)


@needs_root
def test_a_feature_shard_planted_by_another_user_is_never_read(shared_folder: Path) -> None:
    cache = FeatureCache(shared_folder, "lite0:test", "torch:float32")
    cache.add({"photo/plain": torch.ones(4)})
    digest, data = _shard({"photo/flip": -torch.ones(4), "other/plain": -torch.ones(4)})
    planted = cache.folder / f"{digest}.pt"
    planted.write_bytes(data)   # named by its own digest: the checksum alone cannot tell
    os.chown(planted, OTHER_USER, OTHER_USER)

    assert sorted(cache.load()) == ["photo/plain"]   # before: the classmate's features too
    assert planted.exists()   # not ours to delete


@needs_root
def test_own_shards_are_shared_read_only_and_a_group_writable_one_is_not_trusted(shared_folder: Path) -> None:
    cache = FeatureCache(shared_folder, "lite0:test", "torch:float32")
    cache.add({"photo/plain": torch.ones(4)})
    (shard,) = cache.folder.glob("*.pt")
    assert stat.S_IMODE(cache.folder.stat().st_mode) == 0o2775   # the group may add shards
    assert stat.S_IMODE(shard.stat().st_mode) == 0o644   # and read this one, not change it
    # A shard of ours that the group could write, in a folder the group can write: a classmate could have
    # changed its bytes and renamed it to match, so its entries are not used.
    digest, data = _shard({"changed/plain": -torch.ones(4)})
    changed = cache.folder / f"{digest}.pt"
    changed.write_bytes(data)
    changed.chmod(0o664)
    assert sorted(cache.load()) == ["photo/plain"]


def test_a_fifo_in_the_feature_cache_does_not_hang_loading(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, "lite0:test", "torch:float32")
    cache.add({"photo/plain": torch.ones(4)})
    os.mkfifo(cache.folder / f"{'0' * 64}.pt")
    assert sorted(in_time(cache.load)) == ["photo/plain"]   # before: blocked opening the FIFO


def _lite0() -> torch.nn.Module:
    from catdog_lib.model.backbones import create_model

    torch.manual_seed(0)
    return create_model("efficientnet_lite0", 2, weights=None).backbone.eval()


@pytest.fixture
def onnx_engine(monkeypatch: pytest.MonkeyPatch, one_thread: None) -> engine.Engine:
    if not engine.installed("onnxruntime"):
        pytest.skip("onnxruntime not installed")
    monkeypatch.setenv(engine.ENGINE_ENV, "onnxruntime")
    monkeypatch.setattr(engine, "_RUN_ONLY", {}, raising=False)
    return engine.ENGINES["onnxruntime"]


def _matches_pytorch(runner: engine.BackboneRunner, backbone: torch.nn.Module) -> float:
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = backbone.float()(images)
    return float(torch.nn.functional.cosine_similarity(runner(images), expected, dim=1).min())


def _count_exports(monkeypatch: pytest.MonkeyPatch, fail_under: Path | None = None) -> list[Path]:
    """Record every ONNX export; with ``fail_under``, exports there fail as on a full disk."""
    calls, export = [], engine.export_backbone_onnx

    def counted(backbone: torch.nn.Module, example: torch.Tensor, path: Path) -> None:
        calls.append(path)
        if fail_under is not None and fail_under in path.parents:
            raise OSError(errno.ENOSPC, "No space left on device")
        export(backbone, example, path)

    monkeypatch.setattr(engine, "export_backbone_onnx", counted)
    return calls


def test_a_cached_export_with_flipped_bits_is_detected_and_made_again(tmp_path, monkeypatch, onnx_engine) -> None:
    import onnx

    backbone = _lite0()
    engine.backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path)
    (model,) = tmp_path.glob("onnxruntime-*/backbone.onnx")
    data = bytearray(model.read_bytes())
    largest = max(onnx.load(model).graph.initializer, key=lambda tensor: len(tensor.raw_data))
    start = bytes(data).index(largest.raw_data)
    for sign in range(start + 3, start + len(largest.raw_data), 4):
        data[sign] ^= 0x80   # every float of the tensor negated; the file still parses
    model.write_bytes(bytes(data))
    exports = _count_exports(monkeypatch)

    runner = engine.backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path)

    assert len(exports) == 1 and _matches_pytorch(runner, backbone) >= engine.MIN_COSINE   # before: used as is
    assert model.read_bytes() != bytes(data)


def _planted_export(folder: Path, module: torch.nn.Module, identity: str = "onnxruntime:fp32") -> None:
    """A classmate's export of ``module`` and a check that says it passed, owned by them."""
    folder.mkdir(parents=True)
    engine.export_backbone_onnx(module, torch.randn(2, 3, 64, 64), folder / "backbone.onnx")
    files = {"backbone.onnx": hashlib.sha256((folder / "backbone.onnx").read_bytes()).hexdigest()}
    (folder / "check.json").write_text(json.dumps({"identity": identity, "passed": True, "why": "", "files": files}))
    for path in (folder, folder / "backbone.onnx", folder / "check.json"):
        os.chown(path, OTHER_USER, OTHER_USER)
    folder.chmod(0o2755)


class Negated(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return -self.backbone(images)


@needs_root
def test_another_users_swapped_export_is_checked_against_pytorch_and_not_used(tmp_path, monkeypatch,
                                                                              onnx_engine) -> None:
    backbone = _lite0()
    shared = engine.export_folder(tmp_path, onnx_engine, backbone, "lite0")
    _planted_export(shared, Negated(backbone).eval())   # negated features: accuracy 0.83 -> 0.17, silently

    runner = engine.backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path)

    assert _matches_pytorch(runner, backbone) >= engine.MIN_COSINE
    assert (shared / "check.json").exists()   # the classmate's folder is left alone ...
    assert (shared.with_name(f"{shared.name}-u{os.getuid()}") / "check.json").exists()   # ... and ours is used
    exports = _count_exports(monkeypatch)
    engine.backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path)
    assert exports == []   # the next run loads ours


@needs_root
def test_another_users_good_export_is_shared_after_checking_it(tmp_path, monkeypatch, onnx_engine) -> None:
    backbone = _lite0()
    _planted_export(engine.export_folder(tmp_path, onnx_engine, backbone, "lite0"), backbone)
    exports = _count_exports(monkeypatch)

    runner = engine.backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path)

    assert exports == [] and _matches_pytorch(runner, backbone) >= engine.MIN_COSINE


def test_exports_follow_the_shared_folders_group_and_killed_exports_are_swept(shared_folder, onnx_engine) -> None:
    old = time.time() - 3600
    dead, busy, fresh = (shared_folder / f".onnxruntime-0123.{name}" for name in ("dead", "busy", "fresh"))
    for folder in (dead, busy, fresh):
        folder.mkdir()
        (folder / "backbone.onnx").write_bytes(b"half an export")
    for folder in (dead, busy):
        os.utime(folder, (old, old))
    held = os.open(busy, os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)   # an export still running in another process
    try:
        engine.backbone_runner(_lite0(), "lite0", CPU, cache_root=shared_folder)
    finally:
        os.close(held)

    (folder,) = shared_folder.glob("onnxruntime-*")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o2755   # before: 0o2700, "openvino not used (PermissionError)"
    assert {stat.S_IMODE(path.stat().st_mode) for path in folder.iterdir()} == {0o644}
    assert not dead.exists() and busy.exists() and fresh.exists()   # before: SIGKILL's leftovers stayed forever


def test_an_engine_cache_on_a_full_disk_warns_once_and_exports_once(tmp_path, monkeypatch, onnx_engine) -> None:
    exports = _count_exports(monkeypatch, fail_under=tmp_path / "full")
    backbone = _lite0()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = engine.backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path / "full")
        second = engine.backbone_runner(backbone, "lite0", CPU, cache_root=tmp_path / "full")   # the valid split

    messages = [str(warning.message) for warning in caught]
    assert len(messages) == 1 and "exported backbone not cached" in messages[0], messages
    assert len(exports) == 2 and second is first   # one failed into the cache, one for this run; before: 4
    assert _matches_pytorch(first, backbone) >= engine.MIN_COSINE
