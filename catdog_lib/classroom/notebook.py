"""What every course notebook calls first: ``notebook.setup()``.

It checks the parameters the student typed, makes a ``CatdogError`` appear as its one-line message
instead of a traceback through the library, and on Google Colab, where each notebook runs in a fresh
machine, it makes the notebook self-sufficient: Kaggle secrets become the environment variables the
kaggle client reads, Google Drive can hold the data and runs, and missing photos are downloaded.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from .. import __version__, config
from ..errors import CatdogError
from ..train.parameters import check_notebook_parameters

# The one setting naming the course's repository: `make repository URL=...` changes it and every copy of it
# (badges, install cells, README, pyproject); tests/test_repository.py checks that they agree.
REPOSITORY = "https://github.com/catdog-course/catdog"
DISTRIBUTION = "catdog-course"
RELEASE = f"v{__version__}"  # the git tag that installs and Colab badges pin, so a class's code stays put
KAGGLE_SECRETS = ("KAGGLE_API_TOKEN", "KAGGLE_USERNAME", "KAGGLE_KEY")
DRIVE_MOUNT = "/content/drive"
DRIVE_HOME = f"{DRIVE_MOUNT}/MyDrive/catdog"  # data/ and runs/ go here with setup(drive=True)
NO_DRIVE = ("Colab gives each notebook a fresh machine: without DRIVE = True (parameters cell) this one fetches "
            "the course's photos again (~95 MB from PetImages) and notebooks 05 and 06 first retrain the model "
            "(30-70 s of training on the 2-core CPUs of docs/BENCHMARKS.md; Colab's may be slower).")
_said: list[str] = []  # NO_DRIVE is said once per kernel
BADGE = "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
# The first code cell of every notebook; it installs only on Colab, and a failed install stops "Run all" with
# pip's words and one line saying what to do (IPython shows a SystemExit as its message, without a traceback).
INSTALL_CELL = """\
# On Colab, install the course's library; elsewhere it is already installed.
import subprocess
import sys

if "google.colab" in sys.modules:
    PACKAGE = "{requirement}"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", PACKAGE], capture_output=True, text=True)
    if pip.returncode:
        print(pip.stderr[-3000:])
        raise SystemExit(f"pip could not install {{PACKAGE}} (its words are above): check the internet connection, "
                         "then run this cell again.")"""


def colab_url(notebook: str, repository: str = REPOSITORY, folder: str = "notebooks") -> str:
    """The "Open in Colab" link of a course notebook at this release (``folder``: where it is in the repository)."""
    return f"https://colab.research.google.com/github/{repository.removeprefix('https://github.com/')}" \
           f"/blob/{RELEASE}/{folder}/{notebook}"


def badge(notebook: str, repository: str = REPOSITORY, folder: str = "notebooks") -> str:
    """The first line of every notebook: the "Open in Colab" badge."""
    return f"{BADGE}({colab_url(notebook, repository, folder)})"


def install_cell(repository: str = REPOSITORY) -> str:
    """The source of the install cell, installing the library from ``repository`` at this release."""
    return INSTALL_CELL.format(requirement=f"{DISTRIBUTION} @ git+{repository}@{RELEASE}")


def set_links(nb, name: str, repository: str = REPOSITORY, folder: str = "notebooks") -> None:
    """Point notebook ``name``'s badge (the first line of its first badge cell) and install cell at
    ``repository``, where the notebook is ``folder/name``; ``nb`` is an nbformat notebook, changed in place."""
    first = next((cell for cell in nb.cells if cell.cell_type == "markdown" and cell.source.startswith(BADGE)), None)
    if first is not None:
        first.source = "\n".join([badge(name, repository, folder), *first.source.split("\n")[1:]])
    install, wanted = next(cell for cell in nb.cells if cell.cell_type == "code"), install_cell(repository)
    if "google.colab" in install.source and "install" in install.source and install.source != wanted:
        install.source, install.outputs, install.execution_count = wanted, [], None


def on_colab() -> bool:
    return "google.colab" in sys.modules


def in_notebook_words(message: str) -> str:
    """A message's advice as it applies in a notebook: there, a cell is run again, not a command."""
    return re.sub(r"\b([Rr])un the same command again", r"\1un the same cell again", message)


def show_catdog_error(shell, etype, value, tb, tb_offset=None) -> list[str]:
    """IPython's handler for CatdogError: show the message alone (it names the problem and the fix)
    as the cell's error output; the cell still fails, so "Run All" stops there."""
    worded = in_notebook_words(str(value))
    if worded != str(value):
        value = etype(worded)
    lines = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    shell._showtraceback(etype, value, lines)  # what IPython and ipykernel show an error with
    return lines


def setup(data_dir: str | os.PathLike | None = None, drive: bool = False) -> None:
    """Get the notebook ready for the photos in ``data_dir`` (None: the course's default);
    ``drive=True`` keeps data and runs on Google Drive (Colab only).

    In IPython it first checks the notebook's parameters (the variables its parameters cell set, see
    ``parameters.NOTEBOOK_RULES``): a wrong value stops the cell with one line naming it and what is allowed."""
    try:
        from IPython import get_ipython
    except ImportError:
        shell = None
    else:
        shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((CatdogError,), show_catdog_error)
        check_notebook_parameters(shell.user_ns)
    if not on_colab():
        return
    _secrets_to_environment()
    if drive:
        _use_drive()
    elif not _said:
        _said.append(NO_DRIVE)
        print(NO_DRIVE)
    from .course import has_dataset

    if not has_dataset(config.data_root(data_dir)):
        from ..data.download import DEFAULT_SOURCE, get_course_data

        get_course_data("kaggle" if kaggle_credentials_present() else DEFAULT_SOURCE, root=data_dir)


def kaggle_credentials_present() -> bool:
    """Whether any of the kaggle client's sign-in mechanisms is configured (not whether it is valid)."""
    if os.environ.get("KAGGLE_API_TOKEN") or (os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")):
        return True
    from ..data.download import kaggle_config_path

    folder = kaggle_config_path().parent
    return (folder / "kaggle.json").is_file() or (folder / "access_token").is_file()


def _secrets_to_environment() -> None:
    """Copy Colab secrets named like the kaggle client's variables into the environment."""
    from google.colab import userdata  # type: ignore[import-not-found]

    for name in KAGGLE_SECRETS:
        if os.environ.get(name):
            continue
        try:
            value = userdata.get(name)
        except Exception:  # not set, or this notebook was not granted access to it
            continue
        if value:
            os.environ[name] = value


def _use_drive() -> None:
    """Mount Google Drive and link the course folder's ``data`` and ``runs`` to folders on it, so that
    photos, caches and the checkpoint notebook 04 trains outlive the Colab machine."""
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount(DRIVE_MOUNT)
    for name in ("data", "runs"):
        kept, here = Path(DRIVE_HOME) / name, config.home() / name
        kept.mkdir(parents=True, exist_ok=True)
        if not here.exists() and not here.is_symlink():
            here.symlink_to(kept, target_is_directory=True)
        where = kept if here.resolve() == kept.resolve() else f"{here} (already there, not on Drive)"
        print(f"{name}: {where}")
