"""A normal, non-editable install: build the wheel, install it into a fresh virtual environment that
reuses this environment's packages (so nothing is downloaded), and run the course from an empty folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import REPO, subprocess_env

SOURCES = ("pyproject.toml", "README.md", "LICENSE", "catdog_lib", "notebooks")


def _tree_state(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (building writes build/ and *.egg-info beside them)."""
    work = tmp_path_factory.mktemp("wheel")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, work / "src" / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (work / "src").mkdir(exist_ok=True)
            shutil.copy2(source, work / "src" / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                             "-w", str(work / "dist"), str(work / "src")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (built,) = (work / "dist").glob("catdog_course-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> Path:
    """A fresh venv that sees this environment's packages (a .pth line) and has the wheel installed."""
    env = tmp_path_factory.mktemp("venv") / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "shared-packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                             "--no-index", "--quiet", str(wheel)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return env


def _env(**extra: str) -> dict[str, str]:
    env = subprocess_env(**extra)
    for name in ("PYTHONPATH", "CATDOG_HOME", "CATDOG_RUNS_DIR", "CATDOG_CACHE_DIR", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def test_wheel_holds_the_notebooks_license_and_metadata(wheel: Path):
    import zipfile

    with zipfile.ZipFile(wheel) as bundle:
        names = set(bundle.namelist())
        metadata = bundle.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    from catdog_lib.config import NOTEBOOK_NAMES

    assert {f"catdog_lib/notebooks/{name}" for name in NOTEBOOK_NAMES} <= names
    assert any(name.endswith("/licenses/LICENSE") for name in names)
    assert "Name: catdog-course" in metadata and "License-Expression: MIT" in metadata
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    for server_side in ("jupyterlab", "ipykernel", "nbclient", "nbconvert", "kaggle"):
        assert not any(server_side in line for line in required), server_side


def test_installing_where_the_dependencies_are_installs_only_the_course(wheel: Path, tmp_path: Path):
    """As on Colab: with its dependencies present, the install adds one package and upgrades none."""
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--quiet",
                             "--report", str(report), str(wheel)], capture_output=True, text=True, timeout=300,
                            env=_env())
    assert result.returncode == 0, result.stderr
    installs = [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]]
    assert installs == ["catdog-course"]


def test_wheel_runs_the_fast_course_from_an_empty_folder(installed: Path, tmp_path: Path):
    python, catdog = installed / "bin" / "python", installed / "bin" / "catdog"
    purelib = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    before = _tree_state(purelib)
    folder = tmp_path / "empty"
    folder.mkdir()
    # The reused packages' data files (nbconvert's templates, kernel specs) live under this environment's prefix.
    env = _env(JUPYTER_PATH=str(Path(sys.prefix) / "share" / "jupyter"))

    where = subprocess.run([python, "-c", "import catdog_lib; print(catdog_lib.__file__)"], cwd=folder, env=env,
                           capture_output=True, text=True, timeout=60)
    assert where.stdout.strip().startswith(str(installed)), where  # the wheel's copy, not this checkout's
    version = subprocess.run([python, "-m", "catdog_lib", "--version"], cwd=folder, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("catdog 0."), version.stderr

    course = subprocess.run([catdog, "course", "--fast", "--offline"], cwd=folder, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, timeout=1800)  # one stream: what the screen shows
    assert course.returncode == 0, course.stdout[-3000:]
    assert "without encryption" not in course.stdout
    assert course.stdout.rstrip().splitlines()[-1].endswith("all notebooks ran")  # the summary comes last
    (run,) = [p for p in (folder / "runs").iterdir() if p.is_dir() and p.name != "course"]
    assert len(list(run.glob("*.html"))) == 6 and (folder / "runs" / "course" / "best.pt").is_file()
    assert (folder / "data").is_dir()
    assert _tree_state(purelib) == before  # nothing written inside site-packages
