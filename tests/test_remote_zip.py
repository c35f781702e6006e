"""The course-sized download (catdog_lib/data/remote_zip.py) against two loopback servers: one that answers range
requests and one that ignores them (the whole zip is then downloaded). Both give the same photos."""

from __future__ import annotations

import io
import re
import socket
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from catdog_lib import petimages
from catdog_lib.data.download import get_course_data
from catdog_lib.errors import CatdogError


@dataclass
class Server:
    """Serves ``body`` at /pets.zip; records each request's Range header and the bytes sent."""

    ranges: bool
    body: bytes = b""
    url: str = ""
    requests: list[str | None] = field(default_factory=list)
    sent: int = 0


def _handler(state: Server) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            wanted = self.headers.get("Range")
            state.requests.append(wanted)
            body, size = state.body, len(state.body)
            start, end = 0, size - 1
            match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted or "")
            if state.ranges and match:
                first, last = match.groups()
                start, end = (size - int(last), size - 1) if not first else (int(first), min(size - 1, int(last or end)))
                start = max(start, 0)
            self.send_response(206 if state.ranges and match else 200)
            if state.ranges and match:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(end - start + 1))
            self.end_headers()
            self.wfile.write(body[start:end + 1])
            state.sent += end - start + 1

    return Handler


@contextmanager
def serving(state: Server) -> Iterator[Server]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/pets.zip"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(params=[True, False], ids=["ranges", "no-ranges"])
def server(request) -> Iterator[Server]:
    with serving(Server(ranges=request.param)) as state:
        yield state


def _jpeg(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buffer, "JPEG")
    return buffer.getvalue()


def petimages_zip(padding: int = 0) -> bytes:
    """A small PetImages zip: 14 photos per class, an empty one and a truncated one among the first,
    Thumbs.db, and (``padding``) photos the course does not use, as in the real 787 MB zip."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as bundle:
        for index in range(1, 15):
            bundle.writestr(f"PetImages/Cat/{index}.jpg", _jpeg((200, 100, 15 * index)))
            bundle.writestr(f"PetImages/Dog/{index}.jpg", _jpeg((15 * index, 100, 200)))
        bundle.writestr("PetImages/Cat/3.jpg.bak", b"x")  # not a photo by its name
        bundle.writestr("PetImages/Cat/0.jpg", b"")  # empty
        bundle.writestr("PetImages/Dog/2a.jpg", _jpeg((1, 2, 3))[:200])  # truncated, among the first
        bundle.writestr("PetImages/Cat/Thumbs.db", b"\xd0\xcf\x11\xe0 not an image")
        for index in range(100, 100 + padding):
            bundle.writestr(f"PetImages/Dog/{index}.jpg", bytes(range(256)) * 40)
    return buffer.getvalue()


def _photos(root: Path) -> set[str]:
    return {path.relative_to(root).as_posix() for path in root.rglob("*.jpg")}


@pytest.fixture
def course_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(petimages, "COURSE_TRAIN_PER_CLASS", 5)
    monkeypatch.setattr(petimages, "COURSE_TEST_PER_CLASS", 2)
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "course"))
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)
    return tmp_path / "course"


EXPECTED = {  # every 5th usable photo in natural order is a test photo; 0.jpg empty, 2a.jpg truncated
    *(f"training_set/cats/{i}.jpg" for i in (1, 2, 3, 4, 6)), *(f"test_set/cats/{i}.jpg" for i in (5, 10)),
    *(f"training_set/dogs/{i}.jpg" for i in (1, 2, 3, 4, 6)), *(f"test_set/dogs/{i}.jpg" for i in (5, 10)),
}


def test_the_course_photos_come_by_ranges_or_from_the_whole_zip(server: Server, course_home: Path, capsys) -> None:
    server.body = petimages_zip(padding=40)

    root = get_course_data(url=server.url, progress=False)

    assert root == course_home / "data" / "cat-and-dog"
    assert _photos(root) == EXPECTED
    assert (root / "test_set" / "dogs" / "5.jpg").read_bytes() == _jpeg((75, 100, 200))
    out = capsys.readouterr().out
    if server.ranges:   # only the directory and the chosen photos: no request for the whole file
        assert None not in server.requests and server.sent < len(server.body) / 2
        assert not (course_home / "data" / "petimages").exists()
        assert "Skipped 1 unusable photo(s): PetImages/Dog/2a.jpg" in out
    else:
        assert "the server sends only whole files; downloading the whole zip" in out
        assert (course_home / "data" / "petimages" / ".catdog-complete-petimages").is_file()
    requests = len(server.requests)
    assert get_course_data(url=server.url, progress=False) == root
    assert len(server.requests) == requests   # asking again downloads nothing


def test_a_member_damaged_in_transfer_fails_its_crc(course_home: Path) -> None:
    body = bytearray(petimages_zip())
    info = zipfile.ZipFile(io.BytesIO(bytes(body))).getinfo("PetImages/Cat/4.jpg")
    data_at = info.header_offset + 30 + len(info.filename) + len(info.extra)
    body[data_at + 100] ^= 0xFF   # one byte of the photo changes; its CRC-32 in the directory does not
    with serving(Server(ranges=True, body=bytes(body))) as state, pytest.raises(CatdogError) as raised:
        get_course_data(url=state.url, progress=False)
    message = str(raised.value)
    assert "PetImages/Cat/4.jpg arrived damaged" in message and "CRC-32" in message and "\n" not in message
    root = course_home / "data" / "cat-and-dog"
    assert not root.exists() or not _photos(root)   # nothing half-done is left as the course's data


def test_a_server_that_cannot_be_reached_names_every_way_to_get_the_photos(course_home: Path) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    with pytest.raises(CatdogError) as raised:
        get_course_data(url=f"http://127.0.0.1:{port}/pets.zip", progress=False)
    message = str(raised.value)
    assert "looks offline or the server is unreachable" in message
    assert "--source kaggle" in message and "CATDOG_DATA_DIR" in message  # download's list, added by download
