"""Train a cats-vs-dogs head (or fine-tune the whole net) the tutorial's way, resumably.

Faithful to the tutorial: CrossEntropyLoss, Adam, ReduceLROnPlateau(mode="min", factor=0.1,
patience=4), early stopping on valid loss (patience 7), best checkpoint by valid accuracy,
TensorBoard scalars. Two recipes:

- ``features``: frozen backbone, new head, trained on cached backbone features (fast on CPU);
- ``finetune``: the whole network trains, the backbone at a tenth of the head's learning rate.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .backbones import DEFAULT_ARCH, TransferNet, create_model, get_arch
from .checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from .config import cache_dir
from .datasets import SkippedFiles, iterate_good, make_loader
from .devices import autocast, pick_device, set_seed
from .errors import CatdogError
from .features import VIEWS, FeatureSet, extract_features, file_digest
from .guards import check_finite
from .layout import find_dataset
from .runfolder import claim_run_folder
from .split import Split, stratified_split, subset_per_class
from .transforms import eval_transform

RECIPES = ("features", "finetune")
DEFAULT_LR = {"features": 1e-3, "finetune": 1e-4}  # a new head learns fast; a pretrained backbone needs care
BACKBONE_LR_FACTOR = 0.1


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in the run folder and in its checkpoints."""

    data: str
    out: str
    arch: str = DEFAULT_ARCH
    recipe: str = "features"
    epochs: int = 40
    batch_size: int = 32
    lr: float | None = None  # None: 1e-3 for the features recipe's head, 1e-4 to fine-tune
    weight_decay: float = 0.0
    seed: int = 42
    flip_p: float = 0.3
    patience: int = 7
    valid_fraction: float = 0.2
    weights: str | None = "default"
    device: str = "auto"
    per_class: int | None = None  # use only the first N training photos of each class (fast mode)
    num_workers: int | None = None
    feature_cache: bool = True
    reduced_precision: bool = True  # frozen backbone in bfloat16 (CPUs with native support) / float16 (CUDA)
    progress: bool = True


@dataclass
class EarlyStopping:
    """The tutorial's rule: stop once valid loss has not improved for more than ``patience`` epochs."""

    patience: int
    min_loss: float = float("inf")
    trigger: int = 0

    def step(self, valid_loss: float) -> bool:
        """Record an epoch's valid loss; True when training should stop."""
        if valid_loss > self.min_loss:
            self.trigger += 1
            return self.trigger > self.patience
        self.min_loss, self.trigger = valid_loss, 0
        return False


@dataclass
class RunState:
    """What a resumed run needs besides model, optimizer and scheduler."""

    epoch: int = 0
    best_accuracy: float = -1.0
    best_loss: float = float("inf")
    best_epoch: int = 0
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False
    elapsed_s: float = 0.0


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled order of sample indices in one epoch; the same for both recipes."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))


def flip_choices(n: int, p: float, seed: int, epoch: int) -> torch.Tensor:
    """Which samples see the flipped view this epoch (RandomHorizontalFlip(p), decided up front)."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch + 500_000)) < p


class FeatureBatches:
    """Batches of cached backbone features: the head sees what the full network would compute."""

    def __init__(self, train: FeatureSet, valid: FeatureSet, cfg: TrainConfig, device: torch.device):
        self.train, self.valid, self.cfg, self.device = train, valid, cfg, device

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.train.labels)
        order = epoch_order(n, self.cfg.seed, epoch)
        views = flip_choices(n, self.cfg.flip_p, self.cfg.seed, epoch).long()
        for start in range(0, n, self.cfg.batch_size):
            idx = order[start:start + self.cfg.batch_size]
            yield self.train.features[views[idx], idx].to(self.device), self.train.labels[idx].to(self.device)

    def valid_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.valid.labels), 256):
            stop = start + 256
            yield self.valid.features[0, start:stop].to(self.device), self.valid.labels[start:stop].to(self.device)


class ImageBatches:
    """Batches of decoded, augmented images for training through the whole network.

    Each sample's horizontal flip comes from :func:`flip_choices`, as in :class:`FeatureBatches`, so
    both recipes see the same flips and no loader draws on the global RNG (dropout uses that one).
    """

    def __init__(self, split: Split, cfg: TrainConfig, device: torch.device, skipped: SkippedFiles):
        prep = get_arch(cfg.arch).prep
        self.split, self.cfg, self.device, self.skipped = split, cfg, device, skipped
        self.transform = eval_transform(prep)
        self.valid_loader = make_loader(split.valid, eval_transform(prep), cfg.batch_size,
                                        num_workers=cfg.num_workers, min_size=prep.image_size,
                                        generator=torch.Generator().manual_seed(cfg.seed))
        self.min_size = prep.image_size

    def train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split.train)
        order = epoch_order(n, self.cfg.seed, epoch).tolist()
        flips = flip_choices(n, self.cfg.flip_p, self.cfg.seed, epoch).tolist()
        loader = make_loader([self.split.train[i] for i in order], self.transform, self.cfg.batch_size,
                             num_workers=self.cfg.num_workers, min_size=self.min_size,
                             generator=torch.Generator().manual_seed(self.cfg.seed + epoch),
                             flips=[flips[i] for i in order])
        for images, labels in iterate_good(loader, self.skipped):
            yield images.to(self.device), labels.to(self.device)

    def valid_batches(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in iterate_good(self.valid_loader, self.skipped):
            yield images.to(self.device), labels.to(self.device)


def _build_optimizer(model: TransferNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.recipe == "features":
        model.freeze_backbone()
        groups = [{"params": model.head.parameters(), "lr": cfg.lr}]
    else:
        groups = [{"params": model.backbone.parameters(), "lr": cfg.lr * BACKBONE_LR_FACTOR},
                  {"params": model.head.parameters(), "lr": cfg.lr}]
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def run_epoch(net: nn.Module, batches: Iterator, loss_fn: nn.Module, optimizer: torch.optim.Optimizer,
              device: torch.device, scaler: torch.amp.GradScaler) -> float:
    """One pass over the training batches; returns the mean batch loss."""
    total, count = 0.0, 0
    for inputs, labels in batches:
        optimizer.zero_grad()
        with autocast(device):
            loss = loss_fn(net(inputs), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        total += loss.item()
        count += 1
    return total / max(count, 1)


@torch.no_grad()
def validate(net: nn.Module, batches: Iterator, loss_fn: nn.Module, device: torch.device) -> tuple[float, float]:
    """Mean per-image loss and accuracy on the validation batches."""
    loss_sum, correct, total = 0.0, 0, 0
    for inputs, labels in batches:
        with autocast(device):
            logits = net(inputs)
        loss_sum += loss_fn(logits.float(), labels).item() * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        total += len(labels)
    if total == 0:
        raise CatdogError("no readable validation images; check the data with `catdog data check`.")
    return loss_sum / total, correct / total


def _write_json(path: Path, data: dict) -> None:
    atomic_write_text(path, json.dumps(data, indent=1))


def _ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise CatdogError(f"cannot write to {out}: {error.strerror or error}. Choose a writable --out folder.") from None


def prepare_split(cfg: TrainConfig, out: Path, resume: bool) -> Split:
    """The run's train/valid split: read back when resuming, else made and saved to split.json."""
    manifest = out / "split.json"
    if resume and manifest.exists():
        return Split.load(manifest)
    split = stratified_split(find_dataset(Path(cfg.data)).train(), cfg.valid_fraction, cfg.seed)
    if cfg.per_class:
        split = dataclasses.replace(split, train=subset_per_class(split.train, cfg.per_class),
                                    valid=subset_per_class(split.valid, max(2, cfg.per_class // 4)))
    split.save(manifest)
    return split


def model_meta(cfg: TrainConfig, split: Split) -> dict:
    prep = get_arch(cfg.arch).prep
    return {"arch": cfg.arch, "classes": split.classes, "preprocessing": prep.as_dict(),
            "recipe": cfg.recipe, "backbone_weights": backbone_id(cfg)}


def backbone_id(cfg: TrainConfig) -> str:
    """Identifies the frozen backbone's weights for the feature cache: a weights file by its content,
    random weights by their seed."""
    if cfg.weights is None:
        return f"{cfg.arch}:random:seed{cfg.seed}"
    if cfg.weights == "default":
        return f"{cfg.arch}:default"
    return f"{cfg.arch}:sha1={file_digest(Path(cfg.weights))}"


def _check_config(cfg: TrainConfig) -> TrainConfig:
    """Reject impossible settings with one clear line; fill in the recipe's default learning rate."""
    if cfg.recipe not in RECIPES:
        raise CatdogError(f"unknown recipe {cfg.recipe!r}; choose one of: {', '.join(RECIPES)}.")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise CatdogError(f"{name} must be at least 1 (got {getattr(cfg, name)}).")
    if cfg.lr is None:
        cfg.lr = DEFAULT_LR[cfg.recipe]
    if not 0 < cfg.lr < math.inf:
        raise CatdogError(f"the learning rate must be positive (got {cfg.lr}).")
    return cfg


def _metrics(cfg: TrainConfig, split: Split, state: RunState, skipped: SkippedFiles) -> dict:
    return {"arch": cfg.arch, "recipe": cfg.recipe, "classes": split.classes,
            "counts": split.counts(set(skipped.paths())), "unused": split.unused,
            "epochs_run": state.epoch, "best_epoch": state.best_epoch, "best_valid_accuracy": state.best_accuracy,
            "best_valid_loss": state.best_loss, "stopped_early": state.stopped_early,
            "elapsed_s": round(state.elapsed_s, 2), "skipped": skipped.paths(), "history": state.history,
            "config": asdict(cfg)}


def _batches(cfg: TrainConfig, model: TransferNet, split: Split, device: torch.device,
             skipped: SkippedFiles) -> tuple[FeatureBatches | ImageBatches, nn.Module]:
    """The recipe's batch source and the part of the model it trains."""
    if cfg.recipe == "finetune":
        return ImageBatches(split, cfg, device, skipped), model
    extract = dict(prep=get_arch(cfg.arch).prep, device=device, skipped=skipped,
                   cache_root=cache_dir() / "features" if cfg.feature_cache else None,
                   num_workers=cfg.num_workers, progress=cfg.progress, reduced_precision=cfg.reduced_precision)
    train_set = extract_features(model.backbone, backbone_id(cfg), split.train, views=VIEWS, **extract)
    valid_set = extract_features(model.backbone, backbone_id(cfg), split.valid, views=("plain",), **extract)
    return FeatureBatches(train_set, valid_set, cfg, device), model.head


def _log_scalars(writer, row: dict) -> None:
    """TensorBoard scalars for one epoch, flushed so a live TensorBoard shows them at once."""
    for tag, key in (("loss/train", "train_loss"), ("loss/valid", "valid_loss"),
                     ("accuracy/valid", "valid_accuracy"), ("lr", "lr")):
        writer.add_scalar(tag, row[key], row["epoch"])
    writer.flush()


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train (or resume) a run in ``cfg.out``; returns the metrics also written to metrics.json."""
    from torch.utils.tensorboard import SummaryWriter

    out = Path(cfg.out)
    lock = claim_run_folder(cfg.out, cfg.data, resume)  # refuses others' folders; one run at a time
    last_path = out / "last.pt"
    if resume:
        if not last_path.exists():
            raise CatdogError(f"{out}: nothing to resume (no last.pt). Start the run without --resume.")
        saved = load_checkpoint(last_path)
        cfg = TrainConfig(**{**saved["config"], "progress": cfg.progress, "device": cfg.device})
    elif last_path.exists():
        raise CatdogError(f"{out}: already holds a run (last.pt). Use --resume {out} or another --out folder.")
    cfg = _check_config(cfg)
    _ensure_writable(out)
    started = time.perf_counter()
    set_seed(cfg.seed)
    device = pick_device(cfg.device)
    split = prepare_split(cfg, out, resume)
    # A resumed run's weights all come from last.pt: no need to find the pretrained ones again.
    model = create_model(cfg.arch, len(split.classes), None if resume else cfg.weights).to(device)
    optimizer = _build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=4)
    stopper = EarlyStopping(cfg.patience)
    state = RunState()
    if resume:
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        stopper = EarlyStopping(**saved["early_stopping"])
        state = RunState(**saved["run_state"])
        torch.set_rng_state(saved["rng_state"])
    elapsed_before = state.elapsed_s
    skipped = SkippedFiles()
    batches, net = _batches(cfg, model, split, device, skipped)
    if not resume:  # feature extraction may draw random numbers; training starts from the seed
        set_seed(cfg.seed)
    loss_fn = nn.CrossEntropyLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")
    meta = model_meta(cfg, split)
    writer = SummaryWriter(str(out / "tensorboard"))
    last_epoch = state.epoch if state.stopped_early else cfg.epochs
    bar = tqdm(range(state.epoch, last_epoch), desc="epochs", unit="epoch", disable=not cfg.progress)
    try:
        for epoch in bar:
            epoch_start = time.perf_counter()
            model.train(cfg.recipe == "finetune")
            net.train()
            train_loss = run_epoch(net, batches.train_batches(epoch), loss_fn, optimizer, device, scaler)
            check_finite(train_loss, f"the training loss at epoch {epoch + 1}")
            net.eval()
            valid_loss, valid_acc = validate(net, batches.valid_batches(), loss_fn, device)
            check_finite(valid_loss, f"the validation loss at epoch {epoch + 1}")
            lr = optimizer.param_groups[-1]["lr"]
            row = {"epoch": epoch + 1, "train_loss": train_loss, "valid_loss": valid_loss,
                   "valid_accuracy": valid_acc, "lr": lr, "seconds": time.perf_counter() - epoch_start}
            state.history.append(row)
            _log_scalars(writer, row)
            bar.set_postfix(train_loss=f"{train_loss:.3f}", valid_loss=f"{valid_loss:.3f}", valid_acc=f"{valid_acc:.3f}")
            if valid_acc > state.best_accuracy or (valid_acc == state.best_accuracy and valid_loss < state.best_loss):
                state.best_accuracy, state.best_loss, state.best_epoch = valid_acc, valid_loss, epoch + 1
                save_checkpoint(out / "best.pt", model.state_dict(),
                                {**meta, "epoch": epoch + 1, "metrics": row})
            state.stopped_early = stopper.step(valid_loss)
            scheduler.step(valid_loss)
            state.epoch = epoch + 1
            state.elapsed_s = elapsed_before + time.perf_counter() - started
            save_checkpoint(last_path, model.state_dict(), {**meta, "epoch": epoch + 1, "metrics": row},
                            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                            early_stopping=asdict(stopper), run_state=asdict(state),
                            rng_state=torch.get_rng_state(), config=asdict(cfg))
            _write_json(out / "metrics.json", _metrics(cfg, split, state, skipped))
            if state.stopped_early:
                break
    finally:
        bar.close()
        writer.close()
        lock.release()
    return _metrics(cfg, split, state, skipped)
