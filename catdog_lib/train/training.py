"""Train a cats-vs-dogs head (or fine-tune the whole net) the tutorial's way, resumably.

Notebook 04 shows and explains this code: :func:`train_epoch`, :func:`validate` and
:class:`EarlyStopping` are written there exactly as here (a test keeps them identical), and its
epoch loop matches :func:`train` epoch for epoch (a test runs both). Faithful to the tutorial:
CrossEntropyLoss, Adam, ReduceLROnPlateau(mode="min", factor=0.1, patience=4), early stopping on
valid loss (patience 7), best checkpoint by valid accuracy, TensorBoard scalars. Three recipes:

- ``features``: frozen backbone, new head, trained on cached backbone features (fast on CPU);
- ``finetune``: ``features`` to convergence, then the backbone's last stage and the head on cached stage
  inputs, BatchNorm in eval mode, at smaller learning rates (:mod:`catdog_lib.train.finetune`); a fine-tuned
  epoch is kept only if it is no worse on validation;
- ``whole``: the whole network trains from the start on decoded photos, the backbone at a tenth of the
  head's learning rate (slow on a CPU; notebook 04 uses it to train from scratch).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from ..data.datasets import SkippedFiles
from ..data.layout import find_dataset
from ..data.split import Split, stratified_split, subset_per_class
from ..data.transforms import Preprocessing, eval_transform, train_transform
from ..devices import DEVICE_NAMES, pick_device, set_seed
from ..errors import CatdogError
from ..files import atomic_write_bytes, atomic_write_text
from ..model.backbones import DEFAULT_ARCH, TransferNet, create_model, get_arch, head_spec
from ..model.checkpoint import load_checkpoint, save_checkpoint
from ..model.features import ViewSet, cache_digest, training_views
from . import parameters as rules
from .batching import FeatureBatches, ImageBatches, feature_batches, stage_inputs
from .finetune import StageNet, keeps, split_backbone
from .runlock import claim_run_folder

RECIPES = ("features", "finetune", "whole")
# A new head learns fast; a pretrained backbone needs care. finetune's rate is its head stage's.
DEFAULT_LR = {"features": 1e-3, "finetune": 1e-3, "whole": 1e-4}
BACKBONE_LR_FACTOR = 0.1  # whole: the pretrained backbone's rate, relative to the head's
# finetune's second stage: the pretrained last stage and the trained head, both at a tenth of the head stage's
# rate (on the validation photos a hundredth for the stage lowered the valid loss half as much)
HEAD_LR_FACTOR = STAGE_LR_FACTOR = 0.1
FINETUNE_PATIENCE = 2  # finetune's second stage: epochs without a better valid loss before it stops


@dataclass
class TrainConfig:
    """Everything a run depends on; saved in the run folder and in its checkpoints."""

    data: str
    out: str
    arch: str = DEFAULT_ARCH
    recipe: str = "features"
    epochs: int = 40
    batch_size: int = 32
    lr: float | None = None  # None: DEFAULT_LR of the recipe
    weight_decay: float = 0.0
    seed: int = 42  # the head's initial weights, dropout and the order of the photos; not the split
    flip_p: float = 0.3
    patience: int = 7
    finetune_epochs: int = 8  # finetune recipe: most epochs of its second stage (last stage + head)
    valid_fraction: float = 0.2
    split_seed: int = 42  # the stratified split's random_state (the tutorial's 42), apart from ``seed``
    split_file: str | None = None  # a saved split (notebook 01's): used as it is, valid_fraction and split_seed aside
    weights: str | None = "default"
    device: str = "auto"
    per_class: int | None = None  # use only the first N training photos of each class (fast mode)
    num_workers: int | None = None
    feature_cache: bool = True
    reduced_precision: bool = True  # frozen backbone run by PyTorch (GPU, no engine): float16 / native bfloat16
    progress: bool = True

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Refuse a wrong setting in one line naming the field, its value and what is allowed (paths given as
        ``pathlib.Path`` become text, as metrics.json keeps them)."""
        for name, rule in CONFIG_RULES.items():
            value = getattr(self, name)
            if wrong := rules.problem(rule, value):
                raise CatdogError(f"TrainConfig {name}={rules.shown(value)}: {wrong}.")
            if isinstance(value, os.PathLike):
                setattr(self, name, os.fspath(value))


PATH = rules.Rule(lambda v: isinstance(v, (str, os.PathLike)), "a path (text or a pathlib.Path)")
# One rule per TrainConfig field (tests/test_parameters.py checks that none lacks one).
CONFIG_RULES: dict[str, rules.Rule] = {
    "data": PATH, "out": PATH, "arch": rules.ARCH,
    "recipe": rules.Rule(lambda v: v in RECIPES, "one of " + ", ".join(RECIPES)),
    "epochs": rules.COUNT, "batch_size": rules.COUNT, "lr": rules.optional(rules.LEARNING_RATE, "the recipe's default"),
    "weight_decay": rules.Rule(lambda v: rules.is_number(v) and 0 <= v < math.inf, "a number of at least 0, such as 1e-4"),
    "seed": rules.SEED, "flip_p": rules.PROBABILITY, "patience": rules.whole(0), "finetune_epochs": rules.COUNT,
    "valid_fraction": rules.FRACTION, "split_seed": rules.SEED,
    "split_file": rules.optional(rules.Rule(rules.is_path, "the path of a saved split"), "none"),
    "weights": rules.WEIGHTS, "device": rules.Rule(lambda v: v in DEVICE_NAMES, "one of " + ", ".join(DEVICE_NAMES)),
    "per_class": rules.PER_CLASS, "num_workers": rules.optional(rules.whole(0), "as suits this machine"),
    "feature_cache": rules.SWITCH, "reduced_precision": rules.SWITCH, "progress": rules.SWITCH,
}


class EarlyStopping:
    """The tutorial's rule: stop once the valid loss has not improved for more than ``patience`` epochs."""

    def __init__(self, patience: int, min_loss: float = float("inf"), trigger: int = 0):
        self.patience, self.min_loss, self.trigger = patience, min_loss, trigger

    def step(self, valid_loss: float) -> bool:
        """Record an epoch's valid loss; True when training should stop."""
        if valid_loss > self.min_loss:
            self.trigger += 1
            return self.trigger > self.patience
        self.min_loss, self.trigger = valid_loss, 0
        return False


def check_finite(value: float, what: str) -> float:
    """``value`` if it is a finite number; else CatdogError: the run diverged (learning rate too high)."""
    if not math.isfinite(value):
        raise CatdogError(f"{what} became {value}: training diverged. Lower the learning rate "
                          "(--lr, or LEARNING_RATE in notebook 04; e.g. by 10x) and start a new run.")
    return value


def train_epoch(net: nn.Module, batches, loss_fn: nn.Module, optimizer: torch.optim.Optimizer) -> float:
    """One pass over the training batches; returns the mean batch loss."""
    net.train()
    total, count = 0.0, 0
    for inputs, labels in batches:
        loss = loss_fn(net(inputs), labels)  # forward
        optimizer.zero_grad()  # forget the previous batch's gradients
        loss.backward()  # gradients of the loss for every trainable parameter
        optimizer.step()  # move the parameters against their gradients
        total += loss.item()
        count += 1
    return total / max(count, 1)


@torch.no_grad()
def validate(net: nn.Module, batches, loss_fn: nn.Module) -> tuple[float, float]:
    """Mean per-image loss and accuracy on the validation batches (dropout off, no gradients)."""
    net.eval()
    loss_sum, correct, total = 0.0, 0, 0
    for inputs, labels in batches:
        logits = net(inputs)
        loss_sum += loss_fn(logits, labels).item() * len(labels)
        correct += (logits.argmax(1) == labels).sum().item()
        total += len(labels)
    return loss_sum / max(total, 1), correct / max(total, 1)


def rank(row: dict) -> tuple[float, float]:
    """Best-epoch order: higher valid accuracy, then lower valid loss."""
    return row["valid_accuracy"], -row["valid_loss"]


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
    finetuned: bool = False  # finetune recipe: its second stage has run to the end

    def is_best(self, row: dict) -> bool:
        """True (and remembered) when an epoch beats the best valid accuracy so far (ties: lower loss)."""
        if rank(row) > (self.best_accuracy, -self.best_loss):
            self.best_accuracy, self.best_loss, self.best_epoch = row["valid_accuracy"], row["valid_loss"], row["epoch"]
            return True
        return False


def _ensure_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise CatdogError(f"cannot write to {out}: {error.strerror or error}. Choose a writable --out folder.") from None


def course_subset(split: Split, per_class: int | None) -> Split:
    """The first ``per_class`` training photos of each class (and a quarter as many valid ones); all if None."""
    if not per_class:
        return split
    return replace(split, train=subset_per_class(split.train, per_class),
                   valid=subset_per_class(split.valid, max(2, per_class // 4)))


def prepare_split(cfg: TrainConfig, out: Path, resume: bool) -> Split:
    """The run's train/valid split: read back from split.json when resuming, else ``cfg.split_file`` (a saved
    split of the same data), else made from the data with ``cfg.split_seed``; ``cfg.seed`` never moves a photo
    between training and validation."""
    manifest = out / "split.json"
    if resume and manifest.exists():
        return Split.load(manifest)
    folders = find_dataset(Path(cfg.data)).train()
    if cfg.split_file is None:
        return course_subset(stratified_split(folders, cfg.valid_fraction, cfg.split_seed), cfg.per_class)
    split = Split.load(Path(cfg.split_file))
    if Path(split.root).resolve() != folders.root.resolve():
        raise CatdogError(f"{cfg.split_file}: this split is of {split.root}, not of the data {folders.root}. "
                          "Split that data first (notebook 01), or leave split_file out.")
    cfg.valid_fraction, cfg.split_seed = split.valid_fraction, split.seed  # recorded as they are
    return course_subset(split, cfg.per_class)


def backbone_id(arch: str, weights: str | None, seed: int) -> str:
    """Identifies the frozen backbone's weights for the feature cache: a weights file by its content,
    random weights by their seed."""
    if weights is None:
        return f"{arch}:random:seed{seed}"
    if weights == "default":
        return f"{arch}:default"
    return f"{arch}:sha1={cache_digest(Path(weights))}"


@dataclass(frozen=True)
class RunSpec:
    """What a run's settings name, looked up once: the backbone's preprocessing, the identity of its weights in
    the feature cache, the training views (flips) and the validation transform."""

    prep: Preprocessing
    backbone_id: str
    views: ViewSet
    valid_transform: Callable

    @classmethod
    def of(cls, cfg: TrainConfig) -> RunSpec:
        prep = get_arch(cfg.arch).prep
        return cls(prep, backbone_id(cfg.arch, cfg.weights, cfg.seed),
                   training_views(train_transform(prep, cfg.flip_p), seed=cfg.seed), eval_transform(prep))


def _check_config(cfg: TrainConfig) -> TrainConfig:
    """Check the settings again (a field may have changed since the config was made); fill in the recipe's
    default learning rate."""
    cfg.check()
    if cfg.lr is None:
        cfg.lr = DEFAULT_LR[cfg.recipe]
    return cfg


class RunFolder:
    """Where a run writes: best.pt, last.pt (to resume), metrics.json, split.json, TensorBoard logs.

    Used by :func:`train` and by notebook 04's own epoch loop, so both leave the same files.
    """

    def __init__(self, out: str | Path, cfg: TrainConfig, split: Split, model: TransferNet, spec: RunSpec | None = None):
        from torch.utils.tensorboard import SummaryWriter

        self.out, self.cfg, self.split = Path(out), cfg, split
        spec = spec or RunSpec.of(cfg)
        _ensure_writable(self.out)
        split.save(self.out / "split.json")
        self.meta = {"arch": cfg.arch, "classes": split.classes, "preprocessing": spec.prep.as_dict(),
                     "recipe": cfg.recipe, "backbone_weights": spec.backbone_id, "head": head_spec(model.head)}
        self.writer = SummaryWriter(str(self.out / "tensorboard"))

    def log(self, row: dict) -> None:
        """TensorBoard scalars for one epoch, flushed so a live TensorBoard shows them at once."""
        for tag, key in (("loss/train", "train_loss"), ("loss/valid", "valid_loss"),
                         ("accuracy/valid", "valid_accuracy"), ("lr", "lr")):
            self.writer.add_scalar(tag, row[key], row["epoch"])
        self.writer.flush()

    def save_best(self, model: nn.Module, row: dict) -> None:
        save_checkpoint(self.out / "best.pt", model.state_dict(), {**self.meta, "epoch": row["epoch"], "metrics": row})

    def save_last(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler, stopper: EarlyStopping,
                  state: RunState, skipped: SkippedFiles | None = None) -> dict:
        """last.pt with everything to resume, and metrics.json; returns the metrics."""
        row = state.history[-1]
        save_checkpoint(self.out / "last.pt", model.state_dict(),
                        {**self.meta, "epoch": row["epoch"], "metrics": row,
                         "optimizer_class": type(optimizer).__name__},
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        early_stopping=vars(stopper), run_state=asdict(state), rng_state=torch.get_rng_state(),
                        config=asdict(self.cfg))
        metrics = self.metrics(state, skipped)
        atomic_write_text(self.out / "metrics.json", json.dumps(metrics, indent=1))
        return metrics

    def metrics(self, state: RunState, skipped: SkippedFiles | None = None) -> dict:
        cfg = self.cfg
        return {"arch": cfg.arch, "recipe": cfg.recipe, "classes": self.split.classes,
                "counts": self.split.counts(set(skipped.paths()) if skipped else set()), "unused": self.split.unused,
                "epochs_run": state.epoch, "best_epoch": state.best_epoch,
                "best_valid_accuracy": state.best_accuracy, "best_valid_loss": state.best_loss,
                "stopped_early": state.stopped_early, "elapsed_s": round(state.elapsed_s, 2),
                "skipped": skipped.paths() if skipped else [], "history": state.history, "config": asdict(cfg),
                **(self.stages(state) if cfg.recipe == "finetune" else {})}

    @staticmethod
    def stages(state: RunState) -> dict:
        """The finetune recipe's two stages in metrics.json, and which one best.pt comes from."""
        stages = {}
        for name in ("head", "finetune"):
            rows = [row for row in state.history if row.get("stage") == name]
            stages[name] = {"epochs": len(rows), "seconds": round(sum(row.get("seconds", 0.0) for row in rows), 2),
                            "best_valid_accuracy": max((row["valid_accuracy"] for row in rows), default=None),
                            "best_valid_loss": min((row["valid_loss"] for row in rows), default=None)}
        kept = next((row.get("stage") for row in state.history if row["epoch"] == state.best_epoch), None)
        return {"stages": stages, "kept": kept}

    def close(self) -> None:
        self.writer.close()


def epoch_bar(first: int, epochs: int, enabled: bool = True) -> tqdm:
    """A progress bar over the epochs that ends green and exact when training stops early (see ``finish``)."""
    return tqdm(range(first, epochs), desc="epochs", unit="epoch", disable=not enabled, initial=first, total=epochs)


def finish_bar(bar: tqdm, epochs_run: int) -> None:
    """Close an epoch bar: an early stop is a success, so the bar ends full (green in Jupyter) at the epochs run."""
    if bar.total != epochs_run:
        bar.reset(total=epochs_run)  # also resizes Jupyter's widget
        bar.update(epochs_run)
    bar.close()


def make_optimizer(model: TransferNet, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam on the head (backbone frozen), or for ``whole`` on everything with the backbone at lr/10."""
    if cfg.recipe != "whole":
        model.freeze_backbone()
        return torch.optim.Adam(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    groups = [{"params": model.backbone.parameters(), "lr": cfg.lr * BACKBONE_LR_FACTOR},
              {"params": model.head.parameters(), "lr": cfg.lr}]
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_batches(cfg: TrainConfig, spec: RunSpec, model: TransferNet, split: Split, device: torch.device,
                 skipped: SkippedFiles) -> tuple[FeatureBatches | ImageBatches, nn.Module]:
    """The recipe's batch source and the part of the model it trains."""
    if cfg.recipe == "whole":
        return ImageBatches(split, spec.views, spec.valid_transform, cfg.batch_size, cfg.seed, device, skipped,
                            min_size=spec.prep.image_size, num_workers=cfg.num_workers), model
    batches = feature_batches(model, spec.backbone_id, split, spec.views, spec.valid_transform, cfg.batch_size,
                              cfg.seed, device, skipped, cache=cfg.feature_cache, min_size=spec.prep.image_size,
                              num_workers=cfg.num_workers, progress=cfg.progress,
                              reduced_precision=cfg.reduced_precision)
    return batches, model.head


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train (or resume) a run in ``cfg.out``; returns the metrics also written to metrics.json."""
    out = Path(cfg.out)
    lock = claim_run_folder(cfg.out, cfg.data, resume)  # refuses others' folders; one run at a time
    last_path = out / "last.pt"
    if resume:
        if not last_path.exists():
            raise CatdogError(f"{out}: nothing to resume (no last.pt). Start the run without --resume.")
        saved = load_checkpoint(last_path)
        if saved["meta"].get("optimizer_class", "Adam") != "Adam":
            raise CatdogError(f"{out}: this run was trained with {saved['meta']['optimizer_class']} in a notebook; "
                              "resume it there, or start a new run.")
        cfg = TrainConfig(**{**saved["config"], "progress": cfg.progress, "device": cfg.device})
    elif last_path.exists():
        raise CatdogError(f"{out}: already holds a run (last.pt). Use --resume {out} or another --out folder.")
    cfg = _check_config(cfg)
    spec = RunSpec.of(cfg)
    _ensure_writable(out)
    started = time.perf_counter()
    device = pick_device(cfg.device)
    split = prepare_split(cfg, out, resume)
    set_seed(cfg.seed)
    # A resumed run's weights all come from last.pt: no need to find the pretrained ones again.
    model = create_model(cfg.arch, len(split.classes), None if resume else cfg.weights).to(device)
    optimizer = make_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.1, patience=4)
    stopper = EarlyStopping(cfg.patience)
    state = RunState()
    if resume:
        model.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        stopper = EarlyStopping(**saved["early_stopping"])
        state = RunState(**saved["run_state"])
    elapsed_before = state.elapsed_s
    skipped = SkippedFiles()
    batches, net = make_batches(cfg, spec, model, split, device, skipped)
    # Feature extraction may draw random numbers; training starts from the seed (or where it stopped).
    if resume:
        torch.set_rng_state(saved["rng_state"])
    else:
        set_seed(cfg.seed)
    loss_fn = nn.CrossEntropyLoss()
    run = RunFolder(out, cfg, split, model, spec)
    if cfg.recipe == "finetune":
        run.meta["recipe"] = "features"  # the head stage's checkpoints hold a frozen backbone
    last_epoch = state.epoch if state.stopped_early or state.finetuned else cfg.epochs
    bar = epoch_bar(state.epoch, last_epoch, cfg.progress)
    try:
        for epoch in range(state.epoch, last_epoch):
            epoch_start = time.perf_counter()
            train_loss = train_epoch(net, batches.train_batches(epoch), loss_fn, optimizer)
            check_finite(train_loss, f"the training loss at epoch {epoch + 1}")
            valid_loss, valid_acc = validate(net, batches.valid_batches(), loss_fn)
            check_finite(valid_loss, f"the validation loss at epoch {epoch + 1}")
            row = {"epoch": epoch + 1, "train_loss": train_loss, "valid_loss": valid_loss,
                   "valid_accuracy": valid_acc, "lr": optimizer.param_groups[-1]["lr"],
                   "seconds": time.perf_counter() - epoch_start}
            if cfg.recipe == "finetune":
                row["stage"] = "head"
            state.history.append(row)
            run.log(row)
            bar.update()
            bar.set_postfix(train_loss=f"{train_loss:.3f}", valid_loss=f"{valid_loss:.3f}", valid_acc=f"{valid_acc:.3f}")
            if state.is_best(row):
                run.save_best(model, row)
            state.stopped_early = stopper.step(valid_loss)
            scheduler.step(valid_loss)
            state.epoch = epoch + 1
            state.elapsed_s = elapsed_before + time.perf_counter() - started
            run.save_last(model, optimizer, scheduler, stopper, state, skipped)
            if state.stopped_early:
                break
        finish_bar(bar, state.epoch)
        if cfg.recipe == "finetune" and not state.finetuned:
            finetune_stage(cfg, spec, model, split, device, skipped, run, state)
            state.elapsed_s = elapsed_before + time.perf_counter() - started
            run.save_last(model, optimizer, scheduler, stopper, state, skipped)
    finally:
        bar.close()
        run.close()
        lock.release()
    return run.metrics(state, skipped)


def finetune_stage(cfg: TrainConfig, spec: RunSpec, model: TransferNet, split: Split, device: torch.device,
                   skipped: SkippedFiles, run: RunFolder, state: RunState) -> None:
    """The finetune recipe's second stage, from the head stage's best model (kept as ``head.pt``; a run resumed
    inside this stage starts it again): the last stage and the head on cached stage inputs, BatchNorm in eval
    mode. A fine-tuned epoch replaces best.pt only if :func:`finetune.keeps` it."""
    head_rows = [row for row in state.history if row.get("stage") == "head"]
    frozen = max(head_rows, key=rank)  # the first of equals, as RunState.is_best picks it
    head_pt, best_pt = run.out / "head.pt", run.out / "best.pt"
    if head_pt.exists():  # resumed: best.pt may hold a fine-tuned epoch of the interrupted stage
        atomic_write_bytes(best_pt, head_pt.read_bytes())
    else:
        atomic_write_bytes(head_pt, best_pt.read_bytes())
    state.history, state.epoch = head_rows, len(head_rows)
    state.best_accuracy, state.best_loss, state.best_epoch = frozen["valid_accuracy"], frozen["valid_loss"], frozen["epoch"]
    model.load_state_dict(load_checkpoint(head_pt)["state_dict"])
    batches = stage_inputs(model, cfg.arch, spec.backbone_id, split, spec.views, spec.valid_transform, cfg.batch_size,
                           cfg.seed, device, skipped, cache=cfg.feature_cache, min_size=spec.prep.image_size,
                           num_workers=cfg.num_workers, progress=cfg.progress)
    _, stage = split_backbone(cfg.arch, model.backbone)
    stage.requires_grad_(True)
    net = StageNet(stage, model.head)
    optimizer = torch.optim.Adam([{"params": stage.parameters(), "lr": cfg.lr * STAGE_LR_FACTOR},
                                  {"params": model.head.parameters(), "lr": cfg.lr * HEAD_LR_FACTOR}],
                                 weight_decay=cfg.weight_decay)
    stopper, loss_fn, kept = EarlyStopping(FINETUNE_PATIENCE), nn.CrossEntropyLoss(), None
    run.meta["recipe"] = "finetune"
    set_seed(cfg.seed)
    for epoch in tqdm(range(cfg.finetune_epochs), desc="fine-tuning", unit="epoch", disable=not cfg.progress):
        epoch_start = time.perf_counter()
        train_loss = train_epoch(net, batches.train_batches(epoch), loss_fn, optimizer)
        valid_loss, valid_acc = validate(net, batches.valid_batches(), loss_fn)
        check_finite(train_loss + valid_loss, f"the loss at fine-tuning epoch {epoch + 1}")
        row = {"epoch": state.epoch + 1, "stage": "finetune", "train_loss": train_loss, "valid_loss": valid_loss,
               "valid_accuracy": valid_acc, "lr": optimizer.param_groups[0]["lr"],
               "seconds": time.perf_counter() - epoch_start}
        state.history.append(row)
        state.epoch += 1
        run.log(row)
        if keeps(row, frozen) and (kept is None or rank(row) > rank(kept)):
            kept = row
            state.best_accuracy, state.best_loss, state.best_epoch = valid_acc, valid_loss, row["epoch"]
            run.save_best(model, row)
        if stopper.step(valid_loss):
            break
    state.finetuned = True
