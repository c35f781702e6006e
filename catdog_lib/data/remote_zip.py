"""The course's photos straight out of the PetImages zip on the server, with HTTP range requests.

A zip ends with its central directory: the name, offset, size and CRC-32 of every member. One request
reads it; then only the photos the course uses are fetched (members close together in one request), each
decompressed and checked against its CRC-32, each checked as an image. About 3,000 photos (~95 MB) instead
of the whole 787 MB zip. The photos are those ``download`` picks from the whole zip, by the rule in
``petimages``: in natural name order per class, every ``TEST_EVERY``-th held out for the test set, the first
``COURSE_TRAIN_PER_CLASS`` and ``COURSE_TEST_PER_CLASS`` kept (a damaged photo is replaced by the next one).
Empty members count as unusable from the directory alone; a damaged photo that the course would not have used
is never fetched, so with one among the first photos the choice can differ by a photo. Requests go through
``web``; a server that cannot be reached is the caller's (``download``) to explain.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from .. import web
from ..errors import CatdogError
from . import petimages
from .archives import merge_into, staging
from .images import image_problem
from .layout import IMAGE_EXTENSIONS, is_hidden_or_junk, natural_key

TAIL_BYTES = (1 << 16) + 22  # the end-of-central-directory record lies in the last 64 KiB + 22 bytes
SLACK = 1024  # read past a member's expected end: its local header may carry a longer extra field
GAP = 1 << 16  # members less than this apart are fetched in one request
MAX_REQUEST = 8 << 20  # bytes per request at most (the pieces are held in memory)
CLASSES = (("Cat", "cats"), ("Dog", "dogs"))


class NoRanges(Exception):
    """The server does not answer range requests (or the zip needs ZIP64): download the whole file."""


class _Missing(Exception):
    """A read outside the fetched pieces: bytes ``start`` to ``end`` are needed."""

    def __init__(self, start: int, end: int):
        super().__init__(start, end)
        self.start, self.end = start, end


class SparseFile(io.RawIOBase):
    """A read-only, seekable file of ``size`` bytes of which only the fetched pieces can be read."""

    def __init__(self, size: int):
        super().__init__()
        self.size, self.pieces, self.pos = size, {}, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.pos = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self.pos + n)
        for start, data in self.pieces.items():
            if start <= self.pos and end <= start + len(data):
                chunk = data[self.pos - start:end - start]
                self.pos = end
                return chunk
        raise _Missing(self.pos, end)


def get_range(url: str, start: int, end: int | None = None) -> tuple[int, bytes, int]:
    """Bytes ``start``..``end`` (inclusive) of ``url``, or its last ``-start`` bytes: (offset, data, total size).
    Raises NoRanges when the server answers with anything but those bytes."""
    answer = web.get_range(url, start, end)
    if answer is None:
        raise NoRanges(url)
    return answer


def central_directory(url: str) -> tuple[zipfile.ZipFile, SparseFile]:
    """The zip at ``url`` opened from its central directory alone (two requests at most)."""
    first, tail, total = get_range(url, -TAIL_BYTES)
    sparse = SparseFile(total)
    sparse.pieces[first] = tail
    record = tail.rfind(b"PK\x05\x06")
    if record < 0 or len(tail) < record + 22:
        raise CatdogError(f"{url}: not a zip file (no end-of-central-directory record). Check the URL.")
    _, _, _, _, entries, size, offset, _ = struct.unpack("<4s4H2LH", tail[record:record + 22])
    if 0xFFFFFFFF in (size, offset) or entries == 0xFFFF:
        raise NoRanges(url)  # ZIP64: rare, and zipfile reads it from the whole file
    if offset < first:
        start, data, _ = get_range(url, offset, first - 1)
        sparse.pieces[start] = data
    try:
        return zipfile.ZipFile(sparse), sparse
    except (zipfile.BadZipFile, _Missing) as error:
        raise CatdogError(f"{url}: a damaged zip directory ({error}). Run again, or use another source.") from None


def _is_photo(info: zipfile.ZipInfo, folder: str) -> bool:
    path = PurePosixPath(info.filename)
    return (path.parent == PurePosixPath("PetImages") / folder and path.suffix.lower() in IMAGE_EXTENSIONS
            and not is_hidden_or_junk(Path(path.name)) and info.file_size > 0)


def course_plan(infos: list[zipfile.ZipInfo], bad: set[str]) -> dict[str, tuple[str, str]]:
    """{member name: (split folder, class folder)} of the photos the course uses, ``bad`` ones left out."""
    wanted = {"training_set": petimages.COURSE_TRAIN_PER_CLASS, "test_set": petimages.COURSE_TEST_PER_CLASS}
    plan = {}
    for folder, name in CLASSES:
        photos = sorted((i.filename for i in infos if _is_photo(i, folder) and i.filename not in bad),
                        key=lambda member: natural_key(Path(member)))
        counts = {"training_set": 0, "test_set": 0}
        for index, member in enumerate(photos, start=1):
            split = petimages.split_of(index)
            if counts[split] < wanted[split]:
                plan[member] = (split, name)
                counts[split] += 1
            if counts == wanted:
                break
    return plan


def _groups(infos: list[zipfile.ZipInfo], limit: int) -> Iterator[tuple[int, int, list[zipfile.ZipInfo]]]:
    """(first byte, last byte, members) of the requests that fetch ``infos``: neighbours share one."""
    group: list[zipfile.ZipInfo] = []
    start = end = 0
    for info in sorted(infos, key=lambda i: i.header_offset):
        stop = min(limit, info.header_offset + 30 + len(info.orig_filename.encode()) + len(info.extra)
                   + info.compress_size + SLACK)
        if group and (info.header_offset - end > GAP or stop - start > MAX_REQUEST):
            yield start, end - 1, group
            group = []
        if not group:
            start = info.header_offset
        group.append(info)
        end = max(end, stop)
    if group:
        yield start, end - 1, group


def _read_member(url: str, bundle: zipfile.ZipFile, sparse: SparseFile, info: zipfile.ZipInfo) -> bytes:
    """The member's bytes, decompressed and checked against its CRC-32 (by zipfile)."""
    for _ in range(2):
        try:
            return bundle.read(info)
        except _Missing as missing:  # a local header longer than expected
            start, data, _ = get_range(url, missing.start, missing.end + SLACK)
            sparse.pieces[start] = data
        except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError) as error:  # bad CRC-32, bad data
            raise _damaged(url, info, error) from None
    raise _damaged(url, info, "its local header does not match the directory")


def _damaged(url: str, info: zipfile.ZipInfo, error: object) -> CatdogError:
    return CatdogError(f"{url}: {info.filename} arrived damaged ({error}); nothing was kept. Run the same "
                       "command again; if it keeps failing, use --source kaggle or the whole zip (--all-photos).")


def fetch_members(url: str, bundle: zipfile.ZipFile, sparse: SparseFile, members: list[str], pool: Path,
                  progress: bool) -> None:
    """Write ``members`` of the remote zip into ``pool`` (as pool/Cat/1.jpg), each checked by its CRC-32."""
    limit = bundle.start_dir
    infos = [bundle.getinfo(member) for member in members]
    with tqdm(total=len(infos), desc="course photos", unit="img", disable=not progress) as bar:
        for start, end, group in _groups(infos, limit):
            first, data, _ = get_range(url, start, end)
            sparse.pieces = {key: value for key, value in sparse.pieces.items() if key >= limit}  # the directory
            sparse.pieces[first] = data
            for info in group:
                target = pool / PurePosixPath(info.filename).relative_to("PetImages")  # pool/Cat/1.jpg
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(_read_member(url, bundle, sparse, info))
                bar.update(1)


def _pooled(work: Path, member: str) -> Path:
    return work / "pool" / PurePosixPath(member).relative_to("PetImages")


def course_photos(url: str, dest: Path, progress: bool = True) -> Path:
    """Put the course's photos from the PetImages zip at ``url`` into ``dest/{training_set,test_set}/{cats,dogs}``
    with range requests; raises NoRanges when the server cannot (the caller downloads the whole zip)."""
    bundle, sparse = central_directory(url)
    bad: set[str] = set()
    with bundle, staging(dest) as work:
        fetched: set[str] = set()
        while True:
            plan = course_plan(bundle.infolist(), bad)
            todo = sorted(set(plan) - fetched)
            if not todo:
                break
            fetch_members(url, bundle, sparse, todo, work / "pool", progress)
            fetched |= set(todo)
            bad |= {member for member in todo if image_problem(_pooled(work, member))}
        if not plan:
            raise CatdogError(f"{url}: no PetImages/Cat or PetImages/Dog photos in this zip; it is not the "
                              "expected archive.")
        for member, (split, name) in plan.items():
            target = work / "out" / split / name / PurePosixPath(member).name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(_pooled(work, member), target)
        merge_into(work / "out", dest)
    if bad:
        print(f"Skipped {len(bad)} unusable photo(s): {', '.join(sorted(bad)[:petimages.MAX_NAMED_SKIPS])}")
    return dest
