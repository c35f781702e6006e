"""The batches a run trains on: cached backbone features (the head), cached stage inputs (fine-tuning the last
stage) or decoded photos (the whole network), shuffled the same way each epoch and showing each photo in the view
``ViewSet.picks`` gives it, so every recipe sees the same augmentation."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from ..config import cache_dir
from ..data.datasets import SkippedFiles, iterate_good, make_loader
from ..data.split import Split
from ..errors import CatdogError
from ..model.backbones import TransferNet
from ..model.features import FeatureSet, ViewSet, eval_views, extract_features
from .finetune import STAGE_DTYPE, split_backbone, stage_id


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of sample indices in one epoch; the same for both recipes."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))


class FeatureBatches:
    """Shuffled batches of cached backbone features: the head sees what the whole network would compute.

    Each epoch, every photo shows one of its cached views, picked by ``views.picks`` (for the tutorial's
    flip: mirrored with probability ``flip_p``).
    """

    def __init__(self, train: FeatureSet, valid: FeatureSet, views: ViewSet, batch_size: int, seed: int,
                 device: torch.device):
        self.train, self.valid, self.views = train, valid, views
        self.batch_size, self.seed, self.device = batch_size, seed, device

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.train.labels)
        order = epoch_order(n, self.seed, epoch)
        picks = self.views.picks(n, self.seed, epoch)
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            yield (self.train.features[picks[idx], idx].to(self.device, torch.float32),
                   self.train.labels[idx].to(self.device))

    def valid_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.valid.labels), self.batch_size):
            stop = start + self.batch_size
            yield (self.valid.features[0, start:stop].to(self.device, torch.float32),
                   self.valid.labels[start:stop].to(self.device))


def feature_batches(model: TransferNet, backbone_id: str, split: Split, views: ViewSet, valid_transform,
                    batch_size: int, seed: int, device: torch.device, skipped: SkippedFiles,
                    cache: bool = True, min_size: int | None = None, calibrate: bool = True,
                    **extract) -> FeatureBatches:
    """The split's photos through the frozen backbone (every training view, one valid view), cached, as batches."""
    options = dict(device=device, skipped=skipped, min_size=min_size, batch_size=batch_size,
                   cache_root=cache_dir() / "features" if cache else None, **extract)
    train = extract_features(model.backbone, backbone_id, split.train, views, calibrate=calibrate, **options)
    valid = extract_features(model.backbone, backbone_id, split.valid, eval_views(valid_transform), **options)
    if not len(valid.labels):
        raise CatdogError("no readable validation images; check the data with `catdog data check`.")
    return FeatureBatches(train, valid, views, batch_size, seed, device)


def stage_inputs(model: TransferNet, arch: str, backbone_id: str, split: Split, views: ViewSet, valid_transform,
                 batch_size: int, seed: int, device: torch.device, skipped: SkippedFiles, **extract):
    """The split's photos through the frozen trunk (every training view, one valid view), cached, as batches."""
    trunk, _ = split_backbone(arch, model.backbone)
    return feature_batches(TransferNet(trunk, nn.Identity()), stage_id(backbone_id, arch), split, views,
                           valid_transform, batch_size, seed, device, skipped, dtype=STAGE_DTYPE,
                           calibrate=False, **extract)  # the stage is fine-tuned on float32 inputs



class ImageBatches:
    """Batches of decoded photos for training through the whole network.

    Each photo's view comes from ``views.picks``, as in :class:`FeatureBatches`, so both recipes see the
    same augmentation; the loaders have their own generators, so none draws on the global RNG (dropout
    uses that one).
    """

    def __init__(self, split: Split, views: ViewSet, valid_transform, batch_size: int, seed: int,
                 device: torch.device, skipped: SkippedFiles, min_size: int | None = None,
                 num_workers: int | None = None):
        self.split, self.views, self.batch_size, self.seed = split, views, batch_size, seed
        self.device, self.skipped, self.min_size, self.num_workers = device, skipped, min_size, num_workers
        self.valid_loader = make_loader(split.valid, valid_transform, batch_size, num_workers=num_workers,
                                        min_size=min_size, generator=torch.Generator().manual_seed(seed))

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split.train)
        order = epoch_order(n, self.seed, epoch).tolist()
        picks = self.views.picks(n, self.seed, epoch).tolist()
        loader = make_loader([self.split.train[i] for i in order], self.views.view, self.batch_size,
                             num_workers=self.num_workers, min_size=self.min_size,
                             view_ids=[picks[i] for i in order],
                             generator=torch.Generator().manual_seed(self.seed + epoch))
        for images, labels in iterate_good(loader, self.skipped):
            yield images.to(self.device), labels.to(self.device)

    def valid_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in iterate_good(self.valid_loader, self.skipped):
            yield images.to(self.device), labels.to(self.device)
