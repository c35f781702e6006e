"""A photo of the student's own: take it from an upload, a path or a URL, predict it and explain it.

Every way in ends in a file checked to be a readable image; anything else raises a one-line
:class:`CatdogError` that names the file and says what to do.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote, urlparse

from matplotlib.figure import Figure

from .. import web
from ..data.images import image_problem
from ..errors import CatdogError
from ..files import atomic_write_bytes, file_digest
from ..names import fit_name, printable
from .evaluation import LoadedModel, predict
from .gradcam import CamResult

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


def _download_photo(url: str, folder: Path) -> Path:
    """Download ``url`` (at most MAX_PHOTO_BYTES) into a private temporary folder in ``folder``, check that it is a
    photo, then keep it under a name made from its content: each call downloads again, so a changed photo is never
    stale."""
    folder.mkdir(parents=True, exist_ok=True)
    quoted = quote(url, safe=":/?#[]@!$&'()*+,;=%~")  # a pasted URL may hold non-ASCII letters
    try:
        with tempfile.TemporaryDirectory(prefix=".download-", dir=folder) as private:
            photo = web.fetch(quoted, Path(private) / "photo", progress=False, max_bytes=MAX_PHOTO_BYTES)
            _checked(photo, url)
            name = fit_name(unquote(Path(urlparse(url).path).name), "photo")
            target = folder / f"{file_digest(photo, 'sha256')[:12]}-{name}"
            os.replace(photo, target)
            return target
    except web.TooLarge:
        raise CatdogError(f"{url}: over {MAX_PHOTO_BYTES >> 20} MB, far more than a photo needs; "
                          "download stopped.") from None
    except web.DownloadError as error:
        raise _cannot_download(url, error.problem) from None
    except OSError as error:  # writing it: a full disk, a folder that cannot be written
        raise _cannot_download(url, error.strerror or error) from None


def _cannot_download(url: str, why: object) -> CatdogError:
    return CatdogError(f"cannot download the photo from {url}: {why}. Save it and give its path instead.")


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
