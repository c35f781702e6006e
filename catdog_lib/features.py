"""Backbone features computed once per image and view, cached on disk by file content.

In the ``features`` recipe the backbone is frozen, so its output for an image never changes:
computing it once (for the plain and the horizontally flipped view) and training the head on the
cached vectors gives the same head as pushing every image through the whole network every epoch,
in a fraction of the time. The cache is keyed by the file's content, the backbone's weights, the
preprocessing and the inference engine that ran the backbone, so the next run (or the next notebook)
reuses it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .checkpoint import atomic_save
from .datasets import SkippedFiles, iterate_good, make_loader
from .engine import Runner, backbone_runner, engine_identity
from .errors import CatdogError
from .layout import Sample
from .prefetch import prefetched
from .transforms import Preprocessing, eval_transform

VIEWS = ("plain", "flip")


def file_digest(path: Path) -> str:
    """SHA-1 of a file's bytes: the same photo under another name hits the same cache entry.

    An unreadable or missing file gets "" (never a cache hit); decoding it then reports why.
    """
    try:
        return hashlib.sha1(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


class FeatureCache:
    """Feature vectors of one backbone + preprocessing + engine and precision (e.g. "openvino:fp32"),
    stored as shards of {"digest/view": tensor}."""

    def __init__(self, root: Path, backbone_id: str, prep: Preprocessing, engine: str):
        key = json.dumps({"backbone": backbone_id, **prep.as_dict(), "engine": engine}, sort_keys=True)
        self.folder = Path(root) / hashlib.sha1(key.encode()).hexdigest()[:16]

    def load(self) -> dict[str, torch.Tensor]:
        entries: dict[str, torch.Tensor] = {}
        for shard in sorted(self.folder.glob("*.pt")):
            try:
                entries.update(torch.load(shard, map_location="cpu", weights_only=True))
            except Exception:  # a damaged shard is only a cache miss
                shard.unlink(missing_ok=True)
        return entries

    def add(self, entries: dict[str, torch.Tensor]) -> None:
        """Store new entries; a cache that cannot be written only costs speed, so it warns and goes on."""
        if not entries:
            return
        try:
            atomic_save(entries, self.folder / f"{uuid.uuid4().hex}.pt")
        except CatdogError as error:
            warnings.warn(f"feature cache not written ({error}); continuing without it. "
                          "Set CATDOG_CACHE_DIR to a writable folder to reuse features next time.", stacklevel=2)


@dataclass
class FeatureSet:
    """Features of the good images among some samples: ``features[view, i]``, ``labels[i]``, ``paths[i]``."""

    features: torch.Tensor
    labels: torch.Tensor
    paths: list[Path]


@torch.inference_mode()
def compute_features(
    runner: Runner,
    samples: Sequence[Sample],
    prep: Preprocessing,
    skipped: SkippedFiles,
    views: Sequence[str] = VIEWS,
    batch_size: int = 32,
    num_workers: int | None = None,
    progress: bool = True,
) -> tuple[torch.Tensor, list[int]]:
    """Run the frozen backbone (``runner``, see :func:`engine.backbone_runner`) over ``samples`` once per view.

    Each photo is decoded once, in a background thread while the backbone runs on the previous batch.
    Returns features ``[view, good sample, dim]`` and the indices of the good samples.
    """
    indexed = [(path, index) for index, (path, _) in enumerate(samples)]  # label slot carries the index
    loader = make_loader(indexed, eval_transform(prep), batch_size, num_workers=num_workers,
                         min_size=prep.image_size, generator=torch.Generator().manual_seed(0))
    outputs, kept = [], []
    bar = tqdm(total=len(samples), desc="backbone features", unit="img", disable=not progress, leave=False)
    for images, indices in iterate_good(prefetched(loader), skipped):
        per_view = [runner(images.flip(-1) if view == "flip" else images) for view in views]
        outputs.append(torch.stack(per_view).float().cpu())
        kept.extend(indices.tolist())
        bar.update(len(indices))
    bar.close()
    return (torch.cat(outputs, dim=1) if outputs else torch.empty(len(views), 0, 0)), kept


def extract_features(
    backbone: torch.nn.Module,
    backbone_id: str,
    samples: Sequence[Sample],
    prep: Preprocessing,
    device: torch.device,
    skipped: SkippedFiles,
    cache_root: Path | None = None,
    views: Sequence[str] = VIEWS,
    reduced_precision: bool = True,
    **kwargs,
) -> FeatureSet:
    """Features for every good sample and view, from the cache where possible, computing and caching the rest.

    The backbone runs on the fastest exact inference engine installed (:mod:`catdog_lib.engine`), built
    only when some features are missing; the cache is keyed by that engine and its precision.
    """
    engine = engine_identity(device, reduced_precision)
    cache = FeatureCache(cache_root, backbone_id, prep, engine) if cache_root else None
    known = cache.load() if cache else {}
    digests = [file_digest(path) for path, _ in samples]

    def cached(i: int) -> bool:
        return all(f"{digests[i]}/{view}" in known for view in views)

    missing = [i for i in range(len(samples)) if not cached(i)]
    if missing:
        runner = backbone_runner(backbone, backbone_id, prep, device, reduced_precision)
        computed, kept = compute_features(runner, [samples[i] for i in missing], prep, skipped, views=views, **kwargs)
        new = {f"{digests[missing[j]]}/{view}": computed[v, k]
               for k, j in enumerate(kept) for v, view in enumerate(views)}
        if cache_root:  # under the engine that computed them (PyTorch, if the chosen engine fell back)
            FeatureCache(cache_root, backbone_id, prep, runner.identity).add(new)
        known.update(new)
    good = [i for i in range(len(samples)) if cached(i)]
    skipped.add((str(samples[i][0]), f"{samples[i][0]}: unreadable") for i in range(len(samples)) if not cached(i))
    if not good:
        return FeatureSet(torch.empty(len(views), 0, 0), torch.empty(0, dtype=torch.long), [])
    features = torch.stack([torch.stack([known[f"{digests[i]}/{view}"] for i in good]) for view in views])
    labels = torch.tensor([samples[i][1] for i in good], dtype=torch.long)
    return FeatureSet(features, labels, [Path(samples[i][0]) for i in good])
