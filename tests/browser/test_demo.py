"""`catdog demo` in a real browser: Playwright drives Debian's chromium against the demo on 127.0.0.1.

Needs /usr/bin/chromium, the playwright package and Gradio (the `demo` extra); `make test-browser`
installs the Python packages. Real photos come from CATDOG_DATA_DIR.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import catdog_command, ctrl_c_reaches, free_port, subprocess_env
from trained import real_photos, train_on_real_photos

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed; `make test-browser` installs it")
pytest.importorskip("gradio", reason="Gradio (the demo extra) is not installed; `make test-browser` installs it")

START_TIMEOUT = 300  # seconds for the demo to load its model and listen, on two busy cores
ANSWER_TIMEOUT = 120_000  # milliseconds for one upload's prediction and Grad-CAM


@pytest.fixture(scope="module")
def data_root() -> Path:
    root = os.environ.get("CATDOG_DATA_DIR")
    if not root or not (Path(root) / "training_set").is_dir():
        pytest.skip("real photos not present: set CATDOG_DATA_DIR to the cat-and-dog subset")
    return Path(root)


@pytest.fixture(scope="module")
def demo_url(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`catdog demo` started as a user would, on a checkpoint trained on real photos; stopped with Ctrl-C."""
    base = tmp_path_factory.mktemp("demo")
    checkpoint = train_on_real_photos(data_root, base)
    log, errors = base / "demo.out", base / "demo.err"
    with open(log, "w") as out, open(errors, "w") as err:
        server = subprocess.Popen([*catdog_command(), "demo", "--checkpoint", str(checkpoint), "--port",
                                   str(free_port())], stdout=out, stderr=err,
                                  env=subprocess_env(GRADIO_TEMP_DIR=str(base / "uploads")), **ctrl_c_reaches())
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "open http" not in log.read_text():
            assert server.poll() is None, f"the demo exited: {errors.read_text()}"
            assert time.monotonic() < deadline, f"the demo did not start: {errors.read_text()}"
            time.sleep(0.5)
        url = log.read_text().split("open ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")  # this machine only, by default
        yield url
    finally:
        server.send_signal(signal.SIGINT)
        try:
            assert server.wait(timeout=60) == 0, errors.read_text()
        finally:
            server.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def upload(browser, url: str, path: Path):
    """Open the demo, upload ``path`` as a user would, and wait for the answer to name the file."""
    page = browser.new_page()
    page.goto(url)
    page.locator("#photo input[type=file]").set_input_files(path)
    page.wait_for_function("name => document.querySelector('#message textarea').value.startsWith(name + ':')",
                           arg=path.name, timeout=ANSWER_TIMEOUT)
    return page


@pytest.mark.parametrize("name", ["cats", "dogs"])
def test_a_real_photo_shows_its_label_probabilities_and_gradcam(demo_url, browser, data_root, name):
    [photo] = real_photos(data_root, "test_set", name, 1)
    page = upload(browser, demo_url, photo)
    assert page.locator("#prediction [data-testid=label-output-value]").inner_text() == name
    shown = {other: page.locator(f"#prediction [data-testid={other}-confidence-set] dd").inner_text()
             for other in ("cats", "dogs")}
    assert all(value.endswith("%") for value in shown.values())
    assert int(shown[name].rstrip("%")) > 50
    assert f": {name} (" in page.locator("#message textarea").input_value()
    overlay = page.locator("#gradcam img")
    overlay.wait_for(state="visible")
    assert overlay.evaluate("img => img.complete && img.naturalWidth") == 224  # the network's view, heatmap over it
    page.close()


def test_a_file_that_is_not_an_image_gets_a_clear_message(demo_url, browser, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my shopping list, not a photo\n")
    page = upload(browser, demo_url, notes)
    message = page.locator("#message textarea").input_value()
    assert "not an image" in message and "Upload a photo" in message
    assert page.locator("#prediction [data-testid=label-output-value]").count() == 0
    page.close()


def test_a_port_in_use_is_one_clear_error(tmp_path):
    from catdog_lib.infer.demo import serve
    from catdog_lib.errors import CatdogError

    from conftest import make_checkpoint

    checkpoint = make_checkpoint(tmp_path / "best.pt", ["cats", "dogs"], image_size=64)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CatdogError, match=f"cannot serve on 127.0.0.1:{port}.*another --port"):
            serve(checkpoint, port=port, device="cpu")
