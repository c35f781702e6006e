"""A model ready to use: load a checkpoint or an exported ONNX file as a model, measure it, predict.

Test-time augmentation (``tta=True``) averages the softmax of each photo's ``TTA_VIEWS``, the photo and its
mirror image: the classifier was trained on mirrored photos too, so both views are fair questions and their
average is a steadier answer. A frozen-backbone checkpoint gets both views' features from the feature cache,
each view cached apart: after a plain evaluation, TTA costs one more pass per photo, once.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torchvision import transforms as T
from tqdm.auto import tqdm

from ..config import cache_dir
from ..data.datasets import SkippedFiles, iterate_good, make_loader
from ..data.layout import (
    IMAGE_EXTENSIONS,
    Sample,
    evaluation_folders,
    is_hidden_or_junk,
    is_image_file,
    match_classes,
    natural_key,
)
from ..data.transforms import Preprocessing, eval_transform
from ..devices import inference_autocast, pick_device, to_fast_layout
from ..errors import CatdogError
from ..model.backbones import TransferNet, create_model
from ..model.checkpoint import load_checkpoint
from ..model.engine import BackboneRunner, backbone_runner, onnx_session
from ..model.features import ViewSet, eval_views, extract_features
from ..model.modelfile import ONNX_FORMAT, check_checkpoint, check_onnx

if TYPE_CHECKING:
    import onnxruntime


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, with what it needs to be used."""

    model: TransferNet
    meta: dict
    device: torch.device
    runner: BackboneRunner | None = field(default=None, repr=False)  # the frozen backbone's, built on first use

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def prep(self) -> Preprocessing:
        return Preprocessing.from_dict(self.meta["preprocessing"])

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Float32 logits on the CPU; a frozen backbone (``features`` recipe) runs on the inference engine."""
        if self.meta.get("recipe") != "features":
            with inference_autocast(self.device):
                return self.model(images.to(self.device).contiguous(memory_format=torch.channels_last)).float().cpu()
        if self.runner is None:
            self.runner = backbone_runner(self.model.backbone, self.meta.get("backbone_weights", self.meta["arch"]),
                                          self.device)
        return self.model.head(self.runner(images).to(self.device)).float().cpu()


def load_model(checkpoint: str | Path, device: str = "auto") -> LoadedModel:
    """Rebuild the architecture named in the checkpoint and load its weights (no download needed)."""
    data = load_checkpoint(Path(checkpoint))
    meta = check_checkpoint(checkpoint, data)
    model = create_model(meta["arch"], len(meta["classes"]), weights=None, head=meta.get("head"))
    try:
        model.load_state_dict(data["state_dict"])
    except RuntimeError as error:
        raise CatdogError(f"{checkpoint}: weights do not fit a {meta['arch']} model ({error}).") from None
    torch_device = pick_device(device)
    return LoadedModel(to_fast_layout(model.eval(), torch_device), meta, torch_device)


@dataclass
class OnnxClassifier:
    """An exported model in an ONNX Runtime session, with the class names and preprocessing from its metadata."""

    path: Path
    session: onnxruntime.InferenceSession
    classes: list[str]
    prep: Preprocessing
    arch: str

    @property
    def transform(self) -> T.Compose:
        """Photo to model input: resize to a square, to a tensor in [0, 1] (the model normalizes)."""
        return T.Compose([T.Resize((self.prep.image_size, self.prep.image_size)), T.ToTensor()])

    def probabilities(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """Class probabilities (N x classes) for a batch from :attr:`transform`."""
        batch = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
        return self.session.run(["probabilities"], {"image": batch})[0]


def load_onnx(path: str | Path) -> OnnxClassifier:
    """Open an ONNX file written by :func:`catdog_lib.infer.export.export_onnx` with ONNX Runtime (CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CatdogError(f"{path}: no such ONNX file. Write one with "
                          f"`catdog export --checkpoint best.pt --out {path}`.")
    try:
        session = onnx_session(path)
    except Exception as error:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
        raise CatdogError(f"{path}: not a readable ONNX model ({type(error).__name__}); "
                          "export it again with `catdog export`.") from None
    meta = session.get_modelmeta().custom_metadata_map
    if meta.get("format") != ONNX_FORMAT:
        raise CatdogError(f"{path}: an ONNX model without catdog's metadata (classes, image size); "
                          "export it with `catdog export`.")
    classes, prep = check_onnx(path, meta, session.get_inputs(), session.get_outputs())
    return OnnxClassifier(path, session, classes, prep, meta.get("arch", "?"))


@dataclass
class Evaluation:
    """Test metrics: accuracy, mean loss, per-class precision/recall, confusion matrix, each prediction."""

    classes: list[str]
    accuracy: float
    loss: float
    n: int
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]
    skipped: list[str]
    paths: list[str] = field(repr=False)
    labels: list[int] = field(repr=False)
    probabilities: list[list[float]] = field(repr=False)
    tta: bool = False

    @property
    def predictions(self) -> list[int]:
        return [max(range(len(p)), key=p.__getitem__) for p in self.probabilities]

    def misclassified(self) -> list[tuple[str, int, int, float]]:
        """(path, true label, predicted label, probability of the prediction), most confident first."""
        wrong = [(path, label, pred, self.probabilities[i][pred])
                 for i, (path, label, pred) in enumerate(zip(self.paths, self.labels, self.predictions))
                 if pred != label]
        return sorted(wrong, key=lambda row: -row[3])

    def summary(self) -> dict:
        return {"accuracy": self.accuracy, "loss": self.loss, "n": self.n, "per_class": self.per_class,
                "confusion": self.confusion, "classes": self.classes, "skipped": self.skipped, "tta": self.tta}


@torch.no_grad()
def evaluation_loop(model: nn.Module, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """The tutorial's `evaluation`: eval mode (dropout off, batch norm on its running statistics), no gradients,
    every test batch through the model; all logits (float32, on the CPU) and labels."""
    model.eval()
    outputs, labels = [], []
    for inputs, targets in batches:
        outputs.append(model(inputs).float().cpu())
        labels.append(targets.cpu())
    return torch.cat(outputs), torch.cat(labels)


def confusion_precision_recall(labels: torch.Tensor, predictions: torch.Tensor,
                               n_classes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The confusion matrix (row: true class, column: predicted class) and each class's precision and recall."""
    confusion = torch.zeros(n_classes, n_classes, dtype=torch.long)
    for true, predicted in zip(labels.tolist(), predictions.tolist()):
        confusion[true, predicted] += 1
    right = confusion.diag().float()  # photos of each class predicted as that class
    precision = right / confusion.sum(dim=0).clamp(min=1)  # of the photos predicted as a class, the share that are
    recall = right / confusion.sum(dim=1).clamp(min=1)  # of the photos of a class, the share found
    return confusion, precision, recall


TTA_VIEWS = ("plain", "mirrored")  # what test-time augmentation asks the model about: each photo, its mirror image


def tta_views(tta: bool) -> tuple[str, ...]:
    """The views of each photo that an evaluation or prediction averages: ``TTA_VIEWS``, or the plain one."""
    return TTA_VIEWS if tta else TTA_VIEWS[:1]


def batch_views(images: torch.Tensor, tta: bool) -> list[torch.Tensor]:
    """A batch of model inputs ``[N, 3, H, W]`` in each of :func:`tta_views` (mirrored: flipped left to right)."""
    return [images.flip(-1) if view == "mirrored" else images for view in tta_views(tta)]


class _Views(nn.Module):
    """A loaded model's logits for each view of a batch, ``[image, view, class]``."""

    def __init__(self, loaded: LoadedModel, tta: bool):
        super().__init__()
        self.model = loaded.model  # a submodule, so the loop's eval() reaches it
        self.loaded, self.tta = loaded, tta

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.loaded.logits(view) for view in batch_views(images, self.tta)], dim=1)


def _batches(inputs: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device):
    for start in range(0, len(labels), batch_size):
        yield inputs[start:start + batch_size].to(device), labels[start:start + batch_size]


def _no_logits(n_views: int, n_classes: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    return torch.empty(n_views, 0, n_classes), torch.empty(0, dtype=torch.long), []


Loop = Callable[[nn.Module, Iterable[tuple[torch.Tensor, torch.Tensor]]], tuple[torch.Tensor, torch.Tensor]]


def _logits(loaded: LoadedModel, samples: list[Sample], skipped: SkippedFiles, use_cache: bool, progress: bool,
            batch_size: int, tta: bool, loop: Loop) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Logits ``[view, image, class]`` for the good images among ``samples`` (views: :func:`tta_views`),
    every batch run by ``loop``; frozen-backbone models reuse the feature cache."""
    model, device = loaded.model, loaded.device
    views = tta_views(tta)
    if use_cache and loaded.meta.get("recipe") == "features":
        transform = eval_transform(loaded.prep)
        # one view set per view, cached apart: a plain evaluation's features (eval_views) serve TTA too
        view_sets = {"plain": eval_views(transform),
                     "mirrored": ViewSet(T.Compose([transform, T.RandomHorizontalFlip(p=1.0)]), ("mirrored",))}
        per_view = [extract_features(model.backbone, loaded.meta["backbone_weights"], samples, view_sets[view],
                                     device, skipped, cache_root=cache_dir() / "features",
                                     min_size=loaded.prep.image_size, batch_size=batch_size, progress=progress)
                    for view in views]
        if any(feats.paths != per_view[0].paths for feats in per_view):
            raise CatdogError("the test photos changed while they were read; run the evaluation again.")
        if not per_view[0].paths:
            return _no_logits(len(views), len(loaded.classes))
        logits = torch.stack([loop(model.head, _batches(feats.features[0], feats.labels, batch_size, device))[0]
                              for feats in per_view])
        return logits, per_view[0].labels, [str(p) for p in per_view[0].paths]
    indexed = [(path, index) for index, (path, _) in enumerate(samples)]  # label slot carries the index
    loader = make_loader(indexed, eval_transform(loaded.prep), batch_size, min_size=loaded.prep.image_size)
    batches = iterate_good(loader, skipped)  # each photo decoded once for every view
    first = next(batches, None)
    if first is None:
        return _no_logits(len(views), len(loaded.classes))
    logits, kept = loop(_Views(loaded, tta), itertools.chain([first], batches))
    labels = torch.tensor([samples[i][1] for i in kept.tolist()], dtype=torch.long)
    return logits.transpose(0, 1), labels, [str(samples[i][0]) for i in kept.tolist()]


def mean_log_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """Log of the softmax averaged over views: ``[view, image, class]`` -> ``[image, class]``.

    With one view this is exactly ``log_softmax`` (so the loss is the usual cross-entropy).
    """
    return torch.logsumexp(logits.log_softmax(-1), dim=0) - math.log(len(logits))


def evaluate(loaded: LoadedModel, samples: list[Sample], use_cache: bool = True, progress: bool = True,
             batch_size: int = 32, tta: bool = False, loop: Loop = evaluation_loop) -> Evaluation:
    """Accuracy, loss, per-class metrics and predictions of ``loaded`` on ``samples``.

    ``tta``: average the probabilities of each photo and its mirror image (test-time augmentation).
    ``loop`` runs the batches through the model (:func:`evaluation_loop`): notebook 05 passes the copy it
    shows, so a student's edit of it takes effect.
    """
    skipped = SkippedFiles()
    logits, labels, paths = _logits(loaded, samples, skipped, use_cache, progress, batch_size, tta, loop)
    if len(labels) == 0:
        raise CatdogError("no readable images to evaluate; check the folder with `catdog data check`.")
    log_probabilities = mean_log_probabilities(logits)
    loss = torch.nn.functional.nll_loss(log_probabilities, labels).item()
    probabilities = log_probabilities.exp()
    predictions = probabilities.argmax(1)
    classes = loaded.classes
    confusion, precision, recall = confusion_precision_recall(labels, predictions, len(classes))
    per_class = {name: {"precision": float(precision[i]), "recall": float(recall[i]), "n": int(confusion[i].sum())}
                 for i, name in enumerate(classes)}
    return Evaluation(
        classes=classes, accuracy=float((predictions == labels).float().mean()), loss=loss, n=len(labels),
        per_class=per_class, confusion=confusion.tolist(),
        skipped=skipped.paths(), paths=paths, labels=labels.tolist(), probabilities=probabilities.tolist(), tta=tta)


def samples_to_evaluate(root: str | Path, classes: list[str]) -> list[Sample]:
    """Every photo of a dataset root's test split (or of a class-folder root), labelled by ``classes``."""
    return match_classes(evaluation_folders(Path(root)), classes)


def evaluate_folder(loaded: LoadedModel, root: str | Path, **kwargs) -> Evaluation:
    """Evaluate on a dataset root (its test split) or a class-folder root, matching class names."""
    return evaluate(loaded, samples_to_evaluate(root, loaded.classes), **kwargs)


@dataclass(frozen=True)
class Prediction:
    """One photo's predicted class and its probability, every class's probability, or why it was skipped."""

    path: str
    label: str | None
    probability: float
    error: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        if self.error:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "label": self.label, "probability": self.probability,
                "probabilities": self.probabilities}


PROGRESS_AFTER = 32  # photos; fewer are done before a progress bar would help


def image_files(paths: Sequence[str | Path]) -> list[Path]:
    """The files as given, and each folder's image files (subfolders too, sorted by name)."""
    files = []
    for path in map(Path, paths):
        if not path.is_dir():
            files.append(path)
            continue
        found = sorted((p for p in path.rglob("*") if is_image_file(p)
                        and not any(is_hidden_or_junk(Path(part)) for part in p.relative_to(path).parts)),
                       key=lambda p: (p.parent, natural_key(p)))
        if not found:
            raise CatdogError(f"{path}: no images in this folder (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}).")
        files.extend(found)
    return files


def _torch_probabilities(loaded: LoadedModel, images: torch.Tensor) -> np.ndarray:
    return loaded.logits(images).softmax(1).numpy()


def predict(model: LoadedModel | OnnxClassifier, paths: Sequence[str | Path], batch_size: int = 32,
            progress: bool = True, tta: bool = False) -> list[Prediction]:
    """Class and probabilities for each image file, folders expanded, in batches; input order kept.

    ``model`` is a checkpoint's :class:`LoadedModel` or an exported ONNX model (:func:`load_onnx`). A bad file
    gets an error instead of a label. A progress bar appears past ``PROGRESS_AFTER`` photos. ``tta``: average
    the probabilities of each photo's :func:`tta_views`.
    """
    files = image_files(paths)
    if isinstance(model, LoadedModel):
        transform, run = eval_transform(model.prep), partial(_torch_probabilities, model)
    else:
        transform, run = model.transform, model.probabilities
    indexed = [(path, index) for index, path in enumerate(files)]  # the label slot carries the index
    workers = 0 if len(files) <= batch_size else None  # starting workers costs more than one batch
    loader = make_loader(indexed, transform, batch_size, num_workers=workers, min_size=model.prep.image_size)
    results: dict[int, Prediction] = {}
    problems: dict[str, str] = {}
    with tqdm(total=len(files), unit="photo", disable=not progress or len(files) <= PROGRESS_AFTER,
              file=sys.stderr) as bar:
        for images, indices, bad in loader:
            problems.update(bad)
            if len(indices):
                probabilities = np.mean([run(view) for view in batch_views(images, tta)], axis=0)
                for index, row in zip(indices.tolist(), probabilities):
                    best = int(row.argmax())
                    results[index] = Prediction(str(files[index]), model.classes[best], float(row[best]),
                                                probabilities=dict(zip(model.classes, map(float, row))))
            bar.update(len(indices) + len(bad))
    for index, path in enumerate(files):
        if index not in results:
            reason = problems.get(str(path), "unreadable image")
            results[index] = Prediction(str(path), None, 0.0, reason.removeprefix(f"{path}: "))
    return [results[index] for index in range(len(files))]
