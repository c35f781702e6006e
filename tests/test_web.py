"""catdog_lib/web.py: the one HTTP path (fetch's size limit, ranges), and no other module opening URLs itself.
fetch's resume, checksums and offline messages are tested with the dataset downloads in tests/test_download.py."""

from __future__ import annotations

import ast
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from catdog_lib import web

LIB = Path(web.__file__).resolve().parent
BODY = bytes(range(256)) * 100  # 25,600 bytes


class Site(http.server.BaseHTTPRequestHandler):
    """/sized: BODY with its Content-Length; /unsized: BODY with none (HTTP/1.0, ends when the connection does);
    both honour ``Range: bytes=A-B`` when ``ranges`` is set."""

    ranges = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        wanted = self.headers.get("Range", "")
        if self.ranges and wanted.startswith("bytes=") and self.path == "/sized":
            first, last = (int(part) for part in wanted.removeprefix("bytes=").split("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(BODY)}")
            self.send_header("Content-Length", str(last - first + 1))
            self.end_headers()
            self.wfile.write(BODY[first:last + 1])
            return
        self.send_response(200)
        if self.path == "/sized":
            self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def site() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("path", ["/sized", "/unsized"])
def test_fetch_stops_past_max_bytes_announced_or_sent_and_keeps_nothing(site: str, tmp_path: Path, path: str) -> None:
    with pytest.raises(web.TooLarge, match="over 10,000 bytes; the download stopped") as caught:
        web.fetch(site + path, tmp_path / "file.bin", progress=False, max_bytes=10_000)
    assert caught.value.problem == "over 10,000 bytes" and list(tmp_path.iterdir()) == []
    assert web.fetch(site + path, tmp_path / "file.bin", progress=False, max_bytes=len(BODY)).read_bytes() == BODY


def test_a_url_that_cannot_be_fetched_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(web.Unreachable, match="not a URL that can be fetched") as caught:
        web.fetch("cat.jpg", tmp_path / "file.bin", progress=False)  # a path where a URL belongs
    assert caught.value.status is None and list(tmp_path.iterdir()) == []


def test_get_range_reads_the_bytes_asked_for_or_says_the_server_ignores_ranges(site: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert web.get_range(f"{site}/sized", 100, 199) == (100, BODY[100:200], len(BODY))
    monkeypatch.setattr(Site, "ranges", False)
    assert web.get_range(f"{site}/sized", 100, 199) is None


def named(tree: ast.AST) -> Iterator[tuple[str, str | None]]:
    """(name, the function it is in) of every name, attribute and imported name in ``tree``."""
    owner: dict[ast.AST, str] = {}
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            owner.update({node: function.name for node in ast.walk(function) if node not in owner})
    for node in ast.walk(tree):
        name = {ast.Attribute: "attr", ast.Name: "id", ast.alias: "name"}.get(type(node))
        if name:
            yield getattr(node, name), owner.get(node)


def test_web_open_url_is_the_only_place_that_opens_a_url() -> None:
    """urllib's and http.client's ways to open a connection appear once in catdog_lib: in web.open_url, which
    fetch and get_range use. (torchvision's and the kaggle client's downloads are their own.)"""
    openers = {"urlopen", "urlretrieve", "build_opener", "HTTPConnection", "HTTPSConnection"}
    found = [(path.relative_to(LIB).as_posix(), function, name) for path in sorted(LIB.rglob("*.py"))
             for name, function in named(ast.parse(path.read_text())) if name in openers]
    assert found == [("web.py", "open_url", "urlopen")]
