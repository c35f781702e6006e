"""Reliability, round 3 (issue 22): bombs, tampered model files, hangs and odd names on the new surfaces.

Every hostile input is built for real and small: a progressive JPEG whose header claims 40000x40000
pixels, checkpoints and ONNX files with tampered metadata, a FIFO named like a photo, file names that
are not UTF-8 or hold tabs, a zip bomb, an oversized photo behind a loopback HTTP server. Memory is
measured in a subprocess under a 2 GiB heap limit, so a regression fails instead of
swapping the machine.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from catdog_lib.errors import CatdogError
from catdog_lib.data.images import BadImageError, load_rgb
from conftest import (REPO, assert_clean_error, make_checkpoint, make_dataset, make_image, png_claiming, public_env,
                      run_catdog, subprocess_env)

GIB = 1 << 30


def run_bounded(code: str, *args: str | Path, limit: int = 2 * GIB, timeout: float = 60) -> tuple[str, int]:
    """Run a Python snippet with at most ``limit`` bytes of heap (RLIMIT_DATA: torch maps more address space than
    it uses, so RLIMIT_AS would stop its import); (its output, its peak RSS in bytes: VmHWM, not ru_maxrss, which
    Linux carries over from the forking process through exec)."""
    bounded = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_DATA, (%d, %d))\n" % (limit, limit)
               + code + "\nprint('peak', next(int(line.split()[1]) for line in open('/proc/self/status')"
               " if line.startswith('VmHWM')) * 1024)")
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


LOAD = ("from catdog_lib.data.images import BadImageError, load_rgb\n"
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
    assert str(caught.value) == (f"{tmp_path / 'bomb.png'}: claims 40000x40000 pixels, over the 50,000,000-pixel "
                                 "limit (a decompression bomb or a scan); resize it below that")


def test_data_check_and_predict_refuse_a_progressive_bomb_in_bounded_memory(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    bomb = progressive_jpeg_claiming(root / "cats" / "bomb.jpg", 40_000, 40_000)
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    code = ("from catdog_lib.cli import main\nprint('status', main(['data', 'check', sys.argv[1]]))\n"
            "print('status', main(['predict', '--checkpoint', sys.argv[2], sys.argv[3]]))")
    output, peak = run_bounded(code, root, checkpoint, bomb, limit=3 * GIB)
    assert f"{bomb}: claims 40000x40000 pixels" in output and "status 1" in output, output
    assert f"{bomb}\tskipped: claims 40000x40000 pixels" in output and output.count("status 1") == 2, output
    assert peak < 2e9, peak  # 3.2 GB (data check) and 4.0 GB (predict) before


# --- 3. FIFOs and devices named like photos --------------------------------------------------------------


def test_a_fifo_named_like_a_photo_is_refused_without_opening_it(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", per_class=2)
    fifo = root / "cats" / "pipe.jpg"
    os.mkfifo(fifo)
    result = run_catdog("data", "check", root, timeout=60)  # it hung here, reading the pipe
    assert result.returncode == 1 and f"{fifo}: is a FIFO" in result.stdout, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    result = run_catdog("predict", "--checkpoint", checkpoint, fifo, root / "cats" / "cats.0.jpg", timeout=60)
    assert result.returncode == 1 and f"{fifo}\tskipped: is a FIFO" in result.stdout, result.stdout + result.stderr
    with pytest.raises(BadImageError, match="is a FIFO .named pipe., not a photo file; only regular files"):
        load_rgb(fifo)
    with pytest.raises(BadImageError, match="device or socket"):
        load_rgb("/dev/zero")


# --- 2. tampered model files -------------------------------------------------------------------------------


def tampered_checkpoints(folder: Path) -> dict[str, tuple[Path, str]]:
    """Checkpoints each with one field changed: {case: (file, what its error must name)}."""
    import torch

    from catdog_lib.model.checkpoint import atomic_save

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


# --- 4. names: not UTF-8, tabs and line breaks, too long, `..` and NUL ------------------------------------


ODD_NAMES = [b"caf\xe9.jpg", b"tab\there.jpg", b"two\nlines.jpg", "고양이.jpg".encode()]


def test_predict_output_is_valid_utf8_and_one_line_per_photo_whatever_the_names(tmp_path: Path) -> None:
    from conftest import catdog_command

    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(ODD_NAMES):
        buffer = io.BytesIO()
        Image.new("RGB", (20 + i, 20), (200, 30 * i, 40)).save(buffer, "JPEG")
        (folder / os.fsdecode(name)).write_bytes(buffer.getvalue())
    env = subprocess_env(PYTHONIOENCODING="utf-8")  # strict: an unencodable character would crash the print
    for mode in ("--json", "--tsv"):
        flags = ["--json"] if mode == "--json" else []
        result = subprocess.run([*catdog_command(), "predict", "--checkpoint", checkpoint, *flags, folder],
                                capture_output=True, env=env, timeout=120)
        assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode(errors="replace")
        text = result.stdout.decode("utf-8")  # strict: raises on invalid UTF-8
        if mode == "--json":
            paths = [row["path"] for row in json.loads(text)["predictions"]]
            assert sorted(os.fsencode(path).rsplit(b"/", 1)[1] for path in paths) == sorted(ODD_NAMES)
        else:
            lines = text.splitlines()
            assert len(lines) == len(ODD_NAMES) and all(line.count("\t") == 2 for line in lines), lines
            assert {line.split("\t")[0].rsplit("/", 1)[1] for line in lines} == {
                "caf\\udce9.jpg", "tab\\there.jpg", "two\\nlines.jpg", "고양이.jpg"}


def test_export_to_a_name_too_long_for_the_file_system_is_one_line(tmp_path: Path, cli) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    status, _, err = cli("export", "--checkpoint", checkpoint, "--out", tmp_path / ("고양이" * 30 + ".onnx"))
    assert status == 2 and err.count("\n") == 1, err
    assert "the file name is 275 bytes long, over the 255-byte limit" in err and "choose a shorter" in err


@pytest.mark.parametrize("name, saved_as", [
    ("..", "upload"), (".", "upload"), ("a\0b.jpg", "ab.jpg"), ("../../etc/cat.jpg", "cat.jpg"),
    ("C:\\Users\\me\\cat.jpg", "cat.jpg"), ("고" * 100 + ".jpg", "고" * 78 + ".jpg")],
    ids=["dot-dot", "dot", "nul", "climbing", "windows-path", "300-bytes"])
def test_uploads_with_odd_names_are_kept_under_a_safe_name(tmp_path: Path, name: str, saved_as: str) -> None:
    from catdog_lib.infer.own_photo import save_upload

    photo = make_image(tmp_path / "source.jpg", size=(30, 20)).read_bytes()
    saved = save_upload(name, photo, tmp_path / "uploads")
    assert saved == tmp_path / "uploads" / saved_as and saved.read_bytes() == photo


# --- 7. your own photo from a URL; SSL is not "offline" --------------------------------------------------


class PhotoSite(http.server.BaseHTTPRequestHandler):
    """/endless: zeros without end or length; /big: claims 60 MB; /short: claims 60 MB, sends 10 bytes;
    anything else: the current ``photo``."""

    photo = b""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200)
        if self.path in {"/big", "/short"}:
            self.send_header("Content-Length", str(60 << 20))
        self.end_headers()
        if self.path == "/short":  # cut off after 10 bytes
            self.wfile.write(bytes(10))
            return
        if self.path in {"/endless", "/big"}:
            with contextlib.suppress(OSError):
                while True:
                    self.wfile.write(bytes(1 << 20))
        else:
            self.wfile.write(self.photo)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PhotoSite)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def jpeg_bytes(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize("path", ["/endless", "/big"])
def test_a_url_download_stops_at_a_size_no_photo_needs_and_keeps_nothing(tmp_path: Path, site: str,
                                                                         path: str) -> None:
    from catdog_lib.infer.own_photo import MAX_PHOTO_BYTES, fetch_photo

    with pytest.raises(CatdogError, match=f"over {MAX_PHOTO_BYTES >> 20} MB, far more than a photo needs") as caught:
        fetch_photo(site + path, tmp_path / "photos")
    assert "\n" not in str(caught.value) and list((tmp_path / "photos").iterdir()) == []


def test_a_changed_photo_at_the_same_url_is_fetched_again(tmp_path: Path, site: str) -> None:
    from catdog_lib.infer.own_photo import fetch_photo

    url = f"{site}/{'고양이' * 30}.jpg"  # a name too long to store as it is
    PhotoSite.photo = jpeg_bytes((250, 0, 0))
    first = fetch_photo(url, tmp_path / "photos")
    PhotoSite.photo = jpeg_bytes((0, 0, 250))
    second = fetch_photo(url, tmp_path / "photos")
    assert first != second and second.read_bytes() == PhotoSite.photo and first.read_bytes() != PhotoSite.photo
    assert second.name.endswith(".jpg") and len(os.fsencode(second.name)) <= 255
    assert sorted((tmp_path / "photos").iterdir()) == sorted([first, second])  # no temporary file left


def test_an_ssl_failure_says_ssl_and_only_a_refused_connection_says_offline(tmp_path: Path, site: str) -> None:
    from catdog_lib.infer.own_photo import fetch_photo

    with pytest.raises(CatdogError) as ssl_failure:  # TLS to a plain HTTP server: a real SSL error
        fetch_photo(site.replace("http:", "https:") + "/cat.jpg", tmp_path)
    assert "SSL error" in str(ssl_failure.value) and "offline" not in str(ssl_failure.value)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(CatdogError, match="looks offline or the server is unreachable"):
        fetch_photo(f"http://127.0.0.1:{port}/cat.jpg", tmp_path)


# --- 8. zip bombs -------------------------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    from catdog_lib.data.archives import extract_zip

    bomb = tmp_path / "photos.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("cats/cat.1.jpg", jpeg_bytes((200, 100, 50)))
        archive.writestr("cats/cat.2.jpg", bytes(64 << 20))  # 64 MiB of zeros: ~64 KB compressed
    assert bomb.stat().st_size < 200_000
    with pytest.raises(CatdogError, match=r"cat\.2\.jpg.*unpacks to 67,108,864 bytes from .* over 100:1"):
        extract_zip(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == [bomb]


def test_a_zip_unpacking_to_more_than_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from catdog_lib import archives

    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for i in range(3):
            bundle.writestr(f"cats/cat.{i}.jpg", os.urandom(400_000))
    monkeypatch.setattr(archives, "MAX_EXTRACTED_BYTES", 1 << 20)
    with pytest.raises(CatdogError, match="unpacks to 1,200,000 bytes in all, over the"):
        archives.extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    monkeypatch.setattr(archives, "MAX_EXTRACTED_BYTES", 2 << 20)
    assert len(list((archives.extract_zip(archive, tmp_path / "out") / "cats").iterdir())) == 3


# --- 5. a course folder that cannot be written -------------------------------------------------------------


def test_course_with_an_unwritable_course_folder_is_one_line(public_tmp: Path) -> None:
    home = public_tmp / "course"
    home.mkdir(mode=0o555)
    home.chmod(0o555)
    env = public_env(public_tmp, CATDOG_HOME=str(home))
    env.pop("CATDOG_RUNS_DIR", None)
    result = run_catdog("course", "--fast", "--offline", unprivileged=True, env=env, timeout=120)
    assert_clean_error(result, f"cannot write to {home / 'runs'}", "set CATDOG_HOME (or CATDOG_RUNS_DIR)")
    assert result.stderr.count("\n") == 1


def test_student_copy_into_a_read_only_folder_holding_the_same_copy_succeeds(public_tmp: Path) -> None:
    from catdog_lib.classroom.runner import NOTEBOOK_DIR, NOTEBOOKS
    from catdog_lib.classroom.student import write_student_copy

    out = public_tmp / "student"
    assert len(write_student_copy([NOTEBOOK_DIR / name for name in NOTEBOOKS], out)) == 6
    for path in [out, *out.iterdir()]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = {path: path.stat().st_mtime_ns for path in out.iterdir()}
    again = run_catdog("course", "--student", out, unprivileged=True, env=public_env(public_tmp))
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    assert {path: path.stat().st_mtime_ns for path in out.iterdir()} == before


# --- 9. smaller things ---------------------------------------------------------------------------------------


def test_an_unwritable_feature_cache_is_warned_about_once(tmp_path: Path) -> None:
    import torch

    from catdog_lib.model.features import FeatureCache

    (tmp_path / "file").write_text("a file where the cache folder would be")  # unwritable even for root
    cache = FeatureCache(tmp_path / "file" / "cache", "backbone", "pytorch:fp32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for i in range(25):
            FeatureCache(tmp_path / "file" / "cache", "backbone", "pytorch:fp32").add({f"{i}": torch.ones(3) * i})
        cache.add({"again": torch.zeros(3)})
    assert [str(w.message).split(" (")[0] for w in caught] == ["feature cache not written"]


IN_A_NOTEBOOK = r"""
import sys
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output
shell = InteractiveShell.instance(colors="nocolor")
shell.run_cell("from catdog_lib import notebook\nnotebook.setup()")
with capture_output() as captured:
    shell.run_cell(f"from catdog_lib.web import fetch\nfetch({sys.argv[1]!r}, {sys.argv[2]!r}, progress=False)")
print(captured.stdout + captured.stderr)
"""


def test_a_notebook_is_told_to_run_the_cell_again_not_a_command(tmp_path: Path, site: str) -> None:
    from conftest import run_python

    result = run_python(IN_A_NOTEBOOK, site + "/short", tmp_path / "data.zip")
    assert "the download stopped at 10 of 62,914,560 bytes. Run the same cell again to resume" in result.stdout, \
        result.stdout + result.stderr
    assert "command" not in result.stdout and "Traceback" not in result.stdout


# --- 6. the web demo -----------------------------------------------------------------------------------------


def test_the_demo_says_who_can_reach_it_and_which_url_to_open() -> None:
    from catdog_lib.infer.demo import addresses

    assert addresses("127.0.0.1", 7860) == (["http://127.0.0.1:7860"], None)
    urls, warning = addresses("0.0.0.0", 8000)
    assert urls == ["http://127.0.0.1:8000", f"http://{socket.gethostname()}:8000"]
    assert warning.startswith("--host 0.0.0.0 serves the demo to every machine that can reach this one")
    assert "http://0.0.0.0" not in " ".join(urls)


def multipart_upload(url: str, name: str, content: bytes) -> list[str]:
    """POST one file to Gradio's upload route; the server-side paths it answers with."""
    import urllib.request

    boundary = "catdogboundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}/gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_the_demo_on_all_addresses_warns_and_keeps_uploads_private_and_removes_them(tmp_path: Path) -> None:
    pytest.importorskip("gradio", reason="Gradio (the demo extra) is not installed; `make test-browser` installs it")
    import signal
    import time

    from conftest import catdog_command, ctrl_c_reaches, free_port

    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"])
    port = free_port()
    chosen = tmp_path / "gradio-temp"
    chosen.mkdir()
    out, err = tmp_path / "demo.out", tmp_path / "demo.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        server = subprocess.Popen([*catdog_command(), "demo", "--checkpoint", checkpoint, "--host", "0.0.0.0",
                                   "--port", str(port)], stdout=stdout, stderr=stderr,
                                  env=subprocess_env(GRADIO_TEMP_DIR=str(chosen)), **ctrl_c_reaches())
    try:
        deadline = time.monotonic() + 240
        while "open http" not in out.read_text():
            assert server.poll() is None and time.monotonic() < deadline, err.read_text()
            time.sleep(0.5)
        assert f"open http://127.0.0.1:{port} or http://{socket.gethostname()}:{port} in" in out.read_text()
        assert "warning: --host 0.0.0.0 serves the demo to every machine" in err.read_text()
        [private] = chosen.iterdir()
        assert private.name.startswith("catdog-demo-") and private.stat().st_mode & 0o077 == 0
        [uploaded] = multipart_upload(f"http://127.0.0.1:{port}", "cat.jpg", jpeg_bytes((200, 100, 50)))
        assert Path(uploaded).is_relative_to(private) and Path(uploaded).is_file()
    finally:
        server.send_signal(signal.SIGINT)
        status = server.wait(timeout=60)
    assert status == 0, err.read_text()
    assert list(chosen.iterdir()) == []  # uploads removed at exit
    assert "unclosed" not in err.read_text() and "Traceback" not in err.read_text(), err.read_text()


def test_every_test_run_names_the_pillow_it_decodes_with() -> None:
    import PIL

    from conftest import pytest_report_header

    header = pytest_report_header(None)
    assert header.startswith(f"Pillow {PIL.__version__}")
    try:
        import gradio
    except ImportError:
        assert "Gradio" not in header
    else:
        assert f"Gradio {gradio.__version__} installed: it pins pillow<13" in header
