"""File names from outside (uploads, URLs, --out) made safe to create, and paths made safe to print."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from .errors import CatdogError

NAME_MAX = 255  # bytes in one file name on Linux and macOS file systems (ext4, XFS, APFS); 255 characters on NTFS


def name_bytes(name: str) -> int:
    return len(os.fsencode(name))


def fit_name(name: str, fallback: str = "photo", limit: int = NAME_MAX - 16) -> str:
    """``name`` as a file name to create in a folder of ours: no folder part, no ``..`` or NUL, and shortened
    (its extension kept) to ``limit`` bytes, leaving room for a prefix. ``fallback`` when nothing is left."""
    name = name.replace("\0", "")
    name = PureWindowsPath(PurePosixPath(name.replace("\\", "/")).name).name.strip()
    if name in {"", ".", ".."}:
        return fallback
    stem, suffix = os.path.splitext(name)
    if name_bytes(suffix) > 16:
        stem, suffix = name, ""
    while name_bytes(stem + suffix) > limit:
        stem = stem[:-1]
    return (stem + suffix) if stem.strip(". ") else fallback + suffix


def check_name_length(path: Path, what: str) -> None:
    """A CatdogError when ``path``'s last part is longer than a file name may be."""
    if name_bytes(path.name) > NAME_MAX:
        raise CatdogError(f"{str(path)[:80]}...: the file name is {name_bytes(path.name)} bytes long, over the "
                          f"{NAME_MAX}-byte limit of file systems; choose a shorter {what}.")


def printable(text: str, tsv: bool = False) -> str:
    """``text`` writable to any UTF-8 stream: a name that is not valid UTF-8 (lone surrogates from the file
    system) keeps its bytes as ``\\udcXX`` escapes; with ``tsv``, tabs and line breaks as ``\\t``, ``\\n``, ``\\r``."""
    if tsv:
        text = text.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
