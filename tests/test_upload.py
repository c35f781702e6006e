"""Notebook 05's upload plumbing: photos shown, other files refused in one line, the folder gone at exit."""

from __future__ import annotations

import subprocess
import sys
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
