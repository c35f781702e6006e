"""Grad-CAM: which parts of a photo made the model say "cat" or "dog".

Grad-CAM weights the feature maps of a late convolutional layer by how much the chosen class's
score grows with each map (the mean gradient), sums them, and keeps the positive part. It uses the
`grad-cam` package (``pytorch_grad_cam``). The course's backbones are frozen
(``requires_grad=False``), so nothing in the network asks for gradients; the input is made to
require them, which makes the target layer's activations part of the autograd graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.image import show_cam_on_image
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from .backbones import TransferNet, get_arch
from .evaluation import LoadedModel
from .images import load_rgb
from .transforms import denormalize, eval_transform


@dataclass(frozen=True)
class CamResult:
    """One image as the network saw it (H x W x 3 in [0, 1]), its heatmap (H x W in [0, 1]) and prediction."""

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


def grad_cam_maps(model: TransferNet, layer: nn.Module, images: torch.Tensor,
                  classes: list[int] | None = None) -> np.ndarray:
    """Heatmaps (N x H x W in [0, 1]) of ``images`` (N x 3 x H x W, normalized) for ``classes``.

    ``classes`` defaults to each image's predicted class. Works with frozen parameters and
    channels_last models: the input requires grad, so the target activations do too.
    """
    device = next(model.parameters()).device
    images = images.to(device).contiguous(memory_format=torch.channels_last)
    targets = None if classes is None else [ClassifierOutputTarget(index) for index in classes]
    cam = GradCAM(model=model, target_layers=[layer])
    cam.compute_input_gradient = True  # frozen backbone: gradients reach the activations through the input
    try:
        with torch.enable_grad():
            return cam(input_tensor=images, targets=targets)
    finally:
        cam.activations_and_grads.release()  # remove the hooks (GradCAM's `with` would hide IndexErrors)
        model.zero_grad(set_to_none=True)


def explain(loaded: LoadedModel, paths: list[str | Path]) -> list[CamResult]:
    """Grad-CAM for the predicted class of each image file."""
    transform = eval_transform(loaded.prep)
    images = torch.stack([transform(load_rgb(path, loaded.prep.image_size)) for path in paths])
    model = loaded.model.eval()
    with torch.no_grad():
        probabilities = model(images.to(loaded.device).contiguous(memory_format=torch.channels_last))
        probabilities = probabilities.float().softmax(1).cpu()
    predicted = probabilities.argmax(1).tolist()
    maps = grad_cam_maps(model, target_layer(model, loaded.meta["arch"]), images, predicted)
    shown = denormalize(images, loaded.prep).permute(0, 2, 3, 1).numpy()
    return [CamResult(str(path), shown[i], maps[i], predicted[i], float(probabilities[i, predicted[i]]))
            for i, path in enumerate(paths)]
