"""The tutorial's image transforms, plus the normalization each backbone was pretrained with."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """Input size and normalization a backbone expects; stored in every checkpoint."""

    image_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def as_dict(self) -> dict:
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        return cls(int(data["image_size"]), tuple(data["mean"]), tuple(data["std"]))


def eval_transform(prep: Preprocessing) -> T.Compose:
    """Resize to a square (as the tutorial's Resize([224, 224])), to tensor, normalize."""
    return T.Compose([
        T.Resize((prep.image_size, prep.image_size)),
        T.ToTensor(),
        T.Normalize(prep.mean, prep.std),
    ])


def train_transform(prep: Preprocessing, flip_p: float = 0.3) -> T.Compose:
    """The tutorial's training transform: Resize, RandomHorizontalFlip(0.3), plus normalization."""
    return T.Compose([
        T.Resize((prep.image_size, prep.image_size)),
        T.RandomHorizontalFlip(p=flip_p),
        T.ToTensor(),
        T.Normalize(prep.mean, prep.std),
    ])


def demo_transforms() -> dict[str, torch.nn.Module]:
    """The augmentation demos of the tutorial, applied to a 3xHxW tensor in [0, 1]."""
    return {
        "grayscale": T.Grayscale(),
        "random rotation (0-180 degrees)": T.RandomRotation(degrees=(0, 180)),
        "random crop 128x128": T.RandomCrop(size=(128, 128)),
        "horizontal flip (p=0.3)": T.RandomHorizontalFlip(p=0.3),
    }


def denormalize(images: torch.Tensor, prep: Preprocessing) -> torch.Tensor:
    """Undo Normalize for display: back to [0, 1]."""
    mean = torch.tensor(prep.mean, dtype=images.dtype).view(-1, 1, 1)
    std = torch.tensor(prep.std, dtype=images.dtype).view(-1, 1, 1)
    return (images * std + mean).clamp(0, 1)
