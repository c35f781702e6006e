"""catdog_lib's layers (catdog_lib/README.md): every import, function-level and type-only ones included, points
down, and no two modules import each other, even through others.

data < model < train, infer (neither imports the other) < classroom < cli; the ground-floor modules at the top
(errors, config, files, ...) import only each other. Inside the library a module imports from its home
(``catdog_lib.model.backbones``), never by the short name the notebooks use (``from catdog_lib import backbones``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIB = REPO / "catdog_lib"
LEVEL = {"": 0, "data": 1, "model": 2, "train": 3, "infer": 3, "classroom": 4}
ENTRY = {"catdog_lib.cli", "catdog_lib.__main__"}  # the command line sits on top of everything


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = REPO / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """The catdog_lib modules ``path`` imports anywhere in it (``from pkg import module`` names the module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("catdog_lib")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            if base.split(".")[0] != "catdog_lib":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if is_module(candidate) or alias.name in SHORT_NAMES else base)
    return found - {name}


def package_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 else ""


SOURCES = sorted(LIB.rglob("*.py"))
SHORT_NAMES = {path.stem for path in SOURCES if path.parent != LIB}
GRAPH = {module_name(path): imports(path) for path in SOURCES}


def test_the_graph_is_read_from_every_module_and_sees_function_level_imports():
    assert len(GRAPH) > 40 and "catdog_lib.data.layout" in GRAPH
    assert "catdog_lib.infer.export" in GRAPH["catdog_lib.cli"]  # imported inside a function in cli.py


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_every_import_points_down(name):
    if name in ENTRY or name == "catdog_lib":
        return
    here = package_of(name)
    for target in sorted(GRAPH[name]):
        assert is_module(target), f"{name} imports {target}: import it from its home sub-package"
        there = package_of(target)
        if target == "catdog_lib" or there == here:
            continue
        assert LEVEL[there] < LEVEL[here], f"{name} ({here or 'ground floor'}) imports {target} ({there}): an arrow up"


def test_no_import_cycle():
    done, stack = set(), []

    def visit(name: str) -> None:
        if name in stack:
            pytest.fail("import cycle: " + " -> ".join(stack[stack.index(name):] + [name]))
        if name in done:
            return
        stack.append(name)
        for target in sorted(GRAPH.get(name, ())):
            visit(target)
        stack.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)


def test_every_sub_package_ships_in_the_wheel():
    import tomllib

    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {module_name(path) for path in LIB.glob("*/__init__.py")}
    assert on_disk and on_disk <= listed, f"add {sorted(on_disk - listed)} to pyproject.toml's packages"


def test_each_module_has_one_short_name_that_reaches_its_home():
    import catdog_lib

    in_packages = {path.stem: path.parent.name for path in SOURCES if path.parent != LIB and path.stem != "__init__"}
    homes = {module: package for package, modules in catdog_lib.HOMES.items() for module in modules}
    assert homes == in_packages
    assert not set(homes) & {path.stem for path in LIB.glob("*.py")}, "a short name shadows a top module"
    assert catdog_lib.layout is __import__("catdog_lib.data.layout", fromlist=["x"])
    with pytest.raises(AttributeError):
        catdog_lib.no_such_module  # noqa: B018
