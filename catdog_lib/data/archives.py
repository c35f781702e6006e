"""Unpacking downloaded archives safely, and publishing a finished folder.

Every member is checked before anything is written: no absolute name or one that climbs out of the destination,
no link, device or FIFO, no zip bomb. What is extracted goes to a temporary folder beside the destination
(:func:`staging`) and is moved in only when complete (:func:`merge_into`), so a failure leaves nothing half-done.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..errors import CatdogError


def _unsafe(archive: Path, dest: Path, name: str, why: str) -> CatdogError:
    return CatdogError(
        f"{archive}: refusing to extract member {name!r}: {why}. Nothing was written to {dest}; "
        "the archive is damaged or unsafe, delete it and download it again."
    )


def _check_name(archive: Path, dest: Path, name: str) -> None:
    """Reject member names that are absolute or climb out of the destination."""
    posix = name.replace("\\", "/")
    if PurePosixPath(posix).is_absolute() or PureWindowsPath(name).drive:
        raise _unsafe(archive, dest, name, "it has an absolute path")
    normal = os.path.normpath(posix)
    if normal == ".." or normal.startswith("../"):
        raise _unsafe(archive, dest, name, f"it would be written outside {dest}")


_SPECIAL_KINDS = {
    stat.S_IFLNK: "it is a symbolic link",
    stat.S_IFCHR: "it is a device file",
    stat.S_IFBLK: "it is a device file",
    stat.S_IFIFO: "it is a FIFO",
    stat.S_IFSOCK: "it is a socket",
}


def _tar_kind_problem(member: tarfile.TarInfo) -> str | None:
    if member.issym():
        return "it is a symbolic link"
    if member.islnk():
        return "it is a hard link"
    if member.isdev():
        return "it is a device file or FIFO"
    if not (member.isfile() or member.isdir()):
        return "it is not a regular file or folder"
    return None


def _corrupt(archive: Path, error: object) -> CatdogError:
    return CatdogError(f"{archive}: corrupt or incomplete archive ({error}). Delete it and download it again.")


@contextmanager
def staging(dest: Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``dest``, removed afterwards whatever happens."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def merge_into(source: Path, dest: Path) -> None:
    """Move everything in ``source`` into ``dest``, merging folders and replacing same-named files."""
    dest.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        target = dest / entry.name
        if entry.is_dir() and target.is_dir() and not target.is_symlink():
            merge_into(entry, target)
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        shutil.move(str(entry), str(target))


# Zip bombs: photos barely compress (JPEG ~1:1), so a member over 1 MiB compressed more than 100:1, or more than
# 16 GiB in all (the datasets here unpack to ~1 GB), is refused before anything is written. zipfile stops reading
# a member at its declared size (a longer one fails its CRC), so the declared sizes bound what is written.
MAX_EXTRACTED_BYTES = 16 << 30
MAX_RATIO = 100
RATIO_FROM_BYTES = 1 << 20


def _check_zip_sizes(archive: Path, dest: Path, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse a zip whose members would unpack to too much, or one member compressed like a bomb."""
    for info in infos:
        if info.file_size > RATIO_FROM_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise _unsafe(archive, dest, info.filename, f"it unpacks to {info.file_size:,} bytes from "
                          f"{info.compress_size:,}, over {MAX_RATIO}:1 (a zip bomb; photos barely compress)")
    total = sum(info.file_size for info in infos)
    if total > MAX_EXTRACTED_BYTES:
        raise _unsafe(archive, dest, infos[-1].filename, f"the archive unpacks to {total:,} bytes in all, over the "
                      f"{MAX_EXTRACTED_BYTES >> 30} GiB limit")


def extract_zip(archive: Path, dest: Path) -> Path:
    """Extract a zip into ``dest`` after checking every member (names, kinds, sizes); raises CatdogError on
    unsafe or corrupt ones."""
    archive, dest = Path(archive), Path(dest)
    try:
        with zipfile.ZipFile(archive) as bundle:
            for info in bundle.infolist():
                _check_name(archive, dest, info.filename)
                kind = _SPECIAL_KINDS.get(stat.S_IFMT(info.external_attr >> 16))
                if kind:
                    raise _unsafe(archive, dest, info.filename, kind)
            _check_zip_sizes(archive, dest, bundle.infolist())
            with staging(dest) as staged:
                bundle.extractall(staged)
                merge_into(staged, dest)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise _corrupt(archive, error) from None
    return dest


def extract_tar(archive: Path, dest: Path) -> Path:
    """Extract a (compressed) tar into ``dest`` after checking every member, like ``extract_zip``."""
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as bundle:
            members = bundle.getmembers()
            for member in members:
                _check_name(archive, dest, member.name)
                kind = _tar_kind_problem(member)
                if kind:
                    raise _unsafe(archive, dest, member.name, kind)
            with staging(dest) as staged:
                if hasattr(tarfile, "data_filter"):  # Python >= 3.10.12 / 3.11.4: belt and braces
                    bundle.extractall(staged, members=members, filter="data")
                else:
                    bundle.extractall(staged, members=members)
                merge_into(staged, dest)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as error:
        raise _corrupt(archive, error) from None
    return dest
