"""`catdog demo`: a local web page where you drop a photo and see the label, the probabilities and Grad-CAM.

The page is made with Gradio, the course's optional ``demo`` extra (``pip install 'gradio>=6'``); nothing else in the
course needs it. :func:`analyse` is the page's work without the page, so it runs without Gradio too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from ..errors import CatdogError
from .evaluation import LoadedModel, load_model, predict
from .gradcam import explain
from .upload import remove_orphans

MISSING_GRADIO = ("the web demo needs Gradio, the course's optional demo extra: pip install 'gradio>=6' "
                  "(in the course folder: .venv/bin/pip install -e '.[demo]').")
MAX_UPLOAD = "50mb"
PREFIX = "catdog-demo-"  # the private uploads folder: catdog-demo-<pid>-<random>


@dataclass(frozen=True)
class Answer:
    """What the page shows for one upload: every class's probability, the Grad-CAM overlay, one line of text."""

    probabilities: dict[str, float] | None
    overlay: np.ndarray | None
    message: str


def analyse(loaded: LoadedModel, path: str | Path | None) -> Answer:
    """Predict one uploaded file and explain the prediction; a file that is not a usable image gets a message."""
    if not path:
        return Answer(None, None, "Drop a photo of a cat or a dog above.")
    name = Path(path).name
    [row] = predict(loaded, [path], progress=False)
    if row.error:
        return Answer(None, None, f"{name}: {row.error}. Upload a photo (JPEG, PNG, WebP, ...).")
    [cam] = explain(loaded, [path])
    return Answer(row.probabilities, cam.overlay(),
                  f"{name}: {row.label} ({row.probability:.1%}). Red in the overlay: where the network looked.")


def _gradio() -> ModuleType:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no usage reports, no version checks
    try:
        import gradio
    except ImportError:
        raise CatdogError(MISSING_GRADIO) from None
    return gradio


def build_app(loaded: LoadedModel):
    """The Gradio page (a ``gradio.Blocks``) for a loaded model; ``.launch()`` serves it."""
    gr = _gradio()

    def on_upload(path: str | None) -> tuple[dict[str, float] | None, np.ndarray | None, str]:
        answer = analyse(loaded, path)
        return answer.probabilities, answer.overlay, answer.message

    with gr.Blocks(title="catdog: cat or dog?", analytics_enabled=False) as app:
        gr.Markdown(f"# Cat or dog?\nDrop a photo: the {loaded.meta['arch']} model trained in the course says "
                    f"which of {', '.join(loaded.classes)} it shows, how sure it is, and where it looked (Grad-CAM).")
        with gr.Row():
            with gr.Column():
                photo = gr.File(label="Photo", type="filepath", elem_id="photo")
                message = gr.Textbox(label="Result", value=analyse(loaded, None).message, interactive=False,
                                     elem_id="message")
            with gr.Column():
                label = gr.Label(label="Prediction", num_top_classes=len(loaded.classes), elem_id="prediction")
                overlay = gr.Image(label="Grad-CAM overlay", type="numpy", interactive=False, elem_id="gradcam",
                                   buttons=["download", "fullscreen"])
        photo.change(on_upload, inputs=photo, outputs=[label, overlay, message])
    return app


LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def addresses(host: str, port: int) -> tuple[list[str], str | None]:
    """The URLs to open for ``host`` (0.0.0.0 is no address to open), and a warning when others can reach it."""
    if host in LOCAL_HOSTS or host.startswith("127."):
        return [f"http://{host}:{port}"], None
    urls = [f"http://127.0.0.1:{port}", f"http://{socket.gethostname()}:{port}"] if host in {"0.0.0.0", "::", ""} \
        else [f"http://{host}:{port}"]
    return urls, (f"--host {host} serves the demo to every machine that can reach this one: anyone on the "
                  "network can upload photos to it and see the answers. Use the default --host 127.0.0.1 to keep "
                  "it on this machine.")


def _stop(signum: int, frame: object) -> None:
    """A stop signal (SIGTERM, SIGHUP: the terminal was closed) ends the demo as Ctrl-C does: cleanups run."""
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _stopped_cleanly() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP (where there is one: not on Windows) raise SystemExit instead of
    killing the process, so ``finally`` blocks run; the previous handlers come back afterwards."""
    stops = [s for s in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        stops = []
    saved = {stop: signal.signal(stop, _stop) for stop in stops}
    try:
        yield
    finally:
        for stop, handler in saved.items():
            signal.signal(stop, handler)


@contextlib.contextmanager
def private_uploads() -> Iterator[Path]:
    """A temporary folder only this user can read, for Gradio's uploads and images (``GRADIO_TEMP_DIR``);
    removed afterwards, on Ctrl-C, SIGTERM and SIGHUP too, and once more at exit (Gradio may write into it,
    e.g. ``vibe_edit_history``, after the demo stops). Gradio's default, ``/tmp/gradio``, keeps them and serves
    them. Its name holds the process id: the next demo removes those of demos killed outright (SIGKILL)."""
    saved = os.environ.get("GRADIO_TEMP_DIR")
    if saved:  # a chosen folder Gradio would have created
        Path(saved).mkdir(parents=True, exist_ok=True)
    remove_orphans(PREFIX, saved)
    # mode 0o700, in a chosen GRADIO_TEMP_DIR too
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=saved))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)  # registered before Gradio's: runs after them
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        with _stopped_cleanly():
            yield folder
    finally:
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved
        shutil.rmtree(folder, ignore_errors=True)


def serve(checkpoint: str | Path, host: str = "127.0.0.1", port: int = 7860, device: str = "auto") -> None:
    """Serve the demo page for ``checkpoint`` at http://HOST:PORT until Ctrl-C."""
    urls, warning = addresses(host, port)
    with private_uploads(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the web stack's own deprecation and resource warnings (unclosed loops)
        _gradio()  # say that the extra is missing before loading anything
        app = build_app(load_model(checkpoint, device))
        try:
            app.launch(server_name=host, server_port=port, share=False, quiet=True, prevent_thread_lock=True,
                       max_file_size=MAX_UPLOAD, footer_links=[])
        except OSError as error:
            raise CatdogError(f"cannot serve on {host}:{port} ({str(error).split('. ')[0]}); "
                              "pick another --port.") from None
        if warning:
            print(f"catdog demo: warning: {warning}", file=sys.stderr, flush=True)
        print(f"catdog demo: open {' or '.join(urls)} in a browser (Ctrl-C stops it)", flush=True)
        try:
            app.block_thread()
        finally:
            app.close()
