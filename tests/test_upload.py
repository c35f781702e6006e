"""Notebook 05's upload plumbing: photos shown, other files refused in one line, the folder gone at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from catdog_lib import upload


def test_a_photo_is_saved_and_shown_and_a_text_file_gets_one_line(tmp_path, capsys):
    shown = []
    photo = tmp_path / "cat.png"
    Image.new("RGB", (40, 30), (200, 120, 40)).save(photo)
    upload.show_upload(shown.append, "my cat.png", photo.read_bytes(), tmp_path / "uploads")
    assert len(shown) == 1 and shown[0].parent == tmp_path / "uploads" and shown[0].read_bytes() == photo.read_bytes()
    upload.show_upload(shown.append, "shopping-list.jpg", b"milk, eggs, cat food", tmp_path / "uploads")
    assert len(shown) == 1
    message = capsys.readouterr().out
    assert message.count("\n") == 1 and "shopping-list.jpg: not an image" in message


def test_the_uploads_folder_is_removed_when_python_exits(tmp_path):
    """What notebook 05's kernel does: make the folder, put a photo in it, exit."""
    code = ("from catdog_lib import upload; folder = upload.uploads_folder(); "
            "(folder / 'photo.jpg').write_bytes(b'x'); print(folder)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(upload.__file__).parents[1]), "TMPDIR": str(tmp_path)})
    folder = Path(out.stdout.strip())
    assert folder.parent == tmp_path and folder.name.startswith("catdog-05-")
    assert not folder.exists() and not list(tmp_path.glob("catdog-05-*"))


def test_folders_of_killed_kernels_go_with_the_next_one(tmp_path, monkeypatch):
    """A kernel killed outright runs no exit handler (nbval stops kernels so): its folder stays until the
    next uploads folder is made, which removes it but never a running process's folder."""
    code = ("import os; from catdog_lib import upload; folder = upload.uploads_folder(); "
            "(folder / 'photo.jpg').write_bytes(b'x'); print(folder, flush=True); os._exit(0)")  # no exit handlers
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(Path(upload.__file__).parents[1]), "TMPDIR": str(tmp_path)})
    orphan = Path(out.stdout.strip())
    assert (orphan / "photo.jpg").is_file()  # left behind
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    alive = tmp_path / f"catdog-05-{os.getpid()}-other"  # another folder of a process that still runs
    alive.mkdir()
    mine = upload.uploads_folder()
    assert not orphan.exists() and alive.is_dir() and mine.is_dir()
    assert mine.name.startswith(f"catdog-05-{os.getpid()}-")
