"""A photo of the student's own: take it from an upload, a path or a URL, predict it and explain it.

Every way in ends in a file checked to be a readable image; anything else raises a one-line
:class:`CatdogError` that names the file and says what to do.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import urlparse

from matplotlib.figure import Figure

from .download import fetch
from .errors import CatdogError
from .evaluation import LoadedModel, predict
from .gradcam import CamResult
from .images import image_problem


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
    path = folder / (Path(name).name or "upload")
    path.write_bytes(content)
    return _checked(path, name, remove_if_bad=True)


def fetch_photo(source: str, folder: Path) -> Path:
    """A photo from a local path or an http(s) URL (downloaded into ``folder``), checked to be an image."""
    if urlparse(source).scheme in {"http", "https"}:
        name = Path(urlparse(source).path).name or "photo"
        target = folder / f"{hashlib.sha1(source.encode()).hexdigest()[:8]}-{name}"
        try:
            fetch(source, target, progress=False)
        except CatdogError as error:
            reason = str(error).splitlines()[0]
            raise CatdogError(f"cannot download the photo: {reason} Save it and give its path instead.") from None
        return _checked(target, source, remove_if_bad=True)
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
