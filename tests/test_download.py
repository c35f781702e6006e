"""Dataset downloads against a real loopback HTTP server, with archives built here."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from catdog_lib.data.archives import extract_tar, extract_zip
from catdog_lib.data.download import download_dataset, kaggle_credentials_problem, write_cats_dogs
from catdog_lib.data.layout import find_dataset
from catdog_lib.errors import CatdogError
from catdog_lib.web import Unreachable, fetch

MAX_REQUESTS = 50
SOURCE_HINTS = ("CATDOG_DATA_DIR", "--source kaggle", "--source petimages", "--source oxford-pets")


@dataclass
class Server:
    """A loopback file server; ``requests`` records (path, Range header) per GET."""

    root: Path
    url: str
    honour_range: bool = True
    cut_after: int | None = None  # send only this many bytes of a body, then hang up
    requests: list[tuple[str, str | None]] = field(default_factory=list)


def _handler(server: Server) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(server.root), **kwargs)

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            server.requests.append((self.path, self.headers.get("Range")))
            path = server.root / self.path.lstrip("/")
            if len(server.requests) > MAX_REQUESTS or not path.is_file():
                self.send_error(503 if path.is_file() else 404)
                return
            body = path.read_bytes()
            wanted = self.headers.get("Range")
            start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted and server.honour_range else 0
            if start >= len(body) and start:
                self.send_error(416)
                return
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            self.wfile.write(body[start:][: server.cut_after])

    return Handler


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    root = tmp_path / "served"
    root.mkdir()
    state = Server(root=root, url="")
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL on which nothing listens: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/data.zip"


def _fails_fast(host: str) -> bool:
    """True when connecting to ``host`` fails at once (no DNS, refused), as on an offline machine."""
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except (socket.gaierror, ConnectionRefusedError):
        return True
    except OSError:
        return False
    return False


def _jpeg(color: tuple[int, int, int], size: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, "JPEG")
    return buffer.getvalue()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


# --- fetch ----------------------------------------------------------------------------------------


def test_fetch_resumes_a_part_file_with_a_range_request(server: Server, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 400
    (server.root / "blob.bin").write_bytes(payload)
    target = tmp_path / "dl" / "blob.bin"
    target.parent.mkdir()
    (tmp_path / "dl" / "blob.bin.part").write_bytes(payload[: len(payload) // 2])

    assert fetch(f"{server.url}/blob.bin", target, sha256=_sha256(payload), progress=False) == target

    assert server.requests == [("/blob.bin", f"bytes={len(payload) // 2}-")]
    assert _sha256(target.read_bytes()) == _sha256(payload)
    assert not target.with_suffix(".bin.part").exists()


def test_fetch_restarts_from_zero_when_the_server_ignores_range(server: Server, tmp_path: Path) -> None:
    payload = b"the real file " * 1000
    (server.root / "blob.bin").write_bytes(payload)
    server.honour_range = False
    target = tmp_path / "blob.bin"
    target.with_suffix(".bin.part").write_bytes(b"stale bytes from another file")

    fetch(f"{server.url}/blob.bin", target, sha256=_sha256(payload), progress=False)

    assert server.requests[0][1] is not None  # it asked to resume, and got the whole file instead
    assert target.read_bytes() == payload


def test_an_interrupted_download_keeps_its_part_and_resumes(server: Server, tmp_path: Path) -> None:
    payload = b"x" * 50_000
    (server.root / "blob.bin").write_bytes(payload)
    target = tmp_path / "blob.bin"
    server.cut_after = 20_000

    with pytest.raises(CatdogError, match="again to resume"):
        fetch(f"{server.url}/blob.bin", target, progress=False)
    assert target.with_suffix(".bin.part").stat().st_size == 20_000 and not target.exists()

    server.cut_after = None
    fetch(f"{server.url}/blob.bin", target, sha256=_sha256(payload), progress=False)
    assert server.requests[-1] == ("/blob.bin", "bytes=20000-")
    assert target.read_bytes() == payload


def test_fetch_restarts_when_the_part_is_longer_than_the_file(server: Server, tmp_path: Path) -> None:
    (server.root / "blob.bin").write_bytes(b"short")
    target = tmp_path / "blob.bin"
    target.with_suffix(".bin.part").write_bytes(b"a much longer leftover")

    fetch(f"{server.url}/blob.bin", target, progress=False)

    assert [header for _, header in server.requests] == ["bytes=22-", None]  # 416, then from zero
    assert target.read_bytes() == b"short"


def test_fetch_checksum_mismatch_leaves_no_file(server: Server, tmp_path: Path) -> None:
    (server.root / "blob.bin").write_bytes(b"tampered")
    target = tmp_path / "blob.bin"

    with pytest.raises(CatdogError, match="SHA-256"):
        fetch(f"{server.url}/blob.bin", target, sha256=_sha256(b"original"), progress=False)

    assert list(tmp_path.glob("blob.bin*")) == []


def test_fetch_is_idempotent(server: Server, tmp_path: Path) -> None:
    (server.root / "blob.bin").write_bytes(b"payload")
    target = tmp_path / "blob.bin"
    for _ in range(2):
        fetch(f"{server.url}/blob.bin", target, sha256=_sha256(b"payload"), progress=False)
    assert len(server.requests) == 1


def test_fetch_offline_fails_fast_and_says_so(closed_port_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(Unreachable, match="looks offline or the server is unreachable") as caught:
        fetch(closed_port_url, tmp_path / "data.zip", progress=False)
    assert time.monotonic() - started < 10
    assert caught.value.status is None and "Ways to get the photos" not in str(caught.value)  # the caller's to add


def test_fetch_http_error_is_reported(server: Server, tmp_path: Path) -> None:
    with pytest.raises(Unreachable, match="404") as caught:
        fetch(f"{server.url}/missing.zip", tmp_path / "missing.zip", progress=False)
    assert caught.value.status == 404


def test_a_petimages_http_error_names_every_way_to_get_data(server: Server, tmp_path: Path) -> None:
    with pytest.raises(CatdogError, match="the server answered 404") as caught:
        download_dataset("petimages", tmp_path / "pets", url=f"{server.url}/missing.zip", progress=False)
    for hint in SOURCE_HINTS:
        assert hint in str(caught.value)


# --- safe extraction ------------------------------------------------------------------------------


def _zip_with(path: Path, name: str, data: bytes = b"x", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("fine/ok.txt", b"ok")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        bundle.writestr(info, data)
    return path


def _tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "w:gz") as bundle:
        ok = tarfile.TarInfo("fine/ok.txt")
        ok.size = 2
        bundle.addfile(ok, io.BytesIO(b"ok"))
        member.size = len(data)
        bundle.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    ("name", "mode", "reason"),
    [
        ("../evil.jpg", None, "outside"),
        ("fine/../../evil.jpg", None, "outside"),
        ("/tmp/evil.jpg", None, "absolute"),
        ("link.jpg", 0o120777, "symbolic link"),
    ],
)
def test_extract_zip_rejects_unsafe_members(tmp_path: Path, name: str, mode: int | None, reason: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = _zip_with(work / "bad.zip", name, b"/etc/passwd" if mode else b"evil", mode)
    dest = work / "out"

    with pytest.raises(CatdogError, match=reason) as caught:
        extract_zip(archive, dest)

    assert name in str(caught.value) and "bad.zip" in str(caught.value)
    assert _tree(tmp_path) == {"work", "work/bad.zip"}  # nothing extracted, anywhere


def _sym(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    return info


def _hard(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, "fine/ok.txt"
    return info


def _device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


@pytest.mark.parametrize(
    ("member", "data", "reason"),
    [
        (tarfile.TarInfo("../evil.jpg"), b"evil", "outside"),
        (tarfile.TarInfo("/tmp/evil.jpg"), b"evil", "absolute"),
        (_sym("cats/link.jpg"), b"", "symbolic link"),
        (_hard("cats/hard.jpg"), b"", "hard link"),
        (_device("cats/null"), b"", "device"),
    ],
)
def test_extract_tar_rejects_unsafe_members(tmp_path: Path, member: tarfile.TarInfo, data: bytes, reason: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar_with(work / "bad.tar.gz", member, data)

    with pytest.raises(CatdogError, match=reason) as caught:
        extract_tar(archive, work / "out")

    assert member.name in str(caught.value) and "bad.tar.gz" in str(caught.value)
    assert _tree(tmp_path) == {"work", "work/bad.tar.gz"}


def test_extract_safe_archives(tmp_path: Path) -> None:
    zipped = _zip_with(tmp_path / "good.zip", "cats/a.jpg", b"a")
    tarred = _tar_with(tmp_path / "good.tar.gz", tarfile.TarInfo("cats/b.jpg"), b"b")

    extract_zip(zipped, tmp_path / "out")
    extract_tar(tarred, tmp_path / "out")

    assert _tree(tmp_path / "out") == {"fine", "fine/ok.txt", "cats", "cats/a.jpg", "cats/b.jpg"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.tar.gz", "good.zip", "out"]  # no temp left


@pytest.mark.parametrize("extract", [extract_zip, extract_tar])
def test_corrupt_archives_are_reported(tmp_path: Path, extract) -> None:
    archive = tmp_path / "broken.bin"
    archive.write_bytes(b"this is not an archive" * 10)
    with pytest.raises(CatdogError, match="corrupt"):
        extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_truncated_tar_is_reported(tmp_path: Path) -> None:
    archive = _tar_with(tmp_path / "full.tar.gz", tarfile.TarInfo("cats/b.jpg"), bytes(range(256)) * 500)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(CatdogError, match="corrupt"):
        extract_tar(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- PetImages ------------------------------------------------------------------------------------


def _petimages_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as bundle:
        for index in range(1, 12):  # 1..11: natural order puts 10 and 11 after 9
            bundle.writestr(f"PetImages/Cat/{index}.jpg", _jpeg((200, 100, 50 * index)))
            bundle.writestr(f"PetImages/Dog/{index}.jpg", _jpeg((50 * index, 100, 200)))
        bundle.writestr("PetImages/Cat/666.jpg", _jpeg((1, 2, 3), size=256)[:300])  # truncated
        bundle.writestr("PetImages/Dog/11702.jpg", b"")
        bundle.writestr("PetImages/Cat/Thumbs.db", b"\xd0\xcf\x11\xe0 not an image")
    return path


def test_petimages_download_sorts_and_skips_bad_files(server: Server, tmp_path: Path, capsys) -> None:
    _petimages_zip(server.root / "pets.zip")
    dest = tmp_path / "data" / "petimages"

    root = download_dataset("petimages", dest, url=f"{server.url}/pets.zip", progress=False)

    assert root == dest
    held_out = {"5.jpg", "10.jpg"}  # every 5th usable photo of each class, in natural name order
    kept = {f"{index}.jpg" for index in range(1, 12)} - held_out
    for name in ("cats", "dogs"):
        assert _tree(dest / "training_set" / name) == kept
        assert _tree(dest / "test_set" / name) == held_out
    assert not (dest / "cats").exists() and not (dest / "dogs").exists()
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Skipped")]
    assert len(summary) == 1 and "Skipped 3" in summary[0]
    for name in ("Cat/666.jpg", "Dog/11702.jpg", "Cat/Thumbs.db"):
        assert name in summary[0]
    layout = find_dataset(dest)
    assert layout.train_dir == dest / "training_set" and layout.test_dir == dest / "test_set"
    assert layout.train().counts() == {"cats": 9, "dogs": 9}
    assert layout.test().counts() == {"cats": 2, "dogs": 2}
    assert (dest / ".catdog-complete-petimages").read_text() == "petimages\n"
    assert sorted(p.name for p in dest.iterdir()) == [".catdog-complete-petimages", "test_set", "training_set"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["petimages"]  # no temp folders left
    assert not (dest / ".downloads").exists()


def test_download_dataset_is_idempotent(server: Server, tmp_path: Path, capsys) -> None:
    _petimages_zip(server.root / "pets.zip")
    dest = tmp_path / "pets"
    download_dataset("petimages", dest, url=f"{server.url}/pets.zip", progress=False)
    hits = len(server.requests)

    download_dataset("petimages", dest, url=f"{server.url}/pets.zip", progress=False)

    assert len(server.requests) == hits == 1
    assert "already" in capsys.readouterr().out


def test_petimages_offline_names_every_way_to_get_data(closed_port_url: str, tmp_path: Path) -> None:
    with pytest.raises(CatdogError) as caught:
        download_dataset("petimages", tmp_path / "pets", url=closed_port_url, progress=False)
    for hint in SOURCE_HINTS:
        assert hint in str(caught.value)
    assert not (tmp_path / "pets" / ".catdog-complete-petimages").exists()
    assert not (tmp_path / "pets" / ".downloads").exists()  # no empty downloads folder left behind


def test_offline_failure_keeps_a_partial_download_to_resume(server: Server, tmp_path: Path) -> None:
    (server.root / "pets.zip").write_bytes(b"z" * 50_000)
    server.cut_after = 20_000
    dest = tmp_path / "pets"

    with pytest.raises(CatdogError, match="again to resume"):
        download_dataset("petimages", dest, url=f"{server.url}/pets.zip", progress=False)

    assert (dest / ".downloads" / "petimages.zip.part").stat().st_size == 20_000


def test_petimages_split_is_deterministic(server: Server, tmp_path: Path) -> None:
    _petimages_zip(server.root / "pets.zip")
    trees = []
    for name in ("a", "b"):
        download_dataset("petimages", tmp_path / name, url=f"{server.url}/pets.zip", progress=False)
        trees.append(_tree(tmp_path / name / "test_set"))
    assert trees[0] == trees[1] == {"cats", "dogs", "cats/5.jpg", "cats/10.jpg", "dogs/5.jpg", "dogs/10.jpg"}


def test_unwritable_destination_is_a_catdog_error(server: Server, tmp_path: Path) -> None:
    _petimages_zip(server.root / "pets.zip")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # mkdir under a regular file fails, even as root
    dest = blocker / "pets"

    with pytest.raises(CatdogError) as caught:
        download_dataset("petimages", dest, url=f"{server.url}/pets.zip", progress=False)

    message = str(caught.value)
    assert message.startswith(f"cannot write to {dest}: ") and "Choose a writable --dest." in message
    assert "Not a directory" in message or "not a directory" in message.lower()
    assert blocker.read_text() == "not a folder"


def test_marker_is_written_atomically(server: Server, tmp_path: Path, monkeypatch) -> None:
    import catdog_lib.data.download as download

    _petimages_zip(server.root / "pets.zip")
    dest = tmp_path / "pets"
    replaced: list[tuple[Path, Path]] = []
    real_replace = download.os.replace

    def spy(src, dst):
        replaced.append((Path(src), Path(dst)))
        return real_replace(src, dst)

    monkeypatch.setattr(download.os, "replace", spy)
    download_dataset("petimages", dest, url=f"{server.url}/pets.zip", progress=False)

    marker = dest / ".catdog-complete-petimages"
    temps = [src for src, dst in replaced if dst == marker]
    assert len(temps) == 1 and temps[0].parent == dest and temps[0] != marker and not temps[0].exists()
    assert marker.read_text() == "petimages\n"


def test_url_argument_with_another_source_names_the_argument(tmp_path: Path) -> None:
    with pytest.raises(CatdogError) as caught:
        download_dataset("oxford-pets", tmp_path / "oxford", url="http://127.0.0.1/x.zip", progress=False)
    message = str(caught.value)
    assert "url=" in message and "petimages" in message and "--url" not in message
    assert not (tmp_path / "oxford").exists()


def test_unknown_source_is_a_catdog_error(tmp_path: Path) -> None:
    with pytest.raises(CatdogError, match="oxford-pets"):
        download_dataset("imagenet", tmp_path)


# --- Kaggle ---------------------------------------------------------------------------------------


def test_kaggle_credentials_problems(tmp_path: Path) -> None:
    token = tmp_path / "kaggle.json"
    assert "Create New Token" in kaggle_credentials_problem(token)

    token.write_text('{"username": "student", "key": "0123"}')
    token.chmod(0o644)
    assert "chmod 600" in kaggle_credentials_problem(token)

    token.chmod(0o600)
    assert kaggle_credentials_problem(token) is None

    token.write_text("not json")
    assert "kaggle.json" in kaggle_credentials_problem(token)


@pytest.mark.parametrize("config_dir", [True, False])
def test_kaggle_without_credentials_is_a_catdog_error(tmp_path: Path, monkeypatch, config_dir: bool) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    if config_dir:
        monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    else:
        monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)

    with pytest.raises(CatdogError, match="kaggle.json"):
        download_dataset("kaggle", tmp_path / "data", progress=False)
    assert not (tmp_path / "data").exists()


def test_kaggle_warns_about_a_world_readable_token(tmp_path: Path, monkeypatch) -> None:
    if not _fails_fast("api.kaggle.com"):
        pytest.skip("api.kaggle.com is reachable or only times out; this test needs a fast offline failure")
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "kaggle-config"))
    token = tmp_path / "kaggle-config" / "kaggle.json"
    token.parent.mkdir()
    token.write_text('{"username": "student", "key": "0123"}')
    token.chmod(0o644)

    with pytest.warns(UserWarning, match="chmod 600"), pytest.raises(CatdogError) as caught:
        download_dataset("kaggle", tmp_path / "data", progress=False)
    for hint in SOURCE_HINTS:
        assert hint in str(caught.value)


# --- Oxford-IIIT Pet ------------------------------------------------------------------------------


def test_write_cats_dogs_links_original_files(tmp_path: Path) -> None:
    source = tmp_path / "images"
    source.mkdir()
    pairs = []
    for name, is_dog in (("Abyssinian_1.jpg", False), ("beagle_1.jpg", True), ("beagle_2.jpg", True)):
        (source / name).write_bytes(_jpeg((10, 20, 30)) + name.encode())
        pairs.append((source / name, is_dog))

    counts = write_cats_dogs(pairs, tmp_path / "out" / "training_set")

    assert counts == {"cats": 1, "dogs": 2}
    assert (tmp_path / "out/training_set/dogs/beagle_2.jpg").read_bytes() == (source / "beagle_2.jpg").read_bytes()
    assert find_dataset(tmp_path / "out").train().counts() == {"cats": 1, "dogs": 2}


def _oxford_archives(root: Path) -> tuple[tuple[str, str], tuple[str, str]]:
    """images.tar.gz and annotations.tar.gz shaped like Oxford-IIIT Pet's; returns (name, md5) pairs."""
    lines = {"trainval": ["Abyssinian_1 1 1 1", "beagle_1 2 2 1"], "test": ["Abyssinian_2 1 1 1", "beagle_2 2 2 1"]}
    with tarfile.open(root / "images.tar.gz", "w:gz") as bundle:
        for split in lines.values():
            for line in split:
                data = _jpeg((5, 5, 5))
                info = tarfile.TarInfo(f"images/{line.split()[0]}.jpg")
                info.size = len(data)
                bundle.addfile(info, io.BytesIO(data))
    with tarfile.open(root / "annotations.tar.gz", "w:gz") as bundle:
        for split, split_lines in lines.items():
            data = ("\n".join(split_lines) + "\n").encode()
            info = tarfile.TarInfo(f"annotations/{split}.txt")
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    names = ("images.tar.gz", "annotations.tar.gz")
    return tuple((name, hashlib.md5((root / name).read_bytes()).hexdigest()) for name in names)


def test_oxford_pets_download_writes_both_splits(server: Server, tmp_path: Path, monkeypatch) -> None:
    from torchvision.datasets import OxfordIIITPet

    resources = tuple((f"{server.url}/{name}", md5) for name, md5 in _oxford_archives(server.root))
    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", resources)
    dest = tmp_path / "oxford"

    download_dataset("oxford-pets", dest, progress=False)

    layout = find_dataset(dest)
    assert layout.train().counts() == {"cats": 1, "dogs": 1}
    assert _tree(layout.test_dir) == {"cats", "cats/Abyssinian_2.jpg", "dogs", "dogs/beagle_2.jpg"}
    assert (dest / ".catdog-complete-oxford-pets").exists() and not (dest / ".downloads").exists()


def test_oxford_pets_offline_is_a_catdog_error(closed_port_url: str, tmp_path: Path, monkeypatch) -> None:
    from torchvision.datasets import OxfordIIITPet

    monkeypatch.setattr(OxfordIIITPet, "_RESOURCES", ((closed_port_url, "0" * 32),))
    with pytest.raises(CatdogError) as caught:
        download_dataset("oxford-pets", tmp_path / "oxford", progress=False)
    for hint in SOURCE_HINTS:
        assert hint in str(caught.value)


def test_oxford_pets_real_url_offline(tmp_path: Path) -> None:
    if not _fails_fast("www.robots.ox.ac.uk"):
        pytest.skip("www.robots.ox.ac.uk is reachable or only times out; the offline error cannot be checked quickly")
    started = time.monotonic()
    with pytest.raises(CatdogError, match="CATDOG_DATA_DIR"):
        download_dataset("oxford-pets", tmp_path / "oxford", progress=False)
    assert time.monotonic() - started < 30


# --- the sources table, checksums, the course-sized subset ----------------------------------------


def test_a_published_checksum_is_really_checked(server: Server, tmp_path: Path, monkeypatch) -> None:
    import dataclasses

    import catdog_lib.data.download as download

    _petimages_zip(server.root / "pets.zip")
    listed = dataclasses.replace(download.SOURCES["petimages"], url=f"{server.url}/pets.zip", sha256="0" * 64)
    monkeypatch.setitem(download.SOURCES, "petimages", listed)

    with pytest.raises(CatdogError, match="SHA-256"):
        download_dataset("petimages", tmp_path / "pets", progress=False)
    assert not (tmp_path / "pets" / ".catdog-complete-petimages").exists()


def test_a_damaged_photo_in_the_zip_fails_its_crc(server: Server, tmp_path: Path) -> None:
    archive = _petimages_zip(server.root / "pets.zip")
    data = bytearray(archive.read_bytes())
    photo = _jpeg((200, 100, 50))  # PetImages/Cat/1.jpg: flip one byte in the middle of its stored data
    at = data.index(photo) + len(photo) // 2
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))

    with pytest.raises(CatdogError, match="corrupt"):
        download_dataset("petimages", tmp_path / "pets", url=f"{server.url}/pets.zip", progress=False)
    assert not (tmp_path / "pets" / "training_set").exists()


def test_write_course_subset_hard_links_the_first_photos_in_natural_order(server: Server, tmp_path: Path) -> None:
    from catdog_lib.data.download import write_course_subset

    _petimages_zip(server.root / "pets.zip")
    full = download_dataset("petimages", tmp_path / "full", url=f"{server.url}/pets.zip", progress=False)

    subset = write_course_subset(full, tmp_path / "subset", train_per_class=3, test_per_class=1)

    layout = find_dataset(subset)
    assert _tree(subset / "training_set" / "cats") == {"1.jpg", "2.jpg", "3.jpg"}
    assert _tree(subset / "test_set" / "dogs") == {"5.jpg"}
    assert layout.train().counts() == {"cats": 3, "dogs": 3} and layout.test().counts() == {"cats": 1, "dogs": 1}
    original = full / "training_set" / "cats" / "2.jpg"
    assert (subset / "training_set" / "cats" / "2.jpg").stat().st_ino == original.stat().st_ino
    again = write_course_subset(full, tmp_path / "subset", train_per_class=5, test_per_class=2)  # complete: kept
    assert again == subset and find_dataset(subset).train().counts() == {"cats": 3, "dogs": 3}


def test_get_course_data_downloads_once_into_the_course_folder(server: Server, tmp_path: Path, monkeypatch,
                                                               capsys) -> None:
    from catdog_lib.data.download import get_course_data

    _petimages_zip(server.root / "pets.zip")
    monkeypatch.setenv("CATDOG_HOME", str(tmp_path / "course"))
    monkeypatch.delenv("CATDOG_DATA_DIR", raising=False)

    root = get_course_data(url=f"{server.url}/pets.zip", progress=False)

    assert root == tmp_path / "course" / "data" / "cat-and-dog"
    assert find_dataset(root).train().counts() == {"cats": 9, "dogs": 9}
    assert (tmp_path / "course" / "data" / "petimages" / ".catdog-complete-petimages").is_file()
    assert "The course uses 18 training and 4 test photos" in capsys.readouterr().out
    requests = len(server.requests)
    assert get_course_data(url=f"{server.url}/pets.zip", progress=False) == root
    assert get_course_data(all_photos=True, url=f"{server.url}/pets.zip", progress=False) == \
        tmp_path / "course" / "data" / "petimages"
    assert len(server.requests) == requests  # nothing downloaded again


def test_kaggle_sign_in_failure_is_one_line_naming_every_mechanism(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("KAGGLE_USERNAME", "KAGGLE_KEY", "KAGGLE_API_TOKEN", "KAGGLE_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(CatdogError) as caught:
        download_dataset("kaggle", tmp_path / "data", progress=False)

    message = str(caught.value)
    assert "\n" not in message
    for mechanism in ("KAGGLE_API_TOKEN", "access_token", "KAGGLE_USERNAME", "KAGGLE_KEY", "kaggle.json",
                      "KAGGLE_CONFIG_DIR", "kaggle auth login", "Colab", "--source petimages"):
        assert mechanism in message
    assert capsys.readouterr().out == ""  # the client's page of help is not shown


def test_kaggle_environment_variables_reach_the_client(tmp_path: Path, monkeypatch) -> None:
    if not _fails_fast("api.kaggle.com"):
        pytest.skip("api.kaggle.com is reachable or only times out; this test needs a fast offline failure")
    monkeypatch.setenv("HOME", str(tmp_path))  # no kaggle.json anywhere: only the variables
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", "student")
    monkeypatch.setenv("KAGGLE_KEY", "0123")

    with pytest.raises(CatdogError) as caught:
        download_dataset("kaggle", tmp_path / "data", progress=False)
    assert "Could not download" in str(caught.value) and "sign-in" not in str(caught.value)
