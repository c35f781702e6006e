"""Reliability, round 3 (issue 22): bombs, tampered model files, hangs and odd names on the new surfaces.

Every hostile input is built for real and small: a progressive JPEG whose header claims 40000x40000
pixels, checkpoints and ONNX files with tampered metadata, a FIFO named like a photo, file names that
are not UTF-8 or hold tabs, a zip bomb, an oversized photo behind a loopback HTTP server. Memory is
measured in a subprocess under a 2 GiB address-space limit, so a regression fails instead of
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
from conftest import REPO, make_dataset, make_image, png_claiming, run_catdog, subprocess_env

GIB = 1 << 30


def run_bounded(code: str, *args: str | Path, limit: int = 2 * GIB, timeout: float = 60) -> tuple[str, int]:
    """Run a Python snippet with at most ``limit`` bytes of address space; (its output, its peak RSS in bytes)."""
    bounded = ("import resource, sys\nresource.setrlimit(resource.RLIMIT_AS, (%d, %d))\n" % (limit, limit)
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
