"""catdog_lib/files.py's hasher: regular files only, in chunks, and the only one in catdog_lib. (Its atomic writes and
partial downloads are tested in tests/test_reliability4b.py.)"""

from __future__ import annotations

import ast
import hashlib
import os
import threading
from pathlib import Path

import pytest

from catdog_lib import files

LIB = Path(files.__file__).resolve().parent


def test_file_digest_streams_any_algorithm(tmp_path: Path) -> None:
    data = os.urandom(files.HASH_CHUNK * 2 + 123)  # three chunks
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    assert files.file_digest(path) == hashlib.sha1(data).hexdigest()
    assert files.file_digest(path, "sha256", max_bytes=len(data)) == hashlib.sha256(data).hexdigest()


def test_file_digest_refuses_what_is_not_a_regular_file_without_reading_or_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")  # no writer: reading it would block forever
    (tmp_path / "zeros").symlink_to("/dev/zero")  # a device: reading it would never end
    (tmp_path / "folder").mkdir()
    (tmp_path / "big").write_bytes(bytes(1000))
    refused: dict[str, BaseException] = {}

    def hash_all() -> None:
        for name, limit in (("fifo", None), ("zeros", None), ("folder", None), ("big", 999)):
            with pytest.raises(files.RefusedFile) as caught:
                files.file_digest(tmp_path / name, max_bytes=limit)
            refused[name] = caught.value

    thread = threading.Thread(target=hash_all, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "blocked on the FIFO"
    assert all(isinstance(error, OSError) for error in refused.values())  # what callers of open() catch
    assert "a FIFO (named pipe)" in str(refused["fifo"]) and "a device or socket" in str(refused["zeros"])
    assert "a folder" in str(refused["folder"]) and "1,000 bytes, over the limit of 999" in str(refused["big"])


def test_files_file_digest_is_the_only_file_hasher() -> None:
    """Only files.py feeds a hash from a file: ``hashlib.new``, a hasher made empty to be fed chunks,
    ``hashlib.file_digest``, a hash of a file read whole, or hashlib's functions imported by name. Elsewhere
    hashlib hashes bytes already in memory, once: names, cache keys, a feature-cache shard read once to check it
    and load it."""
    found = []
    for path in sorted(LIB.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "hashlib":
                found.append((path.relative_to(LIB).as_posix(), "from hashlib import"))
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "hashlib"):
                continue
            fed = node.func.attr in {"new", "file_digest"} or not node.args
            read_whole = any(isinstance(arg, ast.Call) and isinstance(arg.func, ast.Attribute)
                             and arg.func.attr in {"read", "read_bytes"} for arg in node.args)
            if fed or read_whole:
                found.append((path.relative_to(LIB).as_posix(), f"hashlib.{node.func.attr}"))
    assert found == [("files.py", "hashlib.new")]
