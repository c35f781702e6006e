"""A photo of the student's own: take it from an upload, a path or a URL, predict it and explain it.

Every way in ends in a file checked to be a readable image; anything else raises a one-line
:class:`CatdogError` that names the file and says what to do.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.request
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote, unquote, urlparse

from matplotlib.figure import Figure

from ..data.download import CHUNK_BYTES, TIMEOUT_S, connection_problem
from ..errors import CatdogError
from .evaluation import LoadedModel, predict
from ..files import atomic_write_bytes
from .gradcam import CamResult
from ..data.images import image_problem
from ..names import fit_name, printable

MAX_PHOTO_BYTES = 50 << 20  # no photo needs more (the web demo's upload limit too)


def _checked(path: Path, shown_as: str, remove_if_bad: bool = False) -> Path:
    problem = image_problem(path)
    if problem:
        if remove_if_bad:
            path.unlink(missing_ok=True)
        reason = problem.removeprefix(f"{path}: ")
        raise CatdogError(f"{shown_as}: {reason}; choose a photo (JPEG, PNG, WebP, ...).")
    return path


def save_upload(name: str, content: bytes, folder: Path) -> Path:
    """Write an uploaded file (``name``, ``content``) into ``folder``; one that is not an image is refused and removed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / fit_name(name, "upload")  # no folder part, `..` or NUL; short enough to create
    atomic_write_bytes(path, content)
    return _checked(path, printable(name.replace("\0", "\\0")), remove_if_bad=True)


def _why(error: Exception) -> str:
    """Why a download failed, in words."""
    if isinstance(error, HTTPError):
        return f"the server answered {error.code} {error.reason}"
    if isinstance(error, ValueError):
        return f"not a URL that can be fetched ({error})"
    return connection_problem(getattr(error, "reason", error))


def _download_photo(url: str, folder: Path) -> Path:
    """Stream ``url`` to a temporary file in ``folder`` (at most MAX_PHOTO_BYTES), check that it is a photo, then
    keep it under a name made from its content: each call downloads again, so a changed photo is never stale."""
    folder.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=".download-", suffix=".tmp", dir=folder)
    digest = hashlib.sha256()
    too_big = f"{url}: over {MAX_PHOTO_BYTES >> 20} MB, far more than a photo needs; download stopped."
    try:
        quoted = quote(url, safe=":/?#[]@!$&'()*+,;=%~")  # a pasted URL may hold non-ASCII letters
        request = urllib.request.Request(quoted, headers={"User-Agent": "catdog-course"})
        with os.fdopen(handle, "wb") as file, urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if int(response.headers.get("Content-Length") or 0) > MAX_PHOTO_BYTES:
                raise CatdogError(too_big)
            while chunk := response.read(CHUNK_BYTES):
                if file.tell() + len(chunk) > MAX_PHOTO_BYTES:
                    raise CatdogError(too_big)
                file.write(chunk)
                digest.update(chunk)
        _checked(Path(tmp), url)
        target = folder / f"{digest.hexdigest()[:12]}-{fit_name(unquote(Path(urlparse(url).path).name), 'photo')}"
        os.replace(tmp, target)
        return target
    except (OSError, http.client.HTTPException, ValueError) as error:
        raise CatdogError(f"cannot download the photo from {url}: {_why(error)}. Save it and give its path "
                          "instead.") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def fetch_photo(source: str, folder: Path) -> Path:
    """A photo from a local path or an http(s) URL (downloaded into ``folder``), checked to be an image."""
    if urlparse(source).scheme in {"http", "https"}:
        return _download_photo(source, folder)
    path = Path(source).expanduser()
    if not path.is_file():
        raise CatdogError(f"{source}: no such file; give the path of a photo or an http(s) URL.")
    return _checked(path, source)


def class_probabilities(loaded: LoadedModel, path: Path) -> dict[str, float]:
    """The probability of every class for one photo."""
    prediction = predict(loaded, [path], progress=False)[0]
    if prediction.error:
        raise CatdogError(f"{path}: {prediction.error}")
    return prediction.probabilities


def plot_photo_report(cam: CamResult, probabilities: dict[str, float]) -> Figure:
    """The photo as the network saw it, its class probabilities as bars, and its Grad-CAM overlay."""
    fig = Figure(figsize=(9, 3), layout="constrained")
    photo, bars, overlay = fig.subplots(1, 3)
    photo.imshow(cam.image)
    photo.set_title(Path(cam.path).name, fontsize=9)
    names = list(probabilities)
    bars.barh(names, [probabilities[name] for name in names], color="tab:blue")
    bars.set_xlim(0, 1)
    bars.set_xlabel("probability")
    bars.invert_yaxis()
    overlay.imshow(cam.overlay())
    overlay.set_title("Grad-CAM: where it looked", fontsize=9)
    for ax in (photo, overlay):
        ax.axis("off")
    return fig
