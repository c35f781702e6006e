"""Backbone features computed once per photo and view, cached on disk by file content.

In the ``features`` recipe the backbone is frozen, so its output for a given input never changes:
computing it once per *view* of a photo and training the head on the cached vectors gives the same
head as pushing every photo through the whole network every epoch, in a fraction of the time.

A random training transform cannot be cached as such, so :func:`training_views` turns it into a
fixed set of views per photo and each epoch picks one of them:

- the tutorial's transform (deterministic steps plus ``RandomHorizontalFlip(p)``): two views, plain
  and mirrored, and each epoch mirrors a photo with probability ``p`` -- exactly the same training
  as the flip inside a DataLoader;
- any other random step (``RandomResizedCrop``, ``ColorJitter``, ...): ``random_views`` seeded draws
  of the whole transform per photo, and each epoch picks one at random -- an approximation, said
  so when it happens (the ``whole`` recipe draws afresh for every batch instead).

The backbone runs on the fastest exact inference engine installed (:mod:`catdog_lib.model.engine`), while
a background thread decodes the next photos. The cache is keyed by the file's content, the backbone's
weights, the engine and its precision, and each view's transform (its ``repr``), so an edited
transform never reuses stale features.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import json
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms as T
from tqdm.auto import tqdm

from ..data import images
from ..data.datasets import SkippedFiles, iterate_good, make_loader
from ..data.images import BadImageError, load_rgb
from ..data.layout import Sample
from ..data.prefetch import prefetched
from ..errors import CatdogError
from ..files import atomic_write_bytes, file_digest, remove_stale
from . import cachefiles
from .engine import CALIBRATION_PHOTOS, QUANTIZE_FROM, BackboneRunner, backbone_runner, engine_identity

RANDOM_VIEWS = 4  # views cached per photo when the training transform is random beyond a flip
# Steps that do the same thing every time: a transform made of these (and a flip) needs two views.
DETERMINISTIC_STEPS = (T.Resize, T.CenterCrop, T.ToTensor, T.PILToTensor, T.ConvertImageDtype, T.Normalize,
                       T.Grayscale)


@dataclass(frozen=True)
class ViewSet:
    """The fixed views of each photo that the features recipe caches, and how an epoch picks one.

    ``flip_p`` set: views are (plain, mirrored) and an epoch mirrors with probability ``flip_p``;
    otherwise an epoch picks one of the views uniformly.
    """

    base: Callable[[Image.Image], torch.Tensor]
    names: tuple[str, ...]
    flip_p: float | None = None
    seed: int = 0

    def view(self, image: Image.Image, index: int) -> torch.Tensor:
        """View ``index`` of a photo: the base transform, mirrored, or a random draw seeded by the photo."""
        if self.flip_p is not None or len(self.names) == 1:
            tensor = self.base(image)
            return tensor.flip(-1) if index == 1 else tensor
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(zlib.crc32(image.tobytes()) * 1009 + self.seed * 101 + index)
            return self.base(image)

    def all(self, image: Image.Image) -> torch.Tensor:
        """Every view of a photo, ``[views, C, H, W]``: each photo is decoded once for all of them."""
        if self.flip_p is not None and len(self.names) == 2:
            tensor = self.base(image)
            return torch.stack([tensor, tensor.flip(-1)])
        return torch.stack([self.view(image, k) for k in range(len(self.names))])

    def picks(self, n: int, seed: int, epoch: int) -> torch.Tensor:
        """Which view each of ``n`` photos shows in ``epoch`` (the same for both recipes)."""
        generator = torch.Generator().manual_seed(seed * 1000 + epoch + 500_000)
        if self.flip_p is not None:
            return (torch.rand(n, generator=generator) < self.flip_p).long()
        return torch.randint(len(self.names), (n,), generator=generator)

    def cache_names(self) -> list[str]:
        """One cache key part per view: the transform's repr and the view, hashed."""
        text = repr(self.base) + f"/flip={self.flip_p is not None}/seed={self.seed}"
        return [hashlib.sha1(f"{text}/{name}".encode()).hexdigest()[:16] for name in self.names]


def _steps(transform: Callable) -> list:
    return list(transform.transforms) if isinstance(transform, T.Compose) else [transform]


def training_views(transform: Callable, random_views: int = RANDOM_VIEWS, seed: int = 0) -> ViewSet:
    """The views to cache for a training transform (see the module docstring)."""
    steps = _steps(transform)
    flips = [step for step in steps if type(step) is T.RandomHorizontalFlip]
    rest = [step for step in steps if type(step) is not T.RandomHorizontalFlip]
    if len(flips) <= 1 and all(isinstance(step, DETERMINISTIC_STEPS) for step in rest):
        p = flips[0].p if flips else 0.0
        return ViewSet(T.Compose(rest), ("plain", "flip") if p > 0 else ("plain",), p, seed)
    random_steps = sorted({type(step).__name__ for step in rest if not isinstance(step, DETERMINISTIC_STEPS)})
    print(f"features recipe: the training transform is random beyond a flip ({', '.join(random_steps)}): "
          f"caching {random_views} augmented views per photo; each epoch picks one of them. "
          "The whole recipe draws a new augmentation every epoch instead.")
    return ViewSet(transform, tuple(f"draw{k}" for k in range(random_views)), None, seed)


def eval_views(transform: Callable) -> ViewSet:
    """One deterministic view per photo, for validation and test."""
    return ViewSet(transform, ("plain",))


def cache_digest(path: Path) -> str:
    """SHA-1 of a file's bytes as a cache key: the same photo under another name hits the same cache entry.

    A file that is not a regular one (a FIFO, a device), is too large for a photo, unreadable or missing gets
    "" (never a cache hit) without being read; decoding it then reports why.
    """
    try:
        return file_digest(path, max_bytes=images.MAX_FILE_BYTES)
    except OSError:
        return ""


_UNWRITABLE: set[Path] = set()  # cache folders already warned about in this process


class FeatureCache:
    """Feature vectors of one backbone + engine and precision (e.g. "openvino:fp32"), stored as shards
    of {"keys": ["digest/view key", ...], "values": one stacked tensor} (a shard of one tensor per key,
    as written before, loads too, ~10x slower)."""

    def __init__(self, root: Path, backbone_id: str, engine: str):
        key = json.dumps({"backbone": backbone_id, "engine": engine}, sort_keys=True)
        self.folder = Path(root) / hashlib.sha1(key.encode()).hexdigest()[:16]

    def load(self) -> dict[str, torch.Tensor]:
        """Every entry of every intact shard this user wrote (:mod:`cachefiles`). A shard whose bytes no longer
        match the checksum in its name is a miss (and removed where allowed); another user's shard, in a cache
        others can write, is left alone and unread: its features could be anything."""
        entries: dict[str, torch.Tensor] = {}
        for shard in sorted(self.folder.glob("*.pt")):
            try:
                data, _ = cachefiles.read_entry(shard)
            except OSError:  # e.g. another user's shard in a shared cache: not ours to judge or delete
                continue
            try:
                if hashlib.sha256(data).hexdigest() != shard.stem:
                    raise ValueError("checksum mismatch")
                shard_entries = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
                if set(shard_entries) == {"keys", "values"}:  # cache keys hold a "/": no clash with the old form
                    shard_entries = dict(zip(shard_entries["keys"], shard_entries["values"].unbind(0)))
                entries.update(shard_entries)
            except Exception:  # a damaged shard is only a cache miss
                with contextlib.suppress(OSError):  # a read-only cache keeps it
                    shard.unlink()
        return entries

    def add(self, entries: dict[str, torch.Tensor]) -> None:
        """Store new entries as one shard named by its SHA-256, readable by the folder's group but writable by
        this user only; a cache that cannot be written only costs speed, so it warns and goes on. This
        user's temporary files of writes killed over an hour ago are removed."""
        if not entries:
            return
        buffer = io.BytesIO()
        torch.save({"keys": list(entries), "values": torch.stack(list(entries.values()))}, buffer)
        data = buffer.getvalue()
        try:
            atomic_write_bytes(self.folder / f"{hashlib.sha256(data).hexdigest()}.pt", data, others_write=False)
        except CatdogError as error:
            if self.folder not in _UNWRITABLE:  # once per folder: every shard after the first fails the same way
                _UNWRITABLE.add(self.folder)
                warnings.warn(f"feature cache not written ({error}); continuing without it. "
                              "Set CATDOG_CACHE_DIR to a writable folder to reuse features next time.", stacklevel=2)
            return
        remove_stale(self.folder.glob(".*.tmp"))


@dataclass
class FeatureSet:
    """Features of the good images among some samples: ``features[view, i]``, ``labels[i]``, ``paths[i]``."""

    features: torch.Tensor
    labels: torch.Tensor
    paths: list[Path]


@torch.inference_mode()
def compute_features(
    runner: BackboneRunner,
    samples: Sequence[Sample],
    views: ViewSet,
    skipped: SkippedFiles,
    min_size: int | None = None,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = True,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, list[int]]:
    """Run the frozen backbone (``runner``, from :func:`engine.backbone_runner`) over every view of ``samples``.

    Each photo is decoded once, in a background thread while the backbone runs on the previous batch.
    Returns features ``[view, good sample, ...]`` (as ``dtype``) and the indices of the good samples.
    """
    indexed = [(path, index) for index, (path, _) in enumerate(samples)]  # label slot carries the index
    loader = make_loader(indexed, views.all, batch_size, num_workers=num_workers, min_size=min_size,
                         generator=torch.Generator().manual_seed(0))
    outputs, kept = [], []
    # leave=True: a bar that closes itself leaves a widget with no saved state ("model not found" on reopening)
    bar = tqdm(total=len(samples), desc="backbone features", unit="img", disable=not progress, leave=True)
    for images, indices in iterate_good(prefetched(loader), skipped):  # images: [batch, view, C, H, W]
        per_view = [runner(images[:, v]) for v in range(images.shape[1])]
        outputs.append(torch.stack(per_view).to(dtype).cpu())
        kept.extend(indices.tolist())
        bar.update(len(indices))
    bar.close()
    return (torch.cat(outputs, dim=1) if outputs else torch.empty(len(views.names), 0, 0)), kept


def calibration_photos(samples: Sequence[Sample], views: ViewSet, n: int = CALIBRATION_PHOTOS,
                       min_size: int | None = None) -> torch.Tensor:
    """The first ``n`` readable photos of ``samples`` in their first view: what an int8 backbone is calibrated on."""
    photos = []
    for path, _ in samples:
        with contextlib.suppress(BadImageError):
            photos.append(views.view(load_rgb(path, min_size), 0))
        if len(photos) == n:
            break
    return torch.stack(photos)


def extract_features(
    backbone: torch.nn.Module,
    backbone_id: str,
    samples: Sequence[Sample],
    views: ViewSet,
    device: torch.device,
    skipped: SkippedFiles,
    cache_root: Path | None = None,
    reduced_precision: bool = True,
    calibrate: bool = False,
    **kwargs,
) -> FeatureSet:
    """Features for every good sample and view, from the cache where possible, computing and caching the rest.

    The engine (:func:`engine.backbone_runner`) is only built when some features are missing. ``calibrate``
    (training photos only): with ``QUANTIZE_FROM`` photos or more to compute, the backbone may be quantized
    to int8, calibrated on the first of them.
    """
    def cached_under(identity: str) -> tuple[dict[str, torch.Tensor], list[int]]:
        known = FeatureCache(cache_root, backbone_id, identity).load() if cache_root else {}
        return known, [i for i in range(len(samples)) if not all(f"{digests[i]}/{name}" in known for name in names)]

    digests = [cache_digest(path) for path, _ in samples]
    names = views.cache_names()
    identity = engine_identity(device, reduced_precision, backbone)
    known, missing = cached_under(identity)
    if missing:
        todo = [samples[i] for i in missing]
        calibration = None
        if calibrate and len(missing) >= QUANTIZE_FROM and len(todo) >= CALIBRATION_PHOTOS:
            calibration = functools.partial(calibration_photos, todo, views, min_size=kwargs.get("min_size"))
        runner = backbone_runner(backbone, backbone_id, device, reduced_precision, calibration=calibration)
        if runner.identity != identity:  # int8 quantized just now, or an engine fell back: its own cache
            identity = runner.identity
            known, missing = cached_under(identity)
        computed, kept = compute_features(runner, [samples[i] for i in missing], views, skipped, **kwargs)
        new = {f"{digests[missing[j]]}/{name}": computed[v, k]
               for k, j in enumerate(kept) for v, name in enumerate(names)}
        if cache_root:
            FeatureCache(cache_root, backbone_id, identity).add(new)
        known.update(new)

    def cached(i: int) -> bool:
        return all(f"{digests[i]}/{name}" in known for name in names)

    good = [i for i in range(len(samples)) if cached(i)]
    skipped.add((str(samples[i][0]), f"{samples[i][0]}: unreadable") for i in range(len(samples)) if not cached(i))
    if not good:
        return FeatureSet(torch.empty(len(names), 0, 0), torch.empty(0, dtype=torch.long), [])
    features = torch.stack([torch.stack([known[f"{digests[i]}/{name}"] for i in good]) for name in names])
    labels = torch.tensor([samples[i][1] for i in good], dtype=torch.long)
    return FeatureSet(features, labels, [Path(samples[i][0]) for i in good])
