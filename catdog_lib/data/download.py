"""Get the cats-vs-dogs photos: from Kaggle, Microsoft's PetImages zip, or Oxford-IIIT Pet.

Every source ends as ``training_set/{cats,dogs}`` and ``test_set/{cats,dogs}`` folders that
``layout.find_dataset`` reads (PetImages ships no test split: ``petimages`` says which photos are held out).
Downloads resume (``web``), archives are extracted safely (``archives``), and a finished dataset is marked so
that asking again does nothing. A server that cannot be reached gets one error naming every way to get the data.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import shutil
import socket
import stat
import urllib.error
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .. import config
from ..errors import CatdogError
from ..files import atomic_write_text
from ..web import TIMEOUT_S, Unreachable, fetch, offline_error
from . import petimages
from .archives import extract_zip, merge_into, staging
from .images import image_problem
from .layout import find_dataset, is_image_file, natural_key
from .remote_zip import NoRanges, course_photos

KAGGLE_DATASET = "tongpython/cat-and-dog"
PETIMAGES_URL = (
    "https://download.microsoft.com/download/3/E/1/3E1C3F21-ECDB-4869-8368-6DEBA77B919F/"
    "kagglecatsanddogs_5340.zip"
)
DOWNLOADS_DIR = ".downloads"
KAGGLE_AUTH = (
    "Kaggle needs an API token, given in any one of these ways: the KAGGLE_API_TOKEN environment variable "
    "or ~/.kaggle/access_token (kaggle.com > Settings > API > Generate New Token); KAGGLE_USERNAME and "
    "KAGGLE_KEY; kaggle.json in ~/.kaggle or $KAGGLE_CONFIG_DIR (chmod 600); `kaggle auth login`; on Colab, "
    "secrets of those names (key icon, left bar)"
)


# --- Kaggle ---------------------------------------------------------------------------------------


def kaggle_config_path() -> Path:
    """Where the kaggle package reads kaggle.json: $KAGGLE_CONFIG_DIR, ~/.kaggle, or ~/.config/kaggle."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"]).expanduser() / "kaggle.json"
    legacy = Path.home() / ".kaggle"
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle" / "kaggle.json"
    return xdg if not legacy.exists() and xdg.exists() else legacy / "kaggle.json"


def _kaggle_token_problem(path: Path) -> str | None:
    if not path.is_file():
        return (
            f"{path}: no Kaggle API token. Sign in at kaggle.com, open Settings > API > Create New Token, "
            f"save the downloaded kaggle.json as {path} and run `chmod 600 {path}` "
            "(or use --source petimages / --source oxford-pets, which need no account)."
        )
    try:
        token = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        return f"{path}: not a readable kaggle.json ({error}). Download a new token from kaggle.com > Settings > API."
    if not isinstance(token, dict) or not {"username", "key"} <= token.keys():
        return f"{path}: lacks \"username\" and \"key\". Download a new token from kaggle.com > Settings > API."
    return None


def _kaggle_permission_problem(path: Path) -> str | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return (
            f"{path}: other users can read your Kaggle API key (permissions {mode:o}). "
            f"Run `chmod 600 {path}`."
        )
    return None


def kaggle_credentials_problem(path: Path) -> str | None:
    """What is wrong with the kaggle.json at ``path`` (missing, invalid, or readable by others), or None."""
    path = Path(path)
    return _kaggle_token_problem(path) or _kaggle_permission_problem(path)


def _kaggle_api():
    """An authenticated kaggle client, letting it try every mechanism it knows; one clear line if none works."""
    path = kaggle_config_path()
    loose = _kaggle_permission_problem(path) if path.is_file() else None
    if loose:
        warnings.warn(loose, stacklevel=4)
    try:
        from kaggle.api.kaggle_api_extended import KaggleApi
    except ImportError:
        raise CatdogError("The kaggle client is not installed: pip install 'catdog-course[kaggle]' "
                          "(or use --source petimages, which needs no account).") from None
    api = KaggleApi()
    api.config_dir, api.config = str(path.parent), str(path)  # the client reads these once, at import
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the client prints a page of help, then exits
            api.authenticate()
    except (SystemExit, Exception) as error:
        detail = f" ({error})" if str(error) and not isinstance(error, SystemExit) else ""
        raise CatdogError(f"Kaggle sign-in failed{detail}. {KAGGLE_AUTH}; or use --source petimages "
                          "(no account).") from None
    return api


def _download_kaggle(dest: Path, url: str | None, progress: bool) -> None:
    api = _kaggle_api()
    import requests  # a dependency of kaggle

    downloads = dest / DOWNLOADS_DIR
    downloads.mkdir(parents=True, exist_ok=True)
    try:
        api.dataset_download_files(KAGGLE_DATASET, path=str(downloads), quiet=not progress)
    except requests.HTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        if status in (401, 403):
            raise CatdogError(
                f"Kaggle refused the download ({status}): the token is wrong or expired, or you have not "
                f"accepted the rules of https://www.kaggle.com/datasets/{KAGGLE_DATASET}. {KAGGLE_AUTH}."
            ) from None
        raise CatdogError(f"Kaggle answered {status} for {KAGGLE_DATASET} ({error}).\n{WAYS_TO_GET_DATA}") from None
    except (requests.RequestException, OSError) as error:
        raise offline_error(f"{KAGGLE_DATASET} from Kaggle", error) from None
    extract_zip(downloads / f"{KAGGLE_DATASET.split('/')[1]}.zip", dest)


# --- Microsoft PetImages --------------------------------------------------------------------------


def _sort_petimages(raw: Path, out: Path, progress: bool) -> list[str]:
    """Move usable PetImages/{Cat,Dog} photos to out/training_set/{cats,dogs}, holding every
    ``petimages.TEST_EVERY``-th usable photo of each class (in natural name order) out in out/test_set/{cats,dogs}
    so that evaluation never sees training photos. Return the skipped files' names."""
    pet_images = raw / "PetImages"
    skipped: list[str] = []
    for folder, name in (("Cat", "cats"), ("Dog", "dogs")):
        if not (pet_images / folder).is_dir():
            raise CatdogError(f"The PetImages zip has no PetImages/{folder} folder; it is not the expected archive.")
        files = sorted((p for p in (pet_images / folder).iterdir() if p.is_file()), key=natural_key)
        usable: list[Path] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's EXIF chatter on some photos
            for path in tqdm(files, desc=f"checking {folder} photos", unit="img", disable=not progress):
                if is_image_file(path) and image_problem(path) is None:
                    usable.append(path)
                else:
                    skipped.append(f"{folder}/{path.name}")
        for index, path in enumerate(usable, start=1):
            split = petimages.split_of(index)
            (out / split / name).mkdir(parents=True, exist_ok=True)
            os.replace(path, out / split / name / path.name)
    return skipped


def _download_petimages(dest: Path, url: str | None, progress: bool) -> None:
    source = SOURCES["petimages"]
    archive = fetch(url or source.url, dest / DOWNLOADS_DIR / "petimages.zip",
                    sha256=None if url else source.sha256, progress=progress)
    with staging(dest) as work:
        extract_zip(archive, work / "raw")
        skipped = _sort_petimages(work / "raw", work / "out", progress)
        merge_into(work / "out", dest)
    if skipped:
        shown = petimages.MAX_NAMED_SKIPS
        names = ", ".join(skipped[:shown])
        more = f" and {len(skipped) - shown} more" if len(skipped) > shown else ""
        print(f"Skipped {len(skipped)} unusable file(s) (unreadable images or junk): {names}{more}")


# --- Oxford-IIIT Pet ------------------------------------------------------------------------------


def _link(path: Path, target: Path) -> None:
    """Hard-link ``path`` as ``target`` (copying where links fail), so no photo is re-encoded."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)


def write_cats_dogs(pairs: Iterable[tuple[Path, bool]], out: Path) -> dict[str, int]:
    """Write (image_path, is_dog) pairs as out/cats and out/dogs, hard-linking the original files
    (copying where links fail) so nothing is re-encoded. Returns the count per folder."""
    counts = {"cats": 0, "dogs": 0}
    for path, is_dog in pairs:
        name = "dogs" if is_dog else "cats"
        _link(path, out / name / Path(path).name)
        counts[name] += 1
    return counts


@contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    """Give connections that set no timeout of their own (torchvision's) this one."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download_oxford(dest: Path, url: str | None, progress: bool) -> None:
    from torchvision.datasets import OxfordIIITPet

    root = dest / DOWNLOADS_DIR
    try:
        with _socket_timeout(TIMEOUT_S):
            splits = {
                folder: OxfordIIITPet(root, split=split, target_types="binary-category", download=True)
                for split, folder in (("trainval", "training_set"), ("test", "test_set"))
            }
    except urllib.error.HTTPError as error:
        raise CatdogError(
            f"Oxford-IIIT Pet: the server answered {error.code} {error.reason}.\n{WAYS_TO_GET_DATA}"
        ) from None
    except (OSError, http.client.HTTPException) as error:
        raise offline_error("the Oxford-IIIT Pet dataset", getattr(error, "reason", error)) from None
    except RuntimeError as error:  # torchvision: "File not found or corrupted."
        raise CatdogError(
            f"Oxford-IIIT Pet: the download failed its checksum ({error}). Delete {root} and run again."
        ) from None
    with staging(dest) as work:
        for folder, dataset in splits.items():
            # binary-category labels: 0 = Cat, 1 = Dog, one per image file.
            write_cats_dogs(zip(dataset._images, (label == 1 for label in dataset._bin_labels)), work / folder)
        merge_into(work, dest)


# --- the sources ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A place the photos come from: how to get them and how they are verified."""

    name: str
    what: str  # one line for the list of ways to get the data
    account: bool  # needs a sign-in
    get: Callable[[Path, str | None, bool], None]  # (dest, url override, progress)
    url: str | None = None  # for sources fetched over plain HTTP(S); `url=` may replace it
    sha256: str | None = None  # of the file at ``url``, when it is published
    verified: str = ""  # what is checked, in words


SOURCES: dict[str, Source] = {source.name: source for source in (
    Source("petimages", "Microsoft's Kaggle Cats and Dogs zip, 25,000 photos, no account", False,
           _download_petimages, url=PETIMAGES_URL,
           verified="length against the server's Content-Length, every photo's CRC-32 while unzipping"),
    Source("kaggle", "the tutorial's Kaggle dataset tongpython/cat-and-dog, needs a Kaggle API token", True,
           _download_kaggle, verified="by the kaggle client; every photo's CRC-32 while unzipping"),
    Source("oxford-pets", "Oxford-IIIT Pet via torchvision, no account", False, _download_oxford,
           verified="MD5 of both archives, by torchvision"),
)}
DEFAULT_SOURCE = "petimages"  # no account needed, so `make run` on a fresh machine can fetch it
WAYS_TO_GET_DATA = "Ways to get the photos:\n" + "\n".join(
    f"  - catdog data download --source {name:<12} ({source.what})" for name, source in SOURCES.items()
) + ("\n  - or set CATDOG_DATA_DIR (or pass --data) to a folder that already holds the photos, shaped "
     "training_set/training_set/{cats,dogs} or cats/ and dogs/")


def download_dataset(source: str, dest: Path, *, url: str | None = None, progress: bool = True) -> Path:
    """Download ``source`` (a name in ``SOURCES``) into ``dest`` and return the dataset root.

    A second call finds the completion marker and does nothing. ``url`` replaces the source's URL
    (its published checksum is then not applied).
    """
    if source not in SOURCES:
        raise CatdogError(f"Unknown data source {source!r}; choose one of: {', '.join(SOURCES)}.")
    if url is not None and SOURCES[source].url is None:
        with_url = ", ".join(name for name, known in SOURCES.items() if known.url)
        raise CatdogError(f"The url= argument works only with source {with_url}, not {source!r}.")
    dest = Path(dest).expanduser()
    marker = dest / f".catdog-complete-{source}"
    if marker.exists():
        print(f"The {source} dataset is already in {dest}; nothing to download.")
        return dest
    try:
        SOURCES[source].get(dest, url, progress)
        shutil.rmtree(dest / DOWNLOADS_DIR, ignore_errors=True)
        atomic_write_text(marker, f"{source}\n")
    except OSError as error:
        _remove_if_empty(dest / DOWNLOADS_DIR)
        raise CatdogError(f"cannot write to {dest}: {error.strerror or error}. Choose a writable --dest.") from None
    except Unreachable as error:
        _remove_if_empty(dest / DOWNLOADS_DIR)  # a partial download inside it is kept, to resume
        raise _with_ways(error) from None
    except BaseException:
        _remove_if_empty(dest / DOWNLOADS_DIR)  # a partial download inside it is kept, to resume
        raise
    print(f"The {source} dataset is ready in {dest}.")
    return dest


def write_course_subset(full: Path, dest: Path, train_per_class: int = petimages.COURSE_TRAIN_PER_CLASS,
                        test_per_class: int = petimages.COURSE_TEST_PER_CLASS) -> Path:
    """Hard-link (copy where links fail) the first photos of each class, in natural name order, of
    ``full``'s training and test splits into ``dest/training_set`` and ``dest/test_set``: the same
    course-sized subset every time. Does nothing when ``dest`` is already complete."""
    marker = dest / ".catdog-complete-subset"
    if marker.exists():
        return dest
    layout = find_dataset(full)
    parts = [("training_set", layout.train(), train_per_class)]
    if layout.test_dir:
        parts.append(("test_set", layout.test(), test_per_class))
    with staging(dest) as work:
        for folder, classes, count in parts:
            for name in classes.classes:
                for path in classes.files[name][:count]:
                    _link(path, work / folder / name / path.name)
        merge_into(work, dest)
    atomic_write_text(marker, f"{full}\n")
    return dest


def get_course_data(source: str = DEFAULT_SOURCE, *, root: str | os.PathLike | None = None,
                    all_photos: bool = False, url: str | None = None, progress: bool = True) -> Path:
    """Download ``source`` into ``data/<source>`` of the course folder and return the dataset root the
    course should use: a course-sized subset of it, hard-linked into ``config.data_root(root)``, or with
    ``all_photos`` every photo. Asking again downloads nothing."""
    if source == "petimages" and not all_photos and not (config.data_dir() / source).exists():
        subset = _course_photos_by_ranges(url or SOURCES[source].url, config.data_root(root), progress)
        if subset is not None:
            return subset
    full = download_dataset(source, config.data_dir() / source, url=url, progress=progress)
    if all_photos:
        return full
    subset = write_course_subset(full, config.data_root(root), petimages.COURSE_TRAIN_PER_CLASS,
                                 petimages.COURSE_TEST_PER_CLASS)
    layout = find_dataset(subset)
    parts = [("training", layout.train())] + ([("test", layout.test())] if layout.test_dir else [])
    counts = " and ".join(f"{sum(folders.counts().values()):,} {part}" for part, folders in parts)
    print(f"The course uses {counts} photos of {full} (hard-linked into {subset}); "
          "`catdog course --all-photos` uses them all.")
    return subset


def _course_photos_by_ranges(url: str, dest: Path, progress: bool) -> Path | None:
    """The course's photos alone, read out of the remote zip (catdog_lib/data/remote_zip.py); None when the server
    does not answer range requests (then the whole zip is downloaded)."""
    marker = dest / ".catdog-complete-subset"
    if marker.exists():
        return dest
    try:
        course_photos(url, dest, progress)
    except NoRanges:
        print(f"{url}: the server sends only whole files; downloading the whole zip.")
        return None
    except Unreachable as error:
        raise _with_ways(error) from None
    atomic_write_text(marker, f"{url}\n")
    layout = find_dataset(dest)
    counts = {part: sum(folders.counts().values()) for part, folders in (("training", layout.train()),
                                                                         ("test", layout.test()))}
    print(f"The course uses {counts['training']:,} training and {counts['test']:,} test photos, read out of {url} "
          "(`catdog course --all-photos` downloads them all).")
    return dest


def _with_ways(error: Unreachable) -> CatdogError:
    """A server that could not be reached, and every other way to get the photos."""
    return CatdogError(f"{error}\n{WAYS_TO_GET_DATA}")


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # missing, not empty, or not ours to remove
        pass
