"""Reliability, round 2 (issue 12): students' own photos, wrong layouts, shared classroom folders.

Every test builds the hostile input for real (JPEGs with damaged EXIF, renamed videos, a 12000x9000
photo, Korean class folders, a second process holding the run folder, another user's cache shards)
and checks what the user sees: one clear line (exit 2, no traceback), or a photo that loads.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import subprocess
import sys
import time
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from catdog_lib import images
from catdog_lib.model.checkpoint import atomic_save
from catdog_lib.data.datasets import make_loader
from catdog_lib.errors import CatdogError
from catdog_lib.infer.evaluation import evaluate_folder, load_model
from catdog_lib.model.features import FeatureCache
from catdog_lib.train.training import check_finite
from catdog_lib.data.images import BadImageError, load_rgb
from catdog_lib.data.integrity import check_dataset
from catdog_lib.data.layout import canonical_class, evaluation_folders, find_dataset, match_classes, read_class_folders
from catdog_lib.train.runlock import claim_run_folder
from catdog_lib.data.split import Split, stratified_split
from catdog_lib.train.training import TrainConfig, train
from conftest import (REPO, make_checkpoint, make_dataset, make_image, public_env, run_python, subprocess_env,
                      truncated_jpeg)


def _one_clean_error(status: int, err: str, *needles: str) -> None:
    assert status == 2, err
    assert "Traceback" not in err and err.count("catdog: error:") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


TRAIN = ("--arch", "efficientnet_lite0", "--weights", "none", "--epochs", "1", "--batch-size", "4", "--quiet",
         "--device", "cpu")


# --- 1. damaged EXIF, and a fuzzed loader ---------------------------------------------------------------------


def _phone_jpeg(path: Path, tags: dict, old: bytes, new: bytes) -> Path:
    """A 40x20 photo stored sideways (orientation 6) whose EXIF bytes ``old`` are replaced by ``new``."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, 20:] = 255
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    for tag, value in tags.items():
        exif[tag] = value
    raw = exif.tobytes()
    assert raw.count(old) == 1, raw.hex()
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, exif=raw.replace(old, new), quality=95)
    return path


DAMAGED_EXIF = {
    # Make (ASCII) retyped as StripOffsets, which must be a number: exif_transpose raises struct.error
    "struct-error": ({0x010F: "Phone"}, b"\x01\x0f\x00\x02", b"\x01\x11\x00\x02"),
    # Make retyped as WhitePoint (a rational): exif_transpose raises TypeError
    "type-error": ({0x010F: "Phone"}, b"\x01\x0f\x00\x02", b"\x01\x3e\x00\x02"),
    # XResolution stored as UNDEFINED bytes: Image.open itself fails (Pillow reads the DPI from EXIF)
    "unparseable-at-open": ({0x011A: 72.0, 0x0128: 2}, b"\x01\x1a\x00\x05", b"\x01\x1a\x00\x07"),
    # Make's data offset points past the end: Pillow warns "Tag data larger than file" without a file name
    "tag-past-the-end": ({0x010F: "Phone!!"}, b"\x01\x0f\x00\x02\x00\x00\x00\x08",
                         b"\x01\x0f\x00\x02\x00\x00\x0f\xff"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED_EXIF))
def test_photo_with_damaged_exif_loads_and_the_warning_names_it_once(tmp_path: Path, case: str) -> None:
    path = _phone_jpeg(tmp_path / f"{case}.jpg", *DAMAGED_EXIF[case])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = load_rgb(path, min_size=16)
        second = load_rgb(path)

    assert first.mode == second.mode == "RGB" and first.size in {(40, 20), (20, 40)}
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith(f"{path}: damaged EXIF data"), messages


def test_data_check_on_a_photo_with_damaged_exif_has_no_traceback(tmp_path: Path, cli) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3})
    photo = _phone_jpeg(root / "cats" / "phone.jpg", *DAMAGED_EXIF["struct-error"])

    with pytest.warns(UserWarning, match=f"{photo}: damaged EXIF data"):
        status, out, err = cli("data", "check", root)

    assert status == 0 and "train: 7 images (cats 4, dogs 3)" in out and "Traceback" not in err, (out, err)


def _mutations(data: bytes, count: int, rng: random.Random, most: int, span: tuple[int, int] | None = None):
    """``count`` copies of ``data``, each with 1 to ``most`` random bytes (within ``span``) replaced."""
    low, high = span or (0, len(data))
    for _ in range(count):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, most)):
            mutated[rng.randrange(low, high)] = rng.randrange(256)
        yield bytes(mutated)


def test_fuzzed_image_files_raise_only_bad_image_error(tmp_path: Path) -> None:
    """A few hundred mutated JPEG, PNG, WebP, TIFF and GIF files: each loads or is a BadImageError."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112], exif[0x010F] = 6, "Phone"
    seeds = {}
    for fmt, options in (("JPEG", {"exif": exif.tobytes()}), ("PNG", {}), ("WEBP", {"exif": exif.tobytes()}),
                         ("TIFF", {"compression": "tiff_lzw"}), ("GIF", {})):
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        seeds[fmt] = buffer.getvalue()
    rng = random.Random(24)   # a seed whose mutations made the loader raise struct.error before issue 12
    escaped, loaded = [], 0
    for fmt, data in seeds.items():
        for index, mutated in enumerate(_mutations(data, 60, rng, most=8)):
            path = tmp_path / f"{fmt}-{index}.img"
            path.write_bytes(mutated)
            for min_size in (None, 16):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        load_rgb(path, min_size)
                    loaded += 1
                except BadImageError:
                    pass
                except Exception as error:  # noqa: BLE001 - the point of the test
                    escaped.append(f"{fmt}-{index}: {type(error).__name__}: {error}")
    assert escaped == []
    assert loaded > 0   # not every mutation is fatal: the loader really decoded some


def test_every_photo_with_fuzzed_exif_loads(tmp_path: Path) -> None:
    """Mutating only the EXIF bytes of a good photo never costs the photo (400 cases)."""
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    exif = image.getexif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Phone", "Model X"
    raw = exif.tobytes()
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=raw)
    data = buffer.getvalue()
    start = data.index(b"Exif\x00\x00") + 6
    failed = []
    for index, mutated in enumerate(_mutations(data, 400, random.Random(0), 3, (start, start + len(raw) - 6))):
        path = tmp_path / f"{index}.jpg"
        path.write_bytes(mutated)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                assert load_rgb(path, 16).mode == "RGB"
        except Exception as error:  # noqa: BLE001 - a BadImageError here is a lost photo too
            failed.append(f"{index}: {type(error).__name__}: {error}")
    assert failed == []


# --- 11. messages: what a renamed file is, and big phone photos ---------------------------------------------


RENAMED = {
    "video.jpg": (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64), "MP4"),
    "scan.jpg": (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n" + bytes(64), "PDF"),
    "photos.jpg": (b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(64), "ZIP"),
    "page.jpg": (b"<!DOCTYPE html><html><body>403</body></html>", "text"),
}


@pytest.mark.parametrize("name", sorted(RENAMED))
def test_a_renamed_file_is_named_by_its_magic_bytes(tmp_path: Path, name: str) -> None:
    data, kind = RENAMED[name]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(BadImageError, match=f"not an image: its content is {kind}"):
        load_rgb(path)


def test_heic_without_a_decoder_names_the_fix(tmp_path: Path) -> None:
    if images.HEIF_SUPPORTED:
        pytest.skip("pillow-heif is installed: HEIC photos decode")
    path = tmp_path / "IMG_0001.jpg"   # an iPhone photo renamed .jpg
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    with pytest.raises(BadImageError, match="HEIC photo, which this Pillow cannot decode; `pip install pillow-heif`"):
        load_rgb(path)


def test_avif_photos_are_used_when_pillow_decodes_them(tmp_path: Path) -> None:
    if not images.AVIF_SUPPORTED:
        pytest.skip("this Pillow has no AVIF support")
    root = make_dataset(tmp_path / "data", {"cats": 2, "dogs": 2})
    make_image(root / "cats" / "phone.avif")
    assert root / "cats" / "phone.avif" in read_class_folders(root).files["cats"]
    assert load_rgb(root / "cats" / "phone.avif").size == (16, 16)


def test_a_12000x9000_phone_jpeg_loads_in_draft_mode_and_other_bombs_stay_refused(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    Image.new("L", (12_000, 9_000), 128).save(path, quality=50)   # 108 Mpx, over Pillow's 89 Mpx limit

    photo = load_rgb(path, min_size=224)

    assert photo.mode == "RGB" and 224 <= min(photo.size) and photo.size[0] * photo.size[1] <= images.MAX_PIXELS
    with pytest.raises(BadImageError, match="12000x9000 pixels, over the"):
        load_rgb(path)   # decoding it in full would be a real 108 Mpx buffer


# --- 2. class names in any script --------------------------------------------------------------------------


def test_class_names_in_any_script_and_form_match() -> None:
    assert canonical_class("고양이") != canonical_class("개") and canonical_class("고양이") == "고양이"
    assert canonical_class(unicodedata.normalize("NFD", "Chat_Été")) == canonical_class("chat-été")
    assert canonical_class("ＣＡＴＳ") == canonical_class("cat")   # full-width letters (NFKC)
    assert canonical_class("Кошки") == canonical_class("кошки") != canonical_class("собаки")


def test_korean_class_folders_are_evaluated_by_name(tmp_path: Path, one_thread: None) -> None:
    checkpoint = make_checkpoint(tmp_path / "best.pt", ["개", "고양이"])
    data = make_dataset(tmp_path / "eval", {"고양이": 3, "개": 2})

    result = evaluate_folder(load_model(checkpoint, "cpu"), data, use_cache=False, progress=False)

    assert {name: row["n"] for name, row in result.per_class.items()} == {"개": 2, "고양이": 3}
    assert {(Path(p).parent.name, label) for p, label in zip(result.paths, result.labels)} == {("개", 0), ("고양이", 1)}


def test_ambiguous_class_matches_are_refused(tmp_path: Path) -> None:
    folders = read_class_folders(make_dataset(tmp_path / "eval", {"cat": 1, "Cats": 1, "dog": 1}), min_classes=1)
    with pytest.raises(CatdogError, match="Cats, cat stand for the same class"):
        match_classes(folders, ["cats", "dogs"])
    with pytest.raises(CatdogError, match="checkpoint's classes dog, dogs stand for the same class"):
        match_classes(read_class_folders(tmp_path / "eval", min_classes=1), ["dog", "dogs"])


# --- 3. photos that were silently unused --------------------------------------------------------------------


def test_camera_names_jfif_jpe_and_sub_folders_are_photos(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 2, "dogs": 2})
    photos = [make_image(root / "cats" / name) for name in ("_DSC0012.JPG", "_MG_4021.JPG")]
    photos += [make_image(root / "cats" / "x.jfif"), make_image(root / "cats" / "y.jpe")]
    photos.append(make_image(root / "cats" / "persian" / "p.jpg"))
    (root / "cats" / "._p.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")      # known junk stays junk
    (root / "cats" / "_DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    make_image(root / "cats" / "__MACOSX" / "q.jpg")

    folders = read_class_folders(root)

    assert set(photos) <= set(folders.files["cats"]) and folders.counts() == {"cats": 7, "dogs": 2}
    assert all(load_rgb(path).mode == "RGB" for path in photos)


def test_data_check_lists_what_is_not_used(tmp_path: Path, cli) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3})
    (root / "dogs" / "shelter.docx").write_bytes(b"PK\x03\x04 a document")
    (root / "loose.jpg").write_bytes(make_image(tmp_path / "x.jpg").read_bytes())

    status, out, _ = cli("data", "check", root)

    assert status == 0 and "2 file(s) or folder(s) not used:" in out, out
    assert f"{root / 'dogs' / 'shelter.docx'}: not used: .docx is not a photo format" in out
    assert f"{root / 'loose.jpg'}: not used: not inside a class folder" in out


def test_metrics_count_only_the_photos_used(tmp_path: Path, small_arch: str) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 10, "dogs": 10})
    for index in range(5):
        truncated_jpeg(root / "dogs" / f"broken{index}.jpg")   # read, found unreadable, skipped
    (root / "cats" / "notes.txt").write_text("not a photo")

    metrics = train(TrainConfig(data=str(root), out=str(tmp_path / "run"), arch=small_arch, epochs=1, batch_size=8,
                                weights=None, num_workers=0, progress=False))

    counts = metrics["counts"]
    used = sum(sum(part.values()) for part in counts.values())
    assert used == 20 and len(metrics["skipped"]) == 5, (counts, metrics["skipped"])
    assert metrics["unused"] == [f"{root / 'cats' / 'notes.txt'}: not used: .txt is not a photo format "
                                 "(rename it if it is a photo)"]


# --- 4. wrong layouts ---------------------------------------------------------------------------------------------


def test_kaggle_competition_layout_is_labelled_by_the_prefix(tmp_path: Path, cli) -> None:
    root = tmp_path / "dogs-vs-cats"
    for index in range(4):
        make_image(root / "train" / f"cat.{index}.jpg", color=(210, 90, 60))
        make_image(root / "train" / f"dog.{index}.jpg", color=(60, 90, 210))
        make_image(root / "test1" / f"{index + 1}.jpg")

    layout = find_dataset(root)

    assert layout.train_dir == root / "train" and layout.test_dir is None
    folders = layout.train()
    assert folders.classes == ["cat", "dog"] and folders.counts() == {"cat": 4, "dog": 4}
    assert all(path.name.startswith(folders.classes[label]) for path, label in folders.samples)
    status, out, _ = cli("data", "check", root)
    assert status == 0 and "train: 8 images (cat 4, dog 4)" in out
    assert f"{root / 'test1'}: not used: not a train or test split with class labels" in out
    with pytest.raises(CatdogError, match="no test_set"):
        evaluation_folders(root)   # test1/ has no labels: nothing to measure accuracy on


def test_capitalised_train_and_test_folders_are_splits(tmp_path: Path) -> None:
    root = tmp_path / "data"
    make_dataset(root / "Train", {"cats": 2, "dogs": 2})
    make_dataset(root / "TEST", {"cats": 1, "dogs": 1})
    layout = find_dataset(root)
    assert (layout.train_dir, layout.test_dir) == (root / "Train", root / "TEST")
    assert layout.train().classes == ["cats", "dogs"]


def test_split_folders_without_classes_are_refused(tmp_path: Path, cli) -> None:
    root = tmp_path / "data"
    for split in ("train", "test"):
        for index in range(3):
            make_image(root / split / f"IMG_{index}.jpg")

    status, _, err = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN)

    _one_clean_error(status, err, "test, train look like parts of a dataset", "one folder per class")
    assert not (tmp_path / "run" / "last.pt").exists()


def test_empty_class_folder_message_never_says_remove(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 2})
    (root / "dogs").mkdir()
    with pytest.raises(CatdogError) as caught:
        read_class_folders(root)
    assert "remove" not in str(caught.value) and "delete" not in str(caught.value)


def test_a_class_whose_every_photo_is_unreadable_is_refused(tmp_path: Path, cli) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 10})
    for index in range(10):
        truncated_jpeg(root / "dogs" / f"dog.{index}.jpg")

    with pytest.raises(CatdogError, match="class dogs has no readable photo among its 8 training photos"):
        stratified_split(read_class_folders(root))
    status, _, err = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN)
    _one_clean_error(status, err, "class dogs has no readable photo", "catdog data check")


# --- 5, 6. the run folder ---------------------------------------------------------------------------------------


def test_out_over_a_folder_that_is_not_a_run_is_refused_and_left_alone(tmp_path: Path, cli) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    mine = tmp_path / "my-experiments"
    mine.mkdir()
    files = {"best.pt": b"my own model", "metrics.json": b'{"mine": 1}', "notes.txt": b"do not lose"}
    for name, data in files.items():
        (mine / name).write_bytes(data)

    status, _, err = cli("train", "--data", root, "--out", mine, *TRAIN)

    _one_clean_error(status, err, "already holds files that are not a catdog run", "nothing there was changed")
    assert {p.name: p.read_bytes() for p in mine.iterdir()} == files


def test_out_inside_the_data_folder_is_refused(tmp_path: Path, cli) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    status, _, err = cli("train", "--data", root, "--out", root / "cats" / "run", *TRAIN)
    _one_clean_error(status, err, "is inside the data folder", "outside it")
    assert not (root / "cats" / "run").exists()


def test_empty_out_is_refused(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    status, _, err = cli("train", "--data", root, "--out", "", *TRAIN)
    _one_clean_error(status, err, "--out is empty")
    assert list(work.iterdir()) == []


def test_a_new_run_may_reuse_an_empty_folder_and_a_run_folder_that_failed_early(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    claim_run_folder(empty, tmp_path / "data", resume=False).release()
    (empty / "split.json").write_text("{}")   # a run that failed before its first epoch
    claim_run_folder(empty, tmp_path / "data", resume=False).release()


HOLD_LOCK = r"""
import sys
from catdog_lib.train.runlock import claim_run_folder
lock = claim_run_folder(sys.argv[1], None, resume=False)
print("locked", flush=True)
sys.stdin.read()   # hold the run folder until the test closes our stdin
"""


def test_a_second_run_on_the_same_out_gets_one_clear_line(tmp_path: Path, cli) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    out = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], cwd=REPO, env=subprocess_env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        status, _, err = cli("train", "--data", root, "--out", out, *TRAIN)
        _one_clean_error(status, err, f"another `catdog train` (process {holder.pid}) is using this run folder")
        assert sorted(p.name for p in out.iterdir()) == [".catdog-run", ".catdog-run.lock"]   # nothing of the 2nd run
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    claim_run_folder(out, None, resume=False).release()   # free again once the first run ends


# --- 7. split.json from another working folder ----------------------------------------------------------------


def test_split_json_holds_absolute_paths_and_survives_a_move(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dataset(tmp_path / "data", {"cats": 5, "dogs": 5})
    monkeypatch.chdir(tmp_path)
    split = stratified_split(read_class_folders(Path("data")))   # --data typed as a relative path
    split.save(tmp_path / "split.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)

    loaded = Split.load(tmp_path / "split.json")

    assert Path(json.loads((tmp_path / "split.json").read_text())["root"]).is_absolute()
    assert all(path.is_file() for path, _ in loaded.train + loaded.valid)
    (tmp_path / "data").rename(tmp_path / "moved")
    monkeypatch.setenv("CATDOG_DATA_DIR", str(tmp_path / "moved"))
    with pytest.warns(UserWarning, match="is gone; using .*moved"):
        moved = Split.load(tmp_path / "split.json")
    assert all(path.is_file() for path, _ in moved.train + moved.valid)
    monkeypatch.setenv("CATDOG_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(CatdogError, match="is gone .moved or deleted.. Put it back, or set CATDOG_DATA_DIR"):
        Split.load(tmp_path / "split.json")


# --- 8, 9. the shared feature cache ----------------------------------------------------------------------------


def _cache(root: Path) -> FeatureCache:
    return FeatureCache(root, "lite0:test", "torch:float32")


@pytest.fixture
def group_umask():
    before = os.umask(0o002)   # a classroom's shared group folder
    yield
    os.umask(before)


def test_checkpoints_and_cache_shards_follow_the_umask(tmp_path: Path, group_umask: None) -> None:
    atomic_save({"w": torch.zeros(2)}, tmp_path / "best.pt")
    cache = _cache(tmp_path / "cache")
    cache.add({"abc/plain": torch.ones(4)})
    (shard,) = cache.folder.glob("*.pt")
    assert (tmp_path / "best.pt").stat().st_mode & 0o777 == 0o664
    assert shard.stat().st_mode & 0o777 == 0o644   # the group reads it; only its writer may change it (round 4)


def test_a_zeroed_shard_is_a_cache_miss(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "cache")
    cache.add({"abc/plain": torch.full((256,), 1.5)})
    (shard,) = cache.folder.glob("*.pt")
    data = bytearray(shard.read_bytes())
    start = bytes(data).index(np.full(16, 1.5, dtype="<f4").tobytes())
    data[start:start + 256] = bytes(256)   # a disk error or a crash zeroes part of the tensor data
    shard.write_bytes(bytes(data))
    assert torch.load(shard, weights_only=True)["values"][0, 0] == 0   # torch alone loads the damage

    assert cache.load() == {}
    assert not shard.exists()


def test_shards_in_the_old_one_tensor_per_key_form_still_load(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "cache")
    cache.add({"abc/plain": torch.ones(4), "abc/flip": torch.zeros(4)})
    (new,) = cache.folder.glob("*.pt")
    assert set(torch.load(new, weights_only=True)) == {"keys", "values"}  # one stacked tensor
    old = {"def/plain": torch.full((4,), 2.0)}
    buffer = io.BytesIO()
    torch.save(old, buffer)
    (cache.folder / f"{hashlib.sha256(buffer.getvalue()).hexdigest()}.pt").write_bytes(buffer.getvalue())
    loaded = cache.load()
    assert sorted(loaded) == ["abc/flip", "abc/plain", "def/plain"]
    assert loaded["abc/plain"].tolist() == [1.0] * 4 and loaded["def/plain"].tolist() == [2.0] * 4


def test_stale_temporary_files_are_cleaned_up(tmp_path: Path) -> None:
    cache = _cache(tmp_path / "cache")
    cache.folder.mkdir(parents=True)
    stale, fresh = cache.folder / ".dead.pt.x1.tmp", cache.folder / ".writing.pt.x2.tmp"
    for path in (stale, fresh):
        path.write_bytes(b"half a shard")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))

    cache.add({"abc/plain": torch.ones(4)})

    assert not stale.exists() and fresh.exists()   # another process may be writing the fresh one


SHARED_CACHE = r"""
import sys, warnings, torch
from pathlib import Path
from catdog_lib.model.features import FeatureCache
cache = FeatureCache(Path(sys.argv[1]), "lite0:test", "torch:float32")
print(sorted(cache.load()))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    cache.add({"new/plain": torch.ones(2)})
print(len(caught))
"""


def _owned_by_another_user(*paths: Path) -> None:
    """Give ``paths`` to a uid the test subprocess does not run as (needs root, as in CI)."""
    if os.geteuid() != 0:
        pytest.skip("making files of another user needs root")
    for path in paths:
        os.chown(path, OTHER_USER, OTHER_USER)


OTHER_USER = 54321


def test_another_users_unreadable_shard_is_left_alone(public_tmp: Path) -> None:
    root = public_tmp / "cache"
    cache = _cache(root)
    cache.add({"mine/plain": torch.ones(4)})
    (shard,) = cache.folder.glob("*.pt")
    shard.chmod(0o600)   # the first user's private shard
    for folder in (root, cache.folder):
        folder.chmod(0o777)   # a group-writable shared cache
    _owned_by_another_user(shard)

    result = run_python(SHARED_CACHE, root, unprivileged=True, env=public_env(public_tmp))

    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.splitlines() == ["[]", "0"]   # a miss, and the second user's shard written
    assert hashlib.sha256(shard.read_bytes()).hexdigest() == shard.stem   # untouched (and, being another
    # user's in a cache others can write, never read as features: tests/test_reliability4.py)


def test_a_read_only_cache_with_a_damaged_shard_is_a_miss(public_tmp: Path) -> None:
    root = public_tmp / "cache"
    cache = _cache(root)
    cache.add({"mine/plain": torch.ones(4)})
    (shard,) = cache.folder.glob("*.pt")
    shard.write_bytes(shard.read_bytes()[:100])   # truncated
    shard.chmod(0o644)
    for folder in (root, cache.folder):
        folder.chmod(0o755)   # read-only to everyone else
    _owned_by_another_user(root, cache.folder, shard)

    result = run_python(SHARED_CACHE, root, unprivileged=True, env=public_env(public_tmp))

    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert result.stdout.splitlines() == ["[]", "1"]   # a miss; writing only warns
    assert shard.exists()


# --- 10. numbers ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag, value, needle", [
    ("--seed", "-1", "from 0 to 4294967295"), ("--seed", "5000000000", "from 0 to 4294967295"),
    ("--lr", "nan", "must be positive and at most 1"), ("--lr", "inf", "must be positive and at most 1"),
    ("--lr", "1e38", "must be positive and at most 1"),
], ids=["seed-negative", "seed-too-big", "lr-nan", "lr-inf", "lr-huge"])
def test_bad_seed_and_learning_rate_are_one_line(tmp_path: Path, cli, flag: str, value: str, needle: str) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 6, "dogs": 6})
    status, _, err = cli("train", "--data", root, "--out", tmp_path / "run", *TRAIN, flag, value)
    _one_clean_error(status, err, f"argument {flag}", needle)
    assert not (tmp_path / "run").exists()


def test_a_loss_that_becomes_nan_stops_the_run(tmp_path: Path, small_arch: str) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 8, "dogs": 8})
    with pytest.raises(CatdogError, match=r"loss at epoch \d became nan: training diverged. Lower the learning rate \(--lr"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "run"), arch=small_arch, epochs=3, batch_size=4,
                          lr=1e36, weights=None, num_workers=0, progress=False))
    with pytest.raises(CatdogError, match=r"TrainConfig lr=inf: must be None \(the recipe's default\) or a positive number"):
        train(TrainConfig(data=str(root), out=str(tmp_path / "other"), lr=float("inf")))
    assert check_finite(0.5, "loss") == 0.5


def test_batch_size_is_capped_at_the_data_size(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"cats": 3, "dogs": 3})
    loader = make_loader(read_class_folders(root).samples, lambda image: image, batch_size=100_000)
    assert loader.batch_size == 6
