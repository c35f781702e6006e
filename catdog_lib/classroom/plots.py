"""The course's figures. Each function builds a matplotlib Figure (no pyplot state) and returns it.

In a notebook, a Figure as a cell's last expression is shown once; elsewhere, save it with
``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from torchvision.utils import make_grid

from ..data.images import load_rgb
from ..data.layout import Sample
from ..data.transforms import Preprocessing, denormalize

if TYPE_CHECKING:
    from ..infer.gradcam import CamResult


def _grid(n: int, cols: int, cell: float = 1.9) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` image axes, ``cols`` per row, without ticks."""
    cols = max(1, min(cols, n))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(cell * cols, (cell + 0.35) * rows), layout="constrained")
    axes = list(np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel())
    for ax in axes:
        ax.axis("off")
    return fig, axes


def _thumbnail(path: str | Path, size: int) -> np.ndarray:
    image = load_rgb(path, size)
    image.thumbnail((size, size))
    return np.asarray(image)


def _show_tensor(ax: Axes, image: torch.Tensor, title: str) -> None:
    """A C x H x W tensor in [0, 1] (1 or 3 channels), titled with its shape."""
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())  # matplotlib wants H x W x C
    ax.set_title(f"{title}\n{tuple(image.shape)}", fontsize=8)


def plot_sample_grid(samples: Sequence[Sample], classes: Sequence[str], rows: int = 4, cols: int = 8,
                     seed: int = 0, size: int = 160) -> Figure:
    """The tutorial's 4 x 8 grid: randomly chosen images titled with their class."""
    picks = np.random.default_rng(seed).choice(len(samples), rows * cols, replace=len(samples) < rows * cols)
    fig, axes = _grid(rows * cols, cols)
    for ax, index in zip(axes, picks):
        path, label = samples[index]
        ax.imshow(_thumbnail(path, size))
        ax.set_title(classes[label], fontsize=9)
    return fig


def show_batch(images: torch.Tensor, labels: torch.Tensor, classes: Sequence[str], prep: Preprocessing,
               nrow: int = 8) -> Figure:
    """One DataLoader batch laid out by ``torchvision.utils.make_grid``, un-normalized, labels on top."""
    padding = 2
    grid = make_grid(denormalize(images.float().cpu(), prep), nrow=nrow, padding=padding)
    cols = min(nrow, len(images))
    rows = -(-len(images) // nrow)
    fig = Figure(figsize=(1.8 * cols, 1.9 * rows), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid.permute(1, 2, 0).numpy())
    height, width = images.shape[-2:]
    for i, label in enumerate(labels.tolist()):
        x = (i % nrow) * (width + padding) + padding + 4
        y = (i // nrow) * (height + padding) + padding + 4
        ax.text(x, y, classes[label], va="top", fontsize=9, color="white",
                bbox={"facecolor": "black", "alpha": 0.6, "pad": 1, "linewidth": 0})
    ax.axis("off")
    return fig


def plot_augmentations(image: torch.Tensor, demos: Mapping[str, Callable], draws: int = 3,
                       seed: int = 0) -> Figure:
    """One row per transform: the original, then ``draws`` results, each titled with what happened
    (mirrored or not; a transform that gives the same result every time is shown once, as not random)."""
    torch.manual_seed(seed)
    fig, axes = _grid(len(demos) * (draws + 1), draws + 1, cell=2.2)
    for row, (name, transform) in enumerate(demos.items()):
        cells = axes[row * (draws + 1):(row + 1) * (draws + 1)]
        _show_tensor(cells[0], image, "original")
        results = [transform(image) for _ in range(draws)]
        if all(torch.equal(result, results[0]) for result in results):
            _show_tensor(cells[1], results[0], f"{name}\n(not random: same every draw)")
            for ax in cells[2:]:
                ax.set_axis_off()
            continue
        for draw, (ax, result) in enumerate(zip(cells[1:], results), start=1):
            same_shape = result.shape == image.shape
            what = ("mirrored" if same_shape and torch.equal(result, image.flip(-1))
                    else "unchanged" if same_shape and torch.equal(result, image) else "")
            _show_tensor(ax, result, f"{name} #{draw}" + (f"\n{what}" if what else ""))
    return fig


def plot_history(history: Sequence[Mapping[str, float]]) -> Figure:
    """Learning curves from ``metrics["history"]``: losses, valid accuracy (best epoch marked), learning rate."""
    epochs = [row["epoch"] for row in history]
    best = max(history, key=lambda row: (row["valid_accuracy"], -row["valid_loss"]))["epoch"]  # as best.pt
    fig = Figure(figsize=(13, 3.6), layout="constrained")
    loss_ax, acc_ax, lr_ax = fig.subplots(1, 3)
    loss_ax.plot(epochs, [row["train_loss"] for row in history], "o-", label="train")
    loss_ax.plot(epochs, [row["valid_loss"] for row in history], "o-", label="valid")
    loss_ax.set(title="loss (cross-entropy)", xlabel="epoch")
    loss_ax.legend()
    acc_ax.plot(epochs, [row["valid_accuracy"] for row in history], "o-", color="tab:green")
    acc_ax.axvline(best, color="gray", linestyle="--", label=f"best: epoch {best}")
    acc_ax.set(title="valid accuracy", xlabel="epoch")
    acc_ax.legend()
    lr_ax.plot(epochs, [row["lr"] for row in history], "o-", color="tab:red")
    lr_ax.set(title="learning rate (ReduceLROnPlateau)", xlabel="epoch", yscale="log")
    return fig


def plot_learning_curve(sizes: Sequence[int], accuracies: Mapping[str, Sequence[Sequence[float]]]) -> Figure:
    """Valid accuracy against training photos per class, one line per method: the mean over seeds, with a band
    of ± one standard deviation (``accuracies[method][i]``: one accuracy per seed at ``sizes[i]``)."""
    fig = Figure(figsize=(6.5, 3.8), layout="constrained")
    ax = fig.subplots()
    for method, per_size in accuracies.items():
        values = np.asarray(per_size, dtype=float)
        mean, sd = values.mean(axis=1), values.std(axis=1, ddof=1) if values.shape[1] > 1 else 0 * values[:, 0]
        ax.plot(sizes, mean, "o-", label=f"{method} (mean of {values.shape[1]} seeds)")
        ax.fill_between(sizes, mean - sd, mean + sd, alpha=0.25)
    ax.set(xscale="log", xlabel="training photos per class", ylabel="valid accuracy", title="learning curve (± 1 sd)")
    ax.set_xticks(list(sizes), [str(n) for n in sizes])
    ax.legend()
    return fig


def plot_confusion(confusion: Sequence[Sequence[int]], classes: Sequence[str]) -> Figure:
    """Confusion matrix: rows are the true class, columns the predicted one, counts in the cells."""
    matrix = np.asarray(confusion)
    fig = Figure(figsize=(1.6 * len(classes) + 2, 1.4 * len(classes) + 1.2), layout="constrained")
    ax = fig.subplots()
    shown = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(shown, ax=ax)
    ticks = range(len(classes))
    ax.set(xticks=ticks, yticks=ticks, xticklabels=classes, yticklabels=classes,
           xlabel="predicted", ylabel="true", title="confusion matrix")
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black")
    return fig


def plot_misclassified(rows: Sequence[tuple[str, int, int, float]], classes: Sequence[str],
                       max_images: int = 8, cols: int = 4, size: int = 160) -> Figure:
    """Wrong predictions from ``Evaluation.misclassified()``: true class, predicted class and its probability."""
    rows = list(rows)[:max_images]
    if not rows:
        fig = Figure(figsize=(4, 1))
        ax = fig.subplots()
        ax.text(0.5, 0.5, "no misclassified images", ha="center", va="center")
        ax.axis("off")
        return fig
    fig, axes = _grid(len(rows), cols, cell=2.3)
    for ax, (path, true, predicted, probability) in zip(axes, rows):
        ax.imshow(_thumbnail(path, size))
        ax.set_title(f"true {classes[true]}\npredicted {classes[predicted]} ({probability:.2f})",
                     fontsize=8, color="tab:red")
    return fig


def plot_prediction(path: str | Path, predicted: str, probability: float, true: str | None = None,
                    size: int = 260) -> Figure:
    """One photo titled with the model's answer (and the true class when known)."""
    fig = Figure(figsize=(3.5, 3.8), layout="constrained")
    ax = fig.subplots()
    ax.imshow(_thumbnail(path, size))
    truth = f" / true: {true}" if true is not None else ""
    ax.set_title(f"predicted: {predicted} ({probability:.2f}){truth}", fontsize=9)
    ax.axis("off")
    return fig


def plot_gradcam(results: Sequence[CamResult], classes: Sequence[str], alpha: float = 0.5) -> Figure:
    """Each image as the network saw it, above its Grad-CAM heatmap for the predicted class."""
    fig, axes = _grid(2 * len(results), len(results), cell=2.4)
    for i, result in enumerate(results):
        axes[i].imshow(result.image)
        axes[i].set_title(Path(result.path).name, fontsize=8)
        axes[len(results) + i].imshow(result.overlay(alpha))
        axes[len(results) + i].set_title(f"{classes[result.class_index]} ({result.probability:.2f})", fontsize=9)
    return fig
