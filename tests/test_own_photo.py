"""A student's own photo (notebook 05): uploads, paths and URLs end in a checked image or one clear line."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from catdog_lib import gradcam, own_photo
from catdog_lib.errors import CatdogError
from catdog_lib.infer.evaluation import load_model
from conftest import make_checkpoint, make_image


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server over a folder holding a photo and an HTML page posing as one."""
    site = tmp_path / "site"
    make_image(site / "cat.png", size=(40, 30))
    (site / "cat.jpg").write_text("<!DOCTYPE html><html><body>Please sign in</body></html>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_an_uploaded_photo_is_kept_and_a_non_image_refused_in_one_line(tmp_path):
    photo = make_image(tmp_path / "source.jpg", size=(30, 20))
    saved = own_photo.save_upload("../my cat.jpg", photo.read_bytes(), tmp_path / "uploads")
    assert saved == tmp_path / "uploads" / "my cat.jpg" and saved.read_bytes() == photo.read_bytes()

    with pytest.raises(CatdogError) as error:
        own_photo.save_upload("notes.txt", b"milk, eggs, cat food", tmp_path / "uploads")
    message = str(error.value)
    assert message.startswith("notes.txt: not an image") and "\n" not in message
    assert not (tmp_path / "uploads" / "notes.txt").exists()


def test_a_photo_from_a_url_or_a_path(server, tmp_path):
    downloaded = own_photo.fetch_photo(f"{server}/cat.png", tmp_path / "uploads")
    assert downloaded.parent == tmp_path / "uploads" and downloaded.name.endswith("cat.png")
    assert own_photo.fetch_photo(str(downloaded), tmp_path / "elsewhere") == downloaded

    with pytest.raises(CatdogError, match=r"cat\.jpg: not an image") as error:
        own_photo.fetch_photo(f"{server}/cat.jpg", tmp_path / "uploads")
    assert "\n" not in str(error.value) and not list((tmp_path / "uploads").glob("*cat.jpg"))
    with pytest.raises(CatdogError, match="cannot download the photo.*404") as error:
        own_photo.fetch_photo(f"{server}/missing.jpg", tmp_path / "uploads")
    assert "\n" not in str(error.value)
    with pytest.raises(CatdogError, match="no such file"):
        own_photo.fetch_photo(str(tmp_path / "nowhere.jpg"), tmp_path / "uploads")


def test_probabilities_and_the_report_figure(tmp_path, one_thread):
    torch.manual_seed(0)
    loaded = load_model(make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], image_size=64), "cpu")
    photo = make_image(tmp_path / "photo.png", size=(80, 50))
    probabilities = own_photo.class_probabilities(loaded, photo)
    assert list(probabilities) == ["cats", "dogs"] and sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
    cam = gradcam.explain(loaded, [photo])[0]
    assert loaded.classes[cam.class_index] == max(probabilities, key=probabilities.get)
    figure = own_photo.plot_photo_report(cam, probabilities)
    photo_ax, bars, overlay = figure.axes
    assert [bar.get_width() for bar in bars.patches] == pytest.approx(list(probabilities.values()))
    assert overlay.images[0].get_array().shape == (64, 64, 3)
