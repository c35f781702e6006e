"""A Dataset over (path, label) samples that skips bad images instead of dying mid-epoch."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from .images import WARNINGS_LOCK, BadImageError, load_rgb
from .layout import Sample

Problem = tuple[str, str]  # (path, why it cannot be used)


class ImageSamples(Dataset):
    """Images from a list of (path, label). A bad file yields (None, label, (path, reason)), never an exception.

    With ``view_ids``, sample i is ``transform(image, view_ids[i])`` (a :class:`features.ViewSet`'s
    ``view``: which view was decided up front, so no random numbers are drawn from the global
    generator here). Defined here, not in a notebook, so DataLoader workers can import it on
    spawn-based platforms (macOS, Windows) without hanging the kernel.
    """

    def __init__(self, samples: Sequence[Sample], transform: Callable, min_size: int | None = None,
                 view_ids: Sequence[int] | None = None):
        self.samples = list(samples)
        self.transform = transform
        self.min_size = min_size
        self.view_ids = list(view_ids) if view_ids is not None else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int, Problem | None]:
        path, label = self.samples[index]
        try:
            image = load_rgb(path, self.min_size)
        except BadImageError as error:
            return None, label, (str(path), str(error))
        if self.view_ids is None:
            return self.transform(image), label, None
        return self.transform(image, self.view_ids[index]), label, None


def collate_skipping_bad(batch: list) -> tuple[torch.Tensor, torch.Tensor, list[Problem]]:
    """Collate the good images of a batch; return the bad ones' (path, reason) beside them.

    default_collate builds the batch straight in shared memory inside a worker; a plain torch.stack
    there is copied again on the way out and fragments the worker's heap (~0.8 MB kept per photo).
    """
    good = [(image, label) for image, label, _ in batch if image is not None]
    problems = [problem for image, _, problem in batch if image is None]
    if not good:
        return torch.empty(0), torch.empty(0, dtype=torch.long), problems
    images, labels = default_collate(good)
    return images, labels, problems


class SkippedFiles:
    """Warns once per bad file (in the main process) and remembers them for reports."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def add(self, problems: Iterable[Problem]) -> None:
        for path, reason in problems:
            if path not in self.reasons:
                self.reasons[path] = reason
                with WARNINGS_LOCK:  # not while a prefetch thread decodes (see images.WARNINGS_LOCK)
                    warnings.warn(f"skipping bad image {reason}", stacklevel=2)

    def paths(self) -> list[str]:
        return sorted(self.reasons)


def default_num_workers() -> int:
    """Decoding workers that are safe everywhere and pay off.

    Zero inside an interactive kernel on spawn-based platforms (macOS, Windows), where each worker
    re-imports the notebook's main module. Zero on machines with 2 cores or fewer, where a worker
    competes with the compute threads (measured on 2 cores: 63 vs 70 forward passes/s with one).
    Otherwise up to 4 workers, leaving the compute threads most of the cores.
    """
    interactive = not hasattr(sys.modules.get("__main__"), "__file__")
    if interactive and sys.platform in {"darwin", "win32"}:
        return 0
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores // 2)


FORKSERVER_PRELOAD = ["__main__", "catdog_lib.datasets", "catdog_lib.features"]  # imported once, not per worker


def _forkserver() -> multiprocessing.context.BaseContext:
    """The forkserver context, its server started single-threaded with catdog's modules already imported.

    On import, only NumPy's OpenBLAS starts threads (one per core less one): held to one while the server starts,
    so its forks are not warned about either. Starting the server costs once per process what importing torch
    costs; then a loader's first batch (2 workers, 2 busy cores) came in 1.3 s, 1.9 s by fork, 15 s when each
    worker imported torch itself.
    """
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(FORKSERVER_PRELOAD)
    before = os.environ.get("OPENBLAS_NUM_THREADS")
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    try:
        forkserver.ensure_running()
    finally:
        if before is None:
            os.environ.pop("OPENBLAS_NUM_THREADS", None)
        else:
            os.environ["OPENBLAS_NUM_THREADS"] = before
    return context


def worker_context(dataset: Dataset) -> multiprocessing.context.BaseContext | None:
    """How DataLoader workers start: never by a plain fork, which Python 3.12+ warns about ("This process is
    multi-threaded, use of fork() may lead to deadlocks in the child": importing NumPy alone starts threads).

    The program's own start method if it set one other than fork (``multiprocessing.set_start_method``); else a
    fork server on Linux (see :func:`_forkserver`), the platform's "spawn" elsewhere. All send the dataset to
    the workers pickled: None (then no workers) where it cannot travel, such as a lambda, or a class defined
    in a notebook, whose ``__main__`` a worker cannot import.
    """
    try:
        data = pickle.dumps(dataset)
    except (pickle.PicklingError, AttributeError, TypeError):
        return None
    if b"__main__" in data and not hasattr(sys.modules.get("__main__"), "__file__"):
        return None
    method = multiprocessing.get_start_method(allow_none=True)
    if method in (None, "fork"):
        method = "forkserver" if sys.platform.startswith("linux") else "spawn"
    return _forkserver() if method == "forkserver" else multiprocessing.get_context(method)


def capped_batch_size(batch_size: int, n_samples: int) -> int:
    """A batch no larger than the data (``--batch-size 100000`` on 96 photos: batches of 96)."""
    return max(1, min(batch_size, n_samples))


def make_loader(
    samples: Sequence[Sample],
    transform: Callable,
    batch_size: int,
    shuffle: bool = False,
    num_workers: int | None = None,
    min_size: int | None = None,
    generator: torch.Generator | None = None,
    view_ids: Sequence[int] | None = None,
) -> DataLoader:
    """A DataLoader over ImageSamples whose batches are (images, labels, bad files' (path, reason))."""
    workers = default_num_workers() if num_workers is None else num_workers
    dataset = ImageSamples(samples, transform, min_size, view_ids)
    context = worker_context(dataset) if workers else None
    return DataLoader(
        dataset,
        batch_size=capped_batch_size(batch_size, len(samples)),
        shuffle=shuffle,
        num_workers=workers if context else 0,
        multiprocessing_context=context,
        collate_fn=collate_skipping_bad,
        generator=generator,
        persistent_workers=False,
    )


def iterate_good(loader: DataLoader, skipped: SkippedFiles) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of good images and labels; bad files go to ``skipped`` (warned once each)."""
    for images, labels, problems in loader:
        skipped.add(problems)
        if len(labels):
            yield images, labels
