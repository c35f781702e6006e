"""The finetune recipe: the backbone cut at its last stage, BatchNorm kept in eval mode, stage inputs cached,
and a fine-tuned model kept only when it is no worse on validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from catdog_lib import batching, finetune
from catdog_lib.model.backbones import ARCHS, create_model, pretrained
from catdog_lib.model.checkpoint import load_checkpoint
from catdog_lib.data.datasets import SkippedFiles
from catdog_lib.model.features import eval_views, training_views
from catdog_lib.data.split import Split
from catdog_lib.train.training import TrainConfig, train, validate
from catdog_lib.data.transforms import eval_transform, train_transform
from conftest import make_dataset

CPU = torch.device("cpu")


@pytest.mark.parametrize("arch", [name for name, arch in ARCHS.items() if arch.split])
def test_trunk_then_stage_is_the_backbone(arch: str) -> None:
    """The cut shares the backbone's modules and computes exactly what it computes."""
    torch.manual_seed(0)
    backbone, _ = pretrained(arch, weights=None)
    trunk, stage = finetune.split_backbone(arch, backbone.eval())
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(stage(trunk(images)), backbone(images))
    assert {id(p) for p in stage.parameters()} <= {id(p) for p in backbone.parameters()}
    assert set(map(id, trunk.parameters())).isdisjoint(map(id, stage.parameters()))


def test_stagenet_keeps_batchnorm_in_eval_mode_unless_asked() -> None:
    torch.manual_seed(0)
    backbone, _ = pretrained("efficientnet_lite0", weights=None)
    trunk, stage = finetune.split_backbone("efficientnet_lite0", backbone)
    head = nn.Sequential(nn.Dropout(0.2), nn.Linear(backbone.num_features, 2))
    inputs = trunk.eval()(torch.randn(4, 3, 64, 64)).detach()
    for batchnorm_train in (False, True):
        net = finetune.StageNet(stage, head, batchnorm_train=batchnorm_train).train()
        norms = [m for m in net.stage.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        before = [m.running_mean.clone() for m in norms]
        with torch.no_grad():
            net(inputs)
        assert net.head[0].training  # dropout on in both
        assert all(m.training is batchnorm_train for m in norms)
        moved = any(not torch.equal(b, m.running_mean) for b, m in zip(before, norms))
        assert moved is batchnorm_train


def test_keeps_a_fine_tuned_epoch_only_when_no_worse() -> None:
    frozen = {"valid_loss": 0.020, "valid_accuracy": 0.995}
    assert finetune.keeps({"valid_loss": 0.017, "valid_accuracy": 0.995}, frozen)  # lower loss, same accuracy
    assert finetune.keeps({"valid_loss": 0.011, "valid_accuracy": 0.9975}, frozen)
    assert not finetune.keeps({"valid_loss": 0.017, "valid_accuracy": 0.9925}, frozen)  # one photo fewer
    assert not finetune.keeps({"valid_loss": 0.021, "valid_accuracy": 1.0}, frozen)  # higher loss
    assert not finetune.keeps({"valid_loss": 0.020, "valid_accuracy": 0.995}, frozen)  # no better


def _config(root: Path, out: Path, **overrides) -> TrainConfig:
    """On the CPU, also where a GPU is visible: the recipe's exact resume is promised per device, and on CUDA the
    backward passes of convolutions and pooling add in no fixed order (a resumed run's losses differ there)."""
    settings = {"arch": "efficientnet_lite0", "weights": None, "epochs": 2, "finetune_epochs": 2, "batch_size": 8,
                "recipe": "finetune", "progress": False, "device": "cpu"}
    return TrainConfig(data=str(root), out=str(out), **{**settings, **overrides})


def test_finetune_recipe_records_both_stages_and_keeps_the_better_model(tmp_path: Path, small_arch: str) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 8, "dogs": 8})
    out = tmp_path / "run"
    metrics = train(_config(root, out, arch=small_arch))
    rows = metrics["history"]
    assert [row["epoch"] for row in rows] == list(range(1, len(rows) + 1))
    assert [row["stage"] for row in rows] == ["head"] * 2 + ["finetune"] * metrics["stages"]["finetune"]["epochs"]
    assert json.loads((out / "metrics.json").read_text())["stages"] == metrics["stages"]
    head_best = min((r for r in rows if r["stage"] == "head"), key=lambda r: (-r["valid_accuracy"], r["valid_loss"]))
    best = load_checkpoint(out / "best.pt")
    assert best["meta"]["epoch"] == metrics["best_epoch"]
    kept_row = rows[metrics["best_epoch"] - 1]
    assert metrics["kept"] == kept_row["stage"]
    # the saved model's recipe says how to run it: a frozen backbone (features) or a fine-tuned one
    assert best["meta"]["recipe"] == {"head": "features", "finetune": "finetune"}[metrics["kept"]]
    if metrics["kept"] == "finetune":
        assert kept_row["valid_loss"] < head_best["valid_loss"]
        assert kept_row["valid_accuracy"] >= head_best["valid_accuracy"]
    head = load_checkpoint(out / "head.pt")  # the head stage's best model, kept apart for a resumed second stage
    assert head["meta"]["epoch"] == head_best["epoch"] and head["meta"]["recipe"] == "features"


def test_a_run_stopped_inside_the_second_stage_starts_it_again(tmp_path: Path, small_arch: str) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 8, "dogs": 8})
    out = tmp_path / "run"
    first = train(_config(root, out, arch=small_arch))
    last = load_checkpoint(out / "last.pt")
    head_rows = [row for row in last["run_state"]["history"] if row["stage"] == "head"]
    last["run_state"].update(history=head_rows, epoch=len(head_rows), finetuned=False)
    torch.save(last, out / "last.pt")  # as if killed during the second stage
    resumed = train(_config(root, out, arch=small_arch), resume=True)
    assert [r["valid_loss"] for r in resumed["history"]] == [r["valid_loss"] for r in first["history"]]
    assert resumed["kept"] == first["kept"] and resumed["best_epoch"] == first["best_epoch"]


def test_stage_inputs_reproduce_the_whole_network_on_real_photos(real_data_root: Path, one_thread: None) -> None:
    """The fine-tuned model trained on cached (float16) stage inputs gives the same predictions as the whole
    network run on the photos, as 05 and `catdog evaluate` run it."""
    from catdog_lib.data.layout import find_dataset
    from catdog_lib.data.split import stratified_split, subset_per_class

    split = stratified_split(find_dataset(real_data_root).train(), 0.2, 42)
    split = Split(split.root, split.classes, subset_per_class(split.train, 4), subset_per_class(split.valid, 8),
                  split.valid_fraction, split.seed)
    arch = "efficientnet_lite0"
    model = create_model(arch, 2).eval()
    prep = ARCHS[arch].prep
    views = training_views(train_transform(prep, 0.3))
    batches = batching.stage_inputs(model, arch, f"{arch}:default", split, views, eval_transform(prep), 8, 42, CPU,
                                    SkippedFiles(), min_size=prep.image_size, progress=False)
    _, stage = finetune.split_backbone(arch, model.backbone)
    net = finetune.StageNet(stage, model.head).eval()
    with torch.no_grad():
        cached = torch.cat([net(inputs) for inputs, _ in batches.valid_batches()])
        images = torch.stack([eval_views(eval_transform(prep)).view(_load(p), 0) for p, _ in split.valid])
        whole = model(images)
    assert cached.shape == whole.shape == (16, 2)
    assert (cached - whole).abs().max() < 0.05  # float16 stage inputs move the logits by about 1e-3
    sure = (whole[:, 0] - whole[:, 1]).abs() > 0.1
    assert torch.equal(cached[sure].argmax(1), whole[sure].argmax(1))
    loss_cached, _ = validate(net, batches.valid_batches(), nn.CrossEntropyLoss())
    assert abs(loss_cached - nn.functional.cross_entropy(whole, batches.valid.labels).item()) < 0.01


def _load(path: Path):
    from catdog_lib.data.images import load_rgb

    return load_rgb(path)
