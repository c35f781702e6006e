"""Peak memory of a benchmark part: each part runs in a fresh spawned process, and its result gains that
process's peak RSS (getrusage) and the peak PSS of the process together with its data-loading workers,
sampled every second, so that what one part leaves behind never counts against the next.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


def process_rss_bytes() -> int:
    """Peak resident bytes of this process alone (getrusage; KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def _descendants(pid: int) -> list[int]:
    """Live child processes of ``pid``, recursively (Linux /proc)."""
    found = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            for child in map(int, children.read_text().split()):
                found += [child, *_descendants(child)]
    return found


def _pss_bytes(pid: int) -> int:
    """Proportional set size of ``pid``: its resident memory, pages shared with others counted pro rata."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Samples the PSS of this process plus its data workers every ``interval`` seconds; keeps the peak.

    getrusage's RUSAGE_CHILDREN cannot give this: it only sees finished children, and a process
    inherits its parent's value. Forked workers share pages with their parent; PSS counts them once.
    """

    def __init__(self, interval: float = 1.0):  # reading PSS walks page tables: ~10-30 ms per GB
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        """Add one reading of the process tree's PSS."""
        pid = os.getpid()
        self.peak_bytes = max(self.peak_bytes, sum(map(_pss_bytes, [pid, *_descendants(pid)])))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh spawned process; its result gains that process's peak memory."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_with_peak_memory, fn, *args).result()


def _with_peak_memory(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` plus the peak memory of the process that ran it (alone, and with its workers)."""
    with PeakMemory() as tree:
        result = fn(*args)
    own = process_rss_bytes()
    return {**result, "memory": {"process_rss_bytes": own, "tree_pss_bytes": tree.peak_bytes,
                                 "bytes": max(own, tree.peak_bytes)}}
