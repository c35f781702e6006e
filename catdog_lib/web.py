"""HTTP for the whole library: one way to GET a URL, downloads that resume, byte ranges, and failures in words.

Every request goes through :func:`open_url` (the course's User-Agent, a timeout). A download that fails raises
a :class:`DownloadError` whose ``problem`` says why (the server's HTTP status, an SSL failure, a broken answer, no
connection), so each caller can phrase its own line; :class:`Unreachable` ones are where a caller may name
other ways to get what it asked for. Torch-free.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from .errors import CatdogError
from .files import file_digest, open_partial, own_regular_size

TIMEOUT_S = 30
CHUNK_BYTES = 1 << 20
USER_AGENT = "catdog-course"


class DownloadError(CatdogError):
    """A download that failed; ``problem`` says why in words, without the URL (the message when not given: a
    CatdogError is remade from its message alone, as the notebooks do to reword it)."""

    def __init__(self, message: str, problem: str | None = None):
        super().__init__(message)
        self.problem = message if problem is None else problem


class Unreachable(DownloadError):
    """The server could not be reached, or answered with the HTTP error ``status`` (None: no answer)."""

    def __init__(self, message: str, problem: str | None = None, status: int | None = None):
        super().__init__(message, problem)
        self.status = status


class TooLarge(DownloadError):
    """A download over the caller's size limit: stopped, and nothing of it kept."""


def connection_problem(reason: object) -> str:
    """Why a download failed to connect, in words: an SSL failure or a broken answer is not being offline."""
    if isinstance(reason, ssl.SSLError):
        return (f"SSL error: {reason}; the secure connection was refused (a network that intercepts HTTPS, "
                "missing CA certificates, or a wrong clock?)")
    if isinstance(reason, http.client.HTTPException):
        return f"the server's answer was broken ({type(reason).__name__}: {reason})"
    return f"{reason}; this machine looks offline or the server is unreachable"


def offline_error(what: str, reason: object) -> Unreachable:
    """The error for a server that could not be reached: what failed, and why."""
    problem = connection_problem(reason)
    return Unreachable(f"Could not download {what} ({problem}).", problem)


def open_url(url: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """GET ``url`` with the course's User-Agent, ``TIMEOUT_S`` and ``headers``; Unreachable when that fails."""
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        problem = f"the server answered {error.code} {error.reason}"
        raise Unreachable(f"{url}: {problem}.", problem, error.code) from None
    except ValueError as error:  # no host, an unknown scheme
        problem = f"not a URL that can be fetched ({error})"
        raise Unreachable(f"{url}: {problem}.", problem) from None
    except (OSError, http.client.HTTPException) as error:
        raise offline_error(url, getattr(error, "reason", error)) from None


def _open(url: str, part: Path) -> http.client.HTTPResponse:
    """GET ``url``, asking to resume after the bytes already in ``part`` (when it is this user's file)."""
    offset = own_regular_size(part)
    try:
        return open_url(url, {"Range": f"bytes={offset}-"} if offset else None)
    except Unreachable as error:
        if error.status == 416 and offset:  # the .part is not a prefix of this file: start again
            part.unlink()
            return _open(url, part)
        raise


def _too_large(url: str, max_bytes: int) -> TooLarge:
    problem = f"over {max_bytes:,} bytes"
    return TooLarge(f"{url}: {problem}; the download stopped.", problem)


def _download(url: str, part: Path, progress: bool, max_bytes: int | None) -> int | None:
    """Write ``url``'s body into ``part``, appended when the server resumes it; the whole file's announced size."""
    with _open(url, part) as response:
        resumed = response.status == 206
        offset = own_regular_size(part) if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length else None
        if max_bytes is not None and total is not None and total > max_bytes:
            raise _too_large(url, max_bytes)
        with open_partial(part, append=resumed) as file, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=part.name.removesuffix(".part"), disable=not progress,
        ) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_BYTES)
                except (OSError, http.client.HTTPException) as error:
                    raise DownloadError(
                        f"{url}: the download stopped after {file.tell():,} bytes ({error}). "
                        f"Run the same command again to resume from {part}.",
                        connection_problem(getattr(error, "reason", error)),
                    ) from None
                if not chunk:
                    return total
                if max_bytes is not None and file.tell() + len(chunk) > max_bytes:
                    raise _too_large(url, max_bytes)
                file.write(chunk)
                bar.update(len(chunk))


def fetch(url: str, target: Path, sha256: str | None = None, progress: bool = True,
          max_bytes: int | None = None) -> Path:
    """Download ``url`` to ``target`` via ``target.part``, resuming a partial download when the server allows,
    checking ``sha256`` when given. Does nothing when ``target`` is already there. A file over ``max_bytes``
    (announced or sent) raises TooLarge and its part is removed."""
    target = Path(target)
    if target.exists():
        if sha256 is None or file_digest(target, "sha256") == sha256.lower():
            return target
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_suffix(target.suffix + ".part")
    try:
        total = _download(url, part, progress, max_bytes)
    except TooLarge:
        part.unlink(missing_ok=True)
        raise
    size = part.stat().st_size
    if total is not None and size != total:
        problem = f"the download stopped at {size:,} of {total:,} bytes"
        raise DownloadError(f"{url}: {problem}. Run the same command again to resume from {part}.", problem)
    if sha256 is not None and file_digest(part, "sha256") != sha256.lower():
        part.unlink()
        raise CatdogError(
            f"{url}: the downloaded file's SHA-256 does not match the expected {sha256}; it was deleted. "
            "Run the command again; if it keeps failing the file on the server has changed."
        )
    os.replace(part, target)
    return target


def get_range(url: str, start: int, end: int | None = None) -> tuple[int, bytes, int] | None:
    """Bytes ``start``..``end`` (inclusive) of ``url``, or its last ``-start`` bytes: (offset, data, total size);
    None when the server answers with anything but those bytes (it ignores ranges)."""
    wanted = f"bytes={start}" if start < 0 else f"bytes={start}-{end}"
    with open_url(url, {"Range": wanted}) as response:
        sent = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", response.headers.get("Content-Range", "").strip())
        if response.status != 206 or not sent:
            return None
        first, last, total = map(int, sent.groups())
        try:
            data = response.read(last - first + 1)
        except (OSError, http.client.HTTPException) as error:
            raise offline_error(url, getattr(error, "reason", error)) from None
    if len(data) != last - first + 1:
        problem = f"the server sent {len(data):,} of {last - first + 1:,} bytes"
        raise DownloadError(f"{url}: {problem}; run the same command again.", problem)
    return first, data, total
