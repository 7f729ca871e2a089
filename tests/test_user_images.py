"""A user's image files prepared exactly as the run's dataset prepares its training images
(data/user_images.py): compared with the datasets' own items, read from files in their
publishers' formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_cli.core.errors import DcganError
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset, load_digits_images
from dcgan_cli.data.user_images import load_user_images, prepare_image


def handwriting(height: int = 28, width: int = 28, seed: int = 0) -> np.ndarray:
    """uint8 light strokes on a dark ground, like an MNIST digit."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((height, width), np.uint8)
    top, left = height // 2 - 8, width // 2 - 6
    pixels[top : top + 16, left : left + 3] = 255
    pixels[top : top + 3, left : left + 12] = rng.integers(150, 256)
    return pixels


def write_idx(folder: Path, images: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    head = bytes([0, 0, 8, 3]) + np.array([len(images), *images.shape[1:]], ">i4").tobytes()
    (folder / "train-images-idx3-ubyte").write_bytes(head + images.tobytes())
    head = bytes([0, 0, 8, 1]) + np.array([len(images)], ">i4").tobytes()
    (folder / "train-labels-idx1-ubyte").write_bytes(head + bytes(len(images)))
    return folder


def test_an_mnist_digit_file_is_prepared_as_the_mnist_dataset_prepares_it(tmp_path):
    digits = np.stack([handwriting(seed=s) for s in range(2)])
    dataset, _ = load_dataset("mnist", DataOptions(data=write_idx(tmp_path / "mnist", digits)))
    for i, pixels in enumerate(digits):
        Image.fromarray(pixels, "L").save(tmp_path / f"{i}.png")
    prepared = load_user_images([tmp_path / "0.png", tmp_path / "1.png"], dataset="mnist", size=32, channels=1)
    assert torch.equal(prepared.images, torch.stack([dataset[0][0], dataset[1][0]]))
    assert prepared.notes == [[], []] and prepared.original_sizes == [(28, 28), (28, 28)]


def test_a_digit_scan_is_enlarged_as_the_digits_dataset_enlarges_its_scans(tmp_path):
    from sklearn.datasets import load_digits

    scan = load_digits().images[5]  # 8x8, values 0..16
    Image.fromarray(np.round(scan * 255 / 16).astype(np.uint8), "L").save(tmp_path / "scan.png")
    image, notes, size = prepare_image(tmp_path / "scan.png", dataset="digits", size=32, channels=1)
    assert size == (8, 8) and notes == []
    assert torch.allclose(image, load_digits_images(32).images[5], atol=0.01)  # the PNG's rounding aside


def test_a_face_photo_is_prepared_as_the_celeba_dataset_prepares_it(tmp_path):
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (54, 44, 3), dtype=np.uint8), "RGB")
    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    photo.save(tmp_path / "celeba" / "img_align_celeba" / "000001.jpg", quality=90)
    (tmp_path / "celeba" / "list_attr_celeba.txt").write_text("1\nSmiling Male\n000001.jpg  1 -1\n")
    dataset, _ = load_dataset("celeba", DataOptions(data=tmp_path / "celeba", size=32))
    mine = tmp_path / "celeba" / "img_align_celeba" / "000001.jpg"
    image, notes, size = prepare_image(mine, dataset="celeba", size=32, channels=3)
    assert torch.equal(image, dataset[0][0]) and size == (44, 54) and notes == []


def test_a_tall_image_is_center_cropped_to_a_square_first(tmp_path):
    pixels = np.zeros((40, 28), np.uint8)
    pixels[:6] = pixels[-6:] = 255  # outside the middle 28x28 square
    Image.fromarray(pixels, "L").save(tmp_path / "tall.png")
    image, _, _ = prepare_image(tmp_path / "tall.png", dataset="mnist", size=32, channels=1)
    assert bool((image == -1).all())
    pixels[17] = 255  # inside it
    Image.fromarray(pixels, "L").save(tmp_path / "tall.png")
    image, _, _ = prepare_image(tmp_path / "tall.png", dataset="mnist", size=32, channels=1)
    assert float(image.max()) > 0


def test_dark_strokes_on_paper_are_turned_light_on_dark_for_a_digit_model(tmp_path):
    pixels = handwriting()
    Image.fromarray(pixels, "L").save(tmp_path / "screen.png")
    Image.fromarray(255 - pixels, "L").save(tmp_path / "paper.png")
    screen, screen_notes, _ = prepare_image(tmp_path / "screen.png", dataset="mnist", size=32, channels=1)
    paper, paper_notes, _ = prepare_image(tmp_path / "paper.png", dataset="mnist", size=32, channels=1)
    assert screen_notes == [] and "inverted to light on dark" in paper_notes[0]
    assert torch.allclose(paper, screen, atol=1e-5)
    _, photo_notes, _ = prepare_image(tmp_path / "paper.png", dataset="celeba", size=32, channels=1)
    assert not any("inverted" in n for n in photo_notes)  # photos keep their light and dark


def test_colour_and_grey_conversions_are_said(tmp_path):
    rng = np.random.default_rng(2)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), "RGB").save(tmp_path / "colour.png")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8), "L").save(tmp_path / "grey.png")
    grey_as_rgb = np.repeat(rng.integers(0, 256, (40, 40, 1), dtype=np.uint8), 3, axis=2)
    Image.fromarray(grey_as_rgb, "RGB").save(tmp_path / "grey-rgb.png")  # grey, stored as RGB

    image, notes, _ = prepare_image(tmp_path / "grey.png", dataset="scenes", size=32, channels=3)
    assert "greyscale picture for a colour model" in notes[0]
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    assert "greyscale" in prepare_image(tmp_path / "grey-rgb.png", dataset="scenes", size=32, channels=3)[1][0]
    assert prepare_image(tmp_path / "colour.png", dataset="scenes", size=32, channels=3)[1] == []
    notes = prepare_image(tmp_path / "colour.png", dataset="mnist", size=32, channels=1)[1]
    assert "colour picture for a greyscale model: converted to grey" in notes[0]


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda p: Image.new("L", (15, 40)).save(p / "x.png"), "is 15x40 pixels, far smaller than the 32x32"),
        (lambda p: (p / "x.png").write_bytes(b"GIF89a not really"), "is not an image dcgan can"),
        (lambda p: (p / "x.png").write_text("hello"), "is not an image dcgan can read"),
        (lambda p: None, "does not exist"),
    ],
)
def test_files_that_cannot_be_used_are_refused_in_one_line(tmp_path, make, needle):
    make(tmp_path)
    with pytest.raises(DcganError, match=needle):
        load_user_images([tmp_path / "x.png"], dataset="mnist", size=32, channels=1)


def test_a_damaged_image_behind_a_good_header_is_refused(tmp_path):
    Image.fromarray(handwriting(), "L").save(tmp_path / "whole.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:60])  # header intact, data cut
    with pytest.raises(DcganError, match="cut.png is not an image dcgan can decode"):
        prepare_image(tmp_path / "cut.png", dataset="mnist", size=32, channels=1)
    Image.new("L", (16, 40)).save(tmp_path / "narrow.png")  # half the model's side: accepted
    assert prepare_image(tmp_path / "narrow.png", dataset="mnist", size=32, channels=1)[0].shape == (1, 32, 32)
    with pytest.raises(DcganError, match="no image given"):
        load_user_images([], dataset="mnist", size=32, channels=1)
