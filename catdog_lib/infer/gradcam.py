"""Grad-CAM: which parts of a photo made the model say "cat" or "dog".

Grad-CAM weights the feature maps of a late convolutional layer by how much the chosen class's
score grows with each map (the mean gradient), sums them, and keeps the positive part: :func:`grad_cam`,
the code notebook 05 shows (the `grad-cam` package only colours the overlay). The course's backbones
are frozen (``requires_grad=False``), so nothing in the network asks for gradients; the input is made
to require them, which makes the target layer's activations part of the autograd graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam.utils.image import show_cam_on_image
from torch import nn
from torch.nn import functional as F

from ..data.images import load_rgb
from ..data.transforms import denormalize, eval_transform
from ..model.backbones import TransferNet, get_arch
from .evaluation import LoadedModel


@dataclass(frozen=True)
class CamResult:
    """One image as the network saw it (H x W x 3 in [0, 1]), its heatmap (H x W in [0, 1]) for the class
    explained (by default the predicted one) and the model's probability of that class."""

    path: str
    image: np.ndarray
    heatmap: np.ndarray
    class_index: int
    probability: float

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The heatmap blended over the image (jet colours), H x W x 3 uint8."""
        return show_cam_on_image(self.image.astype(np.float32), self.heatmap, use_rgb=True, image_weight=1 - alpha)


def target_layer(model: TransferNet, arch: str) -> nn.Module:
    """The layer whose feature maps Grad-CAM weighs: the end of the backbone's last stage (``Arch.last_stage``),
    the last one before global average pooling."""
    return model.backbone.get_submodule(get_arch(arch).last_stage[-1])


def grad_cam(model: nn.Module, layer: nn.Module, images: torch.Tensor, classes: list[int]) -> torch.Tensor:
    """Grad-CAM heatmaps (N x H x W in [0, 1]) of ``classes`` for ``images`` (N x 3 x H x W, normalized)."""
    kept = {}
    hook = layer.register_forward_hook(lambda module, inputs, output: kept.update(maps=output))
    try:
        with torch.enable_grad():
            images = images.detach().requires_grad_(True)  # frozen backbone: only the input makes maps need grads
            scores = model(images)[torch.arange(len(images)), torch.as_tensor(classes)]  # each image's class score
            (gradients,) = torch.autograd.grad(scores.sum(), kept["maps"])  # d score / d feature maps
    finally:
        hook.remove()
    weights = gradients.mean(dim=(2, 3), keepdim=True)  # one weight per feature map: its mean gradient
    cam = torch.relu((weights * kept["maps"].detach()).sum(dim=1, keepdim=True))  # where maps raise the score
    cam = F.interpolate(cam.float(), size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return cam / cam.amax(dim=(1, 2), keepdim=True).clamp(min=1e-7)  # each heatmap scaled to [0, 1]


Cam = Callable[[nn.Module, nn.Module, torch.Tensor, list[int]], torch.Tensor]


def grad_cam_maps(model: TransferNet, layer: nn.Module, images: torch.Tensor,
                  classes: list[int] | None = None, cam: Cam = grad_cam) -> np.ndarray:
    """Heatmaps (N x H x W in [0, 1]) of ``images`` (N x 3 x H x W, normalized) for ``classes``.

    ``classes`` defaults to each image's predicted class. Works with frozen parameters and
    channels_last models. ``cam`` computes the heatmaps (:func:`grad_cam`; notebook 05 passes its own copy).
    """
    device = next(model.parameters()).device
    images = images.to(device).contiguous(memory_format=torch.channels_last)
    if classes is None:
        with torch.no_grad():
            classes = model(images).argmax(1).tolist()
    return cam(model, layer, images, classes).detach().cpu().numpy()


def explain(loaded: LoadedModel, paths: list[str | Path], classes: list[int] | None = None,
            cam: Cam = grad_cam) -> list[CamResult]:
    """Grad-CAM of each image file for its class in ``classes`` (default: the class the model predicts).

    ``cam`` computes the heatmaps: notebook 05 passes the function it shows, so a student's edit takes effect.
    """
    transform = eval_transform(loaded.prep)
    images = torch.stack([transform(load_rgb(path, loaded.prep.image_size)) for path in paths])
    model = loaded.model.eval()
    with torch.no_grad():
        probabilities = model(images.to(loaded.device).contiguous(memory_format=torch.channels_last))
        probabilities = probabilities.float().softmax(1).cpu()
    chosen = probabilities.argmax(1).tolist() if classes is None else list(classes)
    maps = grad_cam_maps(model, target_layer(model, loaded.meta["arch"]), images, chosen, cam)
    shown = denormalize(images, loaded.prep).permute(0, 2, 3, 1).numpy()
    return [CamResult(str(path), shown[i], maps[i], chosen[i], float(probabilities[i, chosen[i]]))
            for i, path in enumerate(paths)]
