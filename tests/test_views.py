"""Training transforms become cached views: exact for the tutorial's flip, seeded draws otherwise;
the feature cache is keyed by each view's transform, so an edited transform never reuses stale features."""

from __future__ import annotations

import torch
from PIL import Image
from torchvision import transforms as T

from catdog_lib.model.backbones import create_model
from catdog_lib.data.datasets import SkippedFiles
from catdog_lib.model.features import RANDOM_VIEWS, eval_views, extract_features, training_views
from catdog_lib.data.layout import read_class_folders
from catdog_lib.data.transforms import Preprocessing, eval_transform, train_transform
from conftest import make_dataset, make_image

PREP = Preprocessing(32)
CPU = torch.device("cpu")


def photo(tmp_path, name: str = "a.png", color=(200, 120, 40)) -> Image.Image:
    return Image.open(make_image(tmp_path / name, size=(40, 30), color=color)).convert("RGB")


def test_the_tutorial_transform_caches_plain_and_mirrored(tmp_path):
    views = training_views(train_transform(PREP, 0.3))
    image = photo(tmp_path)
    assert views.names == ("plain", "flip") and views.flip_p == 0.3
    assert torch.equal(views.view(image, 0), eval_transform(PREP)(image))
    assert torch.equal(views.view(image, 1), eval_transform(PREP)(image).flip(-1))
    assert torch.equal(views.all(image), torch.stack([views.view(image, 0), views.view(image, 1)]))
    picks = torch.stack([views.picks(1000, 42, epoch) for epoch in range(5)])
    assert 0.25 < picks.float().mean() < 0.35 and not torch.equal(picks[0], picks[1])  # a new draw each epoch
    assert torch.equal(views.picks(1000, 42, 3), picks[3])  # and the same draw for the same epoch


def test_no_flip_means_one_view():
    views = training_views(train_transform(PREP, 0.0))
    assert views.names == ("plain",) and not views.picks(100, 1, 0).any()


def test_other_random_steps_get_seeded_draws_per_photo(tmp_path, capsys):
    jitter = T.Compose([T.Resize((32, 32)), T.ColorJitter(brightness=0.5), T.ToTensor()])
    views = training_views(jitter)
    assert "ColorJitter" in capsys.readouterr().out  # said, never silent
    assert len(views.names) == RANDOM_VIEWS and views.flip_p is None
    first, second = photo(tmp_path, "a.png"), photo(tmp_path, "b.png", (40, 90, 200))
    draws = views.all(first)
    assert torch.equal(draws, views.all(first))  # fixed draws: cacheable
    assert not torch.equal(draws[0], draws[1])  # but different from each other
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    views.all(second)
    assert torch.equal(torch.rand(3), before)  # the global generator (dropout's) is untouched
    assert set(views.picks(200, 0, 0).tolist()) == set(range(RANDOM_VIEWS))


def test_an_edited_transform_is_a_cache_miss(tmp_path):
    samples = read_class_folders(make_dataset(tmp_path / "data", 2)).samples
    backbone = create_model("efficientnet_lite0", 2, weights=None).backbone
    cache = tmp_path / "cache"

    def features(size: int):
        views = eval_views(T.Compose([T.Resize((size, size)), T.ToTensor()]))
        return extract_features(backbone, "test", samples, views, CPU, SkippedFiles(), cache_root=cache,
                                progress=False, reduced_precision=False).features

    first = features(32)
    shards = sorted(cache.rglob("*.pt"))
    assert torch.equal(features(32), first) and sorted(cache.rglob("*.pt")) == shards  # served from the cache
    assert not torch.equal(features(48), first)  # another Resize: computed anew
    assert len(list(cache.rglob("*.pt"))) == len(shards) + 1
