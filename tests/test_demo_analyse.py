"""The demo page's work without a browser or Gradio: `analyse`, and the message when Gradio is missing."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from conftest import make_checkpoint, make_image

from catdog_lib.infer.demo import analyse
from catdog_lib.infer.evaluation import load_model


@pytest.fixture
def loaded(tmp_path, one_thread):
    return load_model(make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], image_size=64), "cpu")


def test_a_photo_gets_probabilities_a_label_and_a_gradcam_overlay(loaded, tmp_path):
    photo = make_image(tmp_path / "my cat.png", size=(50, 40))
    answer = analyse(loaded, str(photo))
    assert list(answer.probabilities) == ["cats", "dogs"]
    assert sum(answer.probabilities.values()) == pytest.approx(1, abs=1e-4)
    label = max(answer.probabilities, key=answer.probabilities.get)
    assert answer.message.startswith(f"my cat.png: {label} (")
    assert answer.overlay.shape == (64, 64, 3) and answer.overlay.dtype == np.uint8


@pytest.mark.parametrize("content, words", [
    (b"my shopping list, not a photo\n", "not an image"),
    (b"", "empty file"),
])
def test_a_file_that_is_not_a_photo_gets_one_clear_message(loaded, tmp_path, content, words):
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(content)
    answer = analyse(loaded, str(upload))
    assert answer.probabilities is None and answer.overlay is None
    assert answer.message.startswith("upload.jpg: ") and words in answer.message and "Upload a photo" in answer.message


def test_nothing_uploaded_asks_for_a_photo(loaded):
    assert analyse(loaded, None).message.startswith("Drop a photo")


def test_demo_without_gradio_is_one_clear_line(tmp_path, monkeypatch, capsys):
    from catdog_lib.cli import main

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the demo extra were not installed
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], image_size=64)
    assert main(["demo", "--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("catdog: error: the web demo needs Gradio") and "pip install 'gradio>=6'" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
