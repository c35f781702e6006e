"""Fine-tuning the backbone's last stage on cached stage inputs: the second stage of the finetune recipe.

The part of the backbone before its last stage (the *trunk*) stays frozen, so its output for a photo
never changes: like the head's features, it is computed once per photo and view and cached. Fine-tuning
then trains the last stage and the head on those cached activations, full epochs in seconds, instead
of pushing every photo through the whole network (``batching.stage_inputs`` caches them). Notebook 04 shows
:class:`StageNet` and the stage's training (a test keeps its code identical to this module's).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CatdogError
from ..model.backbones import get_arch

STAGE_DTYPE = torch.float16  # cached stage inputs: half the memory and disk of float32, ~3 significant digits


class StageNet(nn.Module):
    """The backbone's last stage and the head, trained on cached stage inputs.

    ``train()`` turns dropout on but leaves every BatchNorm layer in eval mode, so they keep the ImageNet
    statistics the head was trained with; ``batchnorm_train=True`` lets them switch (the bug of pitfall 5).
    """

    def __init__(self, stage: nn.Module, head: nn.Module, batchnorm_train: bool = False):
        super().__init__()
        self.stage, self.head, self.batchnorm_train = stage, head, batchnorm_train

    def forward(self, stage_inputs: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage(stage_inputs))

    def train(self, mode: bool = True) -> nn.Module:
        super().train(mode)
        if not self.batchnorm_train:
            for module in self.stage.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()  # normalize with the running statistics, and leave them as they are
        return self


def split_backbone(arch: str, backbone: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(trunk, stage)``: the frozen part and the last stage (through pooling) of ``arch``'s backbone,
    sharing its modules, so that ``stage(trunk(x)) == backbone(x)`` and training ``stage`` changes ``backbone``."""
    split = get_arch(arch).split
    if split is None:
        raise CatdogError(f"{arch}: fine-tuning on cached stage inputs is not set up for this architecture; "
                          "use the features recipe.")
    return split(backbone)


def stage_id(backbone_id: str, arch: str) -> str:
    """The feature cache's identity for the trunk's output (its own entries, never a head's features)."""
    return f"{backbone_id}/trunk-before:{get_arch(arch).last_stage[0]}/{str(STAGE_DTYPE).removeprefix('torch.')}"


def keeps(row: dict, frozen: dict) -> bool:
    """A fine-tuned epoch replaces the frozen recipe's model only if its valid loss is lower and its valid
    accuracy no lower: fine-tuning never makes the kept model worse on validation."""
    return row["valid_loss"] < frozen["valid_loss"] and row["valid_accuracy"] >= frozen["valid_accuracy"]
