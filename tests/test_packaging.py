"""pyproject.toml and environment.yml name the same packages with the same ranges."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return dict(re.match(r"([A-Za-z0-9_.-]+)(.*)", r).groups() for r in requirements)


def _environment_requirements() -> dict[str, str]:
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = lines.index("  - pip:")
    pins = [line.split("#")[0].strip()[2:].strip() for line in lines[start + 1:] if line.strip().startswith("- ")]
    return dict(re.match(r"([A-Za-z0-9_.-]+)(.*)", p).groups() for p in pins)


def test_environment_yml_and_pyproject_agree():
    assert _environment_requirements() == _pyproject_requirements()


def test_every_pin_has_a_comment():
    for path in (ROOT / "pyproject.toml", ROOT / "environment.yml"):
        for line in path.read_text().splitlines():
            if re.match(r'\s*(- |")[A-Za-z0-9_.-]+[><=]=', line):
                assert "#" in line, f"{path.name}: no comment on {line.strip()}"


def test_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"catdog": "catdog_lib.cli:main"}
