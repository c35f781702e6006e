"""`make repository URL=https://github.com/OWNER/NAME`: name the course's repository in one place.

Sets ``REPOSITORY`` in catdog_lib/classroom/notebook.py and rewrites every copy of the old URL in the checkout: the
README, pyproject's URLs and each notebook's Colab badge and install cell, in notebooks/, the Korean edition
(notebooks/ko/) and the executed editions (docs/executed/, docs/executed/ko/); they are regenerated, so they also
pin the release tag of the package's version, ``v{version}``. Without URL it only regenerates the badges and install cells (after a version bump).

    python tools/repository.py [URL] [--root CHECKOUT]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

URL = re.compile(r"https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")
SETTING = re.compile(r'^REPOSITORY = "([^"]*)"$', re.MULTILINE)
TEXT_SUFFIXES = {".md", ".toml", ".py", ".yml", ".yaml", ".cfg", ".txt"}
SKIPPED = {".git", ".venv", "venv", "build", "data", "runs", "student", "node_modules", "__pycache__"}


def text_files(root: Path) -> list[Path]:
    """The checkout's text files that may name the repository (not data, runs, builds or the student copy)."""
    return sorted(path for path in root.rglob("*") if path.suffix in TEXT_SUFFIXES and path.is_file()
                  and not SKIPPED & set(path.relative_to(root).parts[:-1]) and not path.name.endswith(".egg-info"))


def rewrite_text(text: str, old: str, new: str, release: str) -> str:
    """``old`` becomes ``new``; a pip requirement from it (``git+URL[@REF]``) and a Colab link to it pin ``release``."""
    text = re.sub(rf"git\+{re.escape(old)}(?:@[A-Za-z0-9_.-]+)?", f"git+{new}@{release}", text)
    owner_name, new_owner_name = (url.removeprefix("https://github.com/") for url in (old, new))
    text = re.sub(rf"colab\.research\.google\.com/github/{re.escape(owner_name)}/blob/[A-Za-z0-9_.-]+/",
                  f"colab.research.google.com/github/{new_owner_name}/blob/{release}/", text)  # Colab badges in a README
    return re.sub(rf"{re.escape(old)}(?![A-Za-z0-9_.-])", new, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="https://github.com/OWNER/NAME")
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parent.parent)
    args = parser.parse_args(argv)
    root = args.root.resolve()
    new = (args.url or "").strip().removesuffix("/").removesuffix(".git")
    if args.url is not None and not URL.fullmatch(new):
        print(f"repository: {args.url!r} is not a GitHub repository URL; give one like "
              "URL=https://github.com/OWNER/NAME", file=sys.stderr)
        return 2
    sys.path.insert(0, str(root))
    import nbformat

    from catdog_lib import notebook

    old = SETTING.search((root / "catdog_lib" / "classroom" / "notebook.py").read_text()).group(1)
    new = new or old
    changed = []
    for path in text_files(root):
        text = path.read_text(encoding="utf-8")
        if (updated := rewrite_text(text, old, new, notebook.RELEASE)) != text:
            path.write_text(updated, encoding="utf-8")
            changed.append(path)
    # The executed edition (docs/executed/) holds the same badges and install cells, outputs beside them.
    # The Korean edition (notebooks/ko/ and docs/executed/ko/, generated) opens the Korean notebooks.
    editions = [root / "notebooks", root / "docs" / "executed"]
    for path in sorted(path for folder in editions for path in [*folder.glob("*.ipynb"), *folder.glob("ko/*.ipynb")]):
        nb = nbformat.read(path, as_version=4)
        before = nbformat.writes(nb)
        notebook.set_links(nb, path.name, new, "notebooks/ko" if path.parent.name == "ko" else "notebooks")
        if nbformat.writes(nb) != before:
            nbformat.write(nb, path)
            changed.append(path)
    print(f"repository: {new} at {notebook.RELEASE}; rewrote {len(changed)} file(s)"
          + "".join(f"\n  {path.relative_to(root)}" for path in changed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
