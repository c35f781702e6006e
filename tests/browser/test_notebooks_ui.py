"""The course notebooks as a student runs them: JupyterLab from this environment on 127.0.0.1, driven
through its UI by Playwright in Debian's Chromium ("Run All Cells", save, reopen).

Each notebook must run to the end with no error output and no traceback text, its progress bars must
render as widgets (never "Error displaying widget"), none may end red (tqdm's failure colour), and
after saving and reopening, the saved bars must still show. A screenshot per notebook goes to
runs/browser/. CATDOG_BROWSER_NOTEBOOKS=04 runs only the notebooks named (CI: all six take about
8 minutes on two busy cores), the others are skipped saying so.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from catdog_lib.config import NOTEBOOK_NAMES

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "catdog-browser-test"
RUN_ALL_TIMEOUT_S = 1800
CHOSEN = [part.strip() for part in os.environ.get("CATDOG_BROWSER_NOTEBOOKS", "").split(",") if part.strip()]

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (the browser extra)")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is missing: apt-get install chromium", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[str]:
    """JupyterLab on a copy of the notebooks (so runs and saves never touch the repository)."""
    home = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", home / "notebooks")
    port = _free_port()
    env = {**os.environ, "CATDOG_FAST": "1", "CATDOG_HOME": str(home), "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / ".jupyterlab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / ".workspaces")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={home}",
         f"--LabServerApp.app_settings_dir={REPO / 'jupyter'}", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=subprocess.DEVNULL, stderr=open(home / "lab.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and server.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.terminate()
        pytest.fail(f"JupyterLab did not start: {(home / 'lab.log').read_text()[-2000:]}")
    yield url
    server.terminate()
    server.wait(30)


@pytest.fixture(scope="module")
def browser(lab) -> Iterator:
    with playwright_api.sync_playwright() as play:
        chromium = play.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _open(browser, lab: str, name: str):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    # A workspace of its own, reset: only this notebook is open (JupyterLab would restore the others).
    page.goto(f"{lab}/lab/workspaces/{Path(name).stem}/tree/notebooks/{name}?reset&token={TOKEN}")
    page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    accept = page.locator(".jp-Dialog .jp-mod-accept")  # "Select Kernel": the notebook's own, python3
    try:
        accept.wait_for(timeout=10_000)
        accept.click()
    except playwright_api.TimeoutError:
        pass
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(timeout=120_000)
    return page


def _command(page, menu: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).first.click()


def _wait_until_done(page) -> None:
    """Until no cell is queued or running and the kernel is idle, twice in a row."""
    deadline = time.monotonic() + RUN_ALL_TIMEOUT_S
    settled = 0
    while time.monotonic() < deadline:
        busy = page.locator(".jp-InputPrompt", has_text="[*]").count()
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").count()
        settled = settled + 1 if busy == 0 and idle else 0
        if settled >= 2:
            return
        time.sleep(2)
    pytest.fail("Run All Cells did not finish")


def _screenshot(page, path: Path) -> None:
    """The notebook at its first problem, else at its first progress bar, else at its end."""
    for target in (page.get_by_text("Error displaying widget"), page.get_by_text("Traceback"),
                   page.locator(".progress-bar-danger"), page.locator(".jp-OutputArea .widget-hprogress"),
                   page.locator(".jp-Notebook .jp-Cell").last):
        if target.count():
            target.first.scroll_into_view_if_needed()
            break
    page.screenshot(path=str(path))


def _problems(page) -> list[str]:
    text = page.locator(".jp-Notebook").inner_text()
    problems = [word for word in ("Traceback", "Error displaying widget", "model not found") if word in text]
    if page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count():
        problems.append("an error output")
    if page.locator(".progress-bar-danger, .widget-progress .progress-bar-danger").count():
        problems.append("a red (failed) progress bar")
    unrun = [prompt for prompt in page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
             if not re.search(r"\[\d+\]", prompt)]
    if unrun:
        problems.append(f"{len(unrun)} code cell(s) did not run")
    return problems


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_runs_through_the_ui(request, name):
    if CHOSEN and name[:2] not in CHOSEN:
        pytest.skip(f"CATDOG_BROWSER_NOTEBOOKS={','.join(CHOSEN)} runs only those notebooks (time limit)")
    browser, lab = request.getfixturevalue("browser"), request.getfixturevalue("lab")
    shots = REPO / "runs" / "browser"
    shots.mkdir(parents=True, exist_ok=True)
    page = _open(browser, lab, name)
    _command(page, "Run", "Run All Cells")
    _wait_until_done(page)
    _screenshot(page, shots / f"{Path(name).stem}.png")
    assert _problems(page) == []
    bars = page.locator(".jp-OutputArea .widget-progress, .jp-OutputArea .widget-hprogress").count()

    _command(page, "File", "Save Notebook")
    page.wait_for_timeout(1500)
    page.close()
    reopened = _open(browser, lab, name)
    reopened.wait_for_timeout(3000)
    _screenshot(reopened, shots / f"{Path(name).stem}-reopened.png")
    text = reopened.locator(".jp-Notebook").inner_text()
    assert "Error displaying widget" not in text and "Traceback" not in text
    assert reopened.locator(".jp-OutputArea .widget-progress, .jp-OutputArea .widget-hprogress").count() == bars
    _command(reopened, "Kernel", "Shut Down Kernel")  # free its memory before the next notebook
    reopened.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(state="detached",
                                                                                          timeout=30_000)
    reopened.close()
