"""`catdog course` on a machine without photos: it downloads the default no-account source (here from a
loopback server) and runs on a course-sized subset, or falls back loudly to synthetic data when offline."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import catdog_lib.data.download as download
from catdog_lib import course, runner
from test_course import write_notebook
from test_download import Server, _petimages_zip, server  # noqa: F401  (server is a fixture)

SHOW_DATA = "import os\nprint(os.environ['CATDOG_DATA_DIR'])"


@pytest.fixture
def fresh_folder(tmp_path: Path, monkeypatch) -> Path:
    """An empty course folder and no data of one's own, as after a fresh clone."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("CATDOG_HOME", str(home))
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)
    monkeypatch.setattr(course, "SYNTHETIC_ROOT", home / "data" / "synthetic-cats-vs-dogs")
    return home


def _default_source_at(monkeypatch, url: str) -> None:
    monkeypatch.setitem(download.SOURCES, download.DEFAULT_SOURCE,
                        dataclasses.replace(download.SOURCES[download.DEFAULT_SOURCE], url=url))


@pytest.mark.parametrize("all_photos", [False, True])
def test_fresh_machine_downloads_then_runs_on_real_photos(fresh_folder: Path, server: Server, tmp_path: Path,
                                                          monkeypatch, capsys, all_photos: bool):
    _petimages_zip(server.root / "pets.zip")
    _default_source_at(monkeypatch, f"{server.url}/pets.zip")
    shows = write_notebook(tmp_path, "a.ipynb", SHOW_DATA)

    code = runner.run_course(fast=True, out=tmp_path / "out", notebooks=[shows], course_run=tmp_path / "run",
                             fetch_data=True, all_photos=all_photos)

    summary = capsys.readouterr().out
    assert code == 0, summary
    expected = fresh_folder / "data" / ("petimages" if all_photos else "cat-and-dog")
    assert f"data: {expected} (real photos)" in summary
    import nbformat

    seen = nbformat.read(tmp_path / "out" / "a.ipynb", as_version=4).cells[1].outputs[0]["text"].strip()
    assert seen == str(expected)  # the notebooks' kernels use the downloaded photos
    assert {path for path, _ in server.requests} == {"/pets.zip"}  # ranges of it (course-sized), or all of it


def test_offline_fresh_machine_falls_back_loudly_to_synthetic(fresh_folder: Path, tmp_path: Path, monkeypatch,
                                                              capsys):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _default_source_at(monkeypatch, f"http://127.0.0.1:{port}/pets.zip")  # nothing listens: refused at once
    shows = write_notebook(tmp_path, "a.ipynb", "print('ran')")

    code = runner.run_course(fast=True, out=tmp_path / "out", notebooks=[shows], course_run=tmp_path / "run",
                             fetch_data=True)

    out = capsys.readouterr().out
    assert code == 0
    assert "Could not get real photos" in out and "SYNTHETIC" in out and "catdog data download" in out
    assert out.rstrip().splitlines()[-1].startswith("total ")  # the summary is the last thing printed
