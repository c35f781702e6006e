"""Every kind of image file a student may bring: readable ones load as upright 8-bit RGB, bad ones
raise BadImageError with a message that names the file and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from catdog_lib.data.images import BadImageError, image_problem, load_rgb
from catdog_lib.data.layout import is_image_file
from conftest import exif_rotated_jpeg, make_image, png_claiming, public_env, run_python, truncated_jpeg


def _pixel(image: Image.Image, xy: tuple[int, int]) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)[xy[1], xy[0]]


def _close(actual: np.ndarray, expected: tuple[int, int, int], tolerance: int = 12) -> bool:
    return bool(np.all(np.abs(actual - np.array(expected)) <= tolerance))


# --- readable images ----------------------------------------------------------------------------------


def test_png_with_alpha_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[:, :4] = (0, 0, 0, 0)          # fully transparent black: shows as the white background
    rgba[:, 4:] = (255, 0, 0, 255)      # opaque red
    Image.fromarray(rgba).save(tmp_path / "alpha.png")

    image = load_rgb(tmp_path / "alpha.png")

    assert image.mode == "RGB" and image.size == (8, 8)
    assert _close(_pixel(image, (1, 1)), (255, 255, 255), 0)
    assert _close(_pixel(image, (6, 1)), (255, 0, 0), 0)


@pytest.mark.parametrize("transparent", [False, True], ids=["opaque", "with-transparency"])
def test_palette_png(tmp_path: Path, transparent: bool) -> None:
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)   # index 0 black, index 1 green
    palette.paste(1, (4, 0, 8, 8))
    palette.save(tmp_path / "p.png", **({"transparency": 0} if transparent else {}))
    assert Image.open(tmp_path / "p.png").mode == "P"

    image = load_rgb(tmp_path / "p.png")

    assert image.mode == "RGB"
    assert _close(_pixel(image, (1, 1)), (255, 255, 255) if transparent else (0, 0, 0), 0)
    assert _close(_pixel(image, (6, 1)), (0, 200, 0), 0)


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_grayscale(tmp_path: Path, suffix: str) -> None:
    Image.new("L", (10, 6), 100).save(tmp_path / f"gray{suffix}")
    image = load_rgb(tmp_path / f"gray{suffix}")
    assert image.mode == "RGB" and image.size == (10, 6)
    assert _close(_pixel(image, (5, 3)), (100, 100, 100), 2)


def test_grayscale_with_alpha(tmp_path: Path) -> None:
    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    assert _close(_pixel(load_rgb(tmp_path / "la.png"), (0, 0)), (255, 255, 255), 0)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")   # pure red in ink
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    for min_size in (None, 8):  # with and without JPEG draft mode
        image = load_rgb(tmp_path / "cmyk.jpg", min_size=min_size)
        assert image.mode == "RGB"
        assert _close(_pixel(image, (image.width // 2, image.height // 2)), (255, 0, 0), 20)


def test_16_bit_png_keeps_its_brightness(tmp_path: Path) -> None:
    gradient = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (4, 1))
    Image.fromarray(gradient).save(tmp_path / "ramp16.png")
    Image.fromarray(np.full((4, 4), 128 * 257, dtype=np.uint16)).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "ramp16.png").mode == "I;16"

    ramp = np.asarray(load_rgb(tmp_path / "ramp16.png"))
    gray = load_rgb(tmp_path / "gray16.png")

    assert ramp.dtype == np.uint8 and ramp.shape == (4, 16, 3)
    assert ramp[0, 0, 0] == 0 and ramp[0, -1, 0] == 255 and np.all(np.diff(ramp[0, :, 0].astype(int)) > 0)
    assert _close(_pixel(gray, (0, 0)), (128, 128, 128), 0)   # mid-gray stays mid-gray, not stretched to black


def test_exif_rotated_photo_is_loaded_upright(tmp_path: Path) -> None:
    exif_rotated_jpeg(tmp_path / "phone.jpg", orientation=6)   # 6: the camera was turned; rotate 90 degrees clockwise
    stored = Image.open(tmp_path / "phone.jpg")
    assert stored.size == (40, 20) and stored.getexif()[0x0112] == 6

    for min_size in (None, 16):
        image = load_rgb(tmp_path / "phone.jpg", min_size=min_size)
        assert image.size == (20, 40)                         # width and height swapped
        assert _close(_pixel(image, (10, 5)), (255, 0, 0), 40)    # the stored left half is now on top
        assert _close(_pixel(image, (10, 34)), (0, 0, 255), 40)   # and the right half at the bottom


@pytest.mark.parametrize("name", ["UPPER.JPG", "long.jpeg", "Shouting.PNG", "mixed.JpEg"])
def test_upper_case_and_long_extensions(tmp_path: Path, name: str) -> None:
    path = make_image(tmp_path / name, format="PNG" if name.lower().endswith(".png") else "JPEG")
    assert is_image_file(path)
    assert load_rgb(path).mode == "RGB"


@pytest.mark.parametrize("name", ["고양이.jpg", "chat_été.jpg", "猫 (1).png", "Ωmega dog.JPG"])
def test_non_ascii_file_names(tmp_path: Path, name: str) -> None:
    path = make_image(tmp_path / "cats" / name, format="PNG" if name.endswith(".png") else "JPEG")
    assert is_image_file(path)
    assert load_rgb(path).size == (16, 16)
    assert image_problem(path) is None


def test_one_pixel_image(tmp_path: Path) -> None:
    for suffix in (".jpg", ".png"):
        image = load_rgb(make_image(tmp_path / f"dot{suffix}", size=(1, 1), color=(10, 200, 30), noise=False))
        assert image.mode == "RGB" and image.size == (1, 1)


def test_huge_photo_loads_and_draft_mode_shrinks_it(tmp_path: Path) -> None:
    path = make_image(tmp_path / "huge.jpg", size=(6000, 4000), color=(90, 140, 200), noise=False)

    full = load_rgb(path)
    draft = load_rgb(path, min_size=224)

    assert full.mode == "RGB" and full.size == (6000, 4000)
    assert draft.mode == "RGB" and 224 <= min(draft.size) < 1000 and draft.size[0] > draft.size[1]


# --- bad files --------------------------------------------------------------------------------------------


BAD_FILES = {
    "empty.jpg": (lambda p: p.write_bytes(b""), "empty file"),
    "truncated.jpg": (truncated_jpeg, "truncated"),
    "notes.jpg": (lambda p: p.write_text("these are my notes, not a photo\n"), "not an image"),
    "download.jpg": (lambda p: p.write_text("<!DOCTYPE html><html><body>403 Forbidden</body></html>"), "not an image"),
    "bomb.png": (lambda p: p.write_bytes(png_claiming(40_000, 40_000)), "decompression bomb"),
    "big-claim.png": (lambda p: p.write_bytes(png_claiming(10_000, 10_000)), "decompression bomb"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_file_raises_bad_image_error(tmp_path: Path, name: str) -> None:
    make, reason = BAD_FILES[name]
    path = tmp_path / name
    make(path)

    with pytest.raises(BadImageError) as caught:
        load_rgb(path)

    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)
    assert image_problem(path) == str(caught.value)


def test_decompression_bomb_file_is_tiny_and_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(40_000, 40_000))
    assert path.stat().st_size < 200   # the file is tiny; decoding it would need 4.8 GB
    with pytest.raises(BadImageError, match="40000x40000|1600000000"):
        load_rgb(path)


def test_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="no such file"):
        load_rgb(tmp_path / "gone.jpg")


def test_unreadable_file_is_a_bad_image(public_tmp: Path) -> None:
    path = make_image(public_tmp / "cats" / "locked.jpg")
    (public_tmp / "cats").chmod(0o755)
    path.chmod(0o000)

    result = run_python(
        "import sys; from catdog_lib.data.images import image_problem, load_rgb\n"
        "print(image_problem(sys.argv[1]))\n",
        path, unprivileged=True, env=public_env(public_tmp),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{path}: not readable (permission denied); fix its permissions"
    path.chmod(0o644)
    assert image_problem(path) is None   # the same file is fine once readable
