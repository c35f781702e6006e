"""Notebook 05's upload control: a photo of the student's own, from Colab's file chooser or a Jupyter widget.

Uploaded and downloaded photos go into a temporary folder that is removed when the kernel exits. A
kernel killed outright (a test runner's shutdown, a crash) runs no exit handler, so each new folder's
name holds its process id, and the next uploads folder removes those whose process no longer runs.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import CatdogError
from .own_photo import save_upload

_FOLDERS: list[tempfile.TemporaryDirectory] = []  # kept alive until Python exits, which removes them


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_orphans(prefix: str = "catdog-05-", parent: str | Path | None = None) -> list[Path]:
    """Remove this user's folders ``PREFIX<pid>-*`` in ``parent`` (default: the temporary folder) whose process
    no longer runs; returns them. POSIX only."""
    if not hasattr(os, "getuid"):  # on Windows os.kill would end the process, not ask about it
        return []
    removed = []
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{prefix}*-*"):
        pid = folder.name.removeprefix(prefix).split("-")[0]
        if pid.isdigit() and folder.lstat().st_uid == os.getuid() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def uploads_folder(prefix: str = "catdog-05-") -> Path:
    """A new temporary folder for photos, removed (with what is in it) when Python exits."""
    remove_orphans(prefix)
    folder = tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-")  # its finalizer runs at exit
    _FOLDERS.append(folder)
    return Path(folder.name)


def show_upload(show: Callable[[Path], object], name: str, content: bytes, folder: Path) -> None:
    """Save an uploaded file into ``folder`` and ``show`` it; a file that is not a photo gets one line."""
    try:
        show(save_upload(name, content, folder))
    except CatdogError as error:
        print(error)  # e.g. a text file: one line, no traceback


def upload_control(show: Callable[[Path], object], folder: Path) -> None:
    """On Colab a file chooser under the cell, elsewhere an Upload button; each photo goes to ``show``."""
    if "google.colab" in sys.modules:
        from google.colab import files

        for name, content in files.upload().items():
            show_upload(show, name, content, folder)
        return
    import ipywidgets as widgets
    from IPython.display import display

    button = widgets.FileUpload(accept="image/*", multiple=False, description="Upload")
    output = widgets.Output()

    def on_upload(change: dict) -> None:
        with output:
            output.clear_output()
            for item in change["new"]:
                show_upload(show, item["name"], bytes(item["content"]), folder)

    button.observe(on_upload, names="value")
    display(widgets.VBox([button, output]))
