"""Notebook 05's upload control: a photo of the student's own, from Colab's file chooser or a Jupyter widget.

Uploaded and downloaded photos go into a temporary folder that is removed when the kernel exits.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import CatdogError
from .own_photo import save_upload

_FOLDERS: list[tempfile.TemporaryDirectory] = []  # kept alive until Python exits, which removes them


def uploads_folder(prefix: str = "catdog-05-") -> Path:
    """A new temporary folder for photos, removed (with what is in it) when Python exits."""
    folder = tempfile.TemporaryDirectory(prefix=prefix)  # its finalizer runs at exit
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
