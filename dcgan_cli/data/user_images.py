"""Images a user hands a command (`dcgan invert`, `dcgan concepts add --image`), prepared
exactly as the run's dataset prepares its own training images.

Each dataset family has its own preparation, and the same code does it here:
- array datasets (mnist, cifar10; arrays.py): the image at its own resolution, resized as
  a batch by :func:`convert_array_images`;
- scikit-learn's 8x8 ``digits`` (loading.py): enlarged bicubic by :func:`resize_digit_scans`;
- every photo dataset (celeba, lsun, folder, and any plugin's): :func:`decode_image`, a center
  crop to a square and an antialiased resize.
User images are not square crops of the dataset's size already, so every family first gets
the same center crop to a square, and the EXIF orientation is applied (as `folder` does).

What cannot be made to match is refused in one line each (no file, not an image, far
smaller than the model), and what is converted is said: a colour picture for a grey model,
a grey one for a colour model, dark strokes on a light ground for a digit model (whose
training digits are light on dark).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.data.image_files import UnreadableImage, decode_image

ARRAY_DATASETS = ("mnist", "mnist5k", "cifar10")
SCAN_DATASETS = {"digits": 8}  # dataset -> the side of its scans: an image that size is as good as theirs
LIGHT_ON_DARK = ("digits", "mnist", "mnist5k")  # digit datasets: light strokes on a dark ground
GREY_TOLERANCE = 3 / 127.5  # channels this close everywhere are grey (JPEG's colour noise aside)


@dataclass
class UserImages:
    """Prepared images (N, channels, size, size) in [-1, 1], in the order given, with what was done to each."""

    images: torch.Tensor
    paths: list[Path]
    notes: list[list[str]] = field(default_factory=list)  # per image: conversions, said to the user
    original_sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) as stored


def smallest_side(dataset: str, size: int) -> int:
    """The shortest image side accepted: half the model's side (a bigger enlargement invents the
    detail the inversion would then match), or the dataset's own scans' side when smaller."""
    return min(size // 2, SCAN_DATASETS.get(dataset, size))


def _header(path: Path) -> tuple[tuple[int, int], str]:
    """(oriented size, mode) from the file's header, or a clear error."""
    from PIL import Image, UnidentifiedImageError

    try:
        if not path.exists():
            raise DcganError(f"{path} does not exist; name image files (PNG, JPEG, WebP, BMP, GIF or TIFF)")
        if path.is_dir():
            raise DcganError(f"{path} is a folder; name the image files in it (a glob such as {path}/*.png does)")
        with Image.open(path) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation: 5..8 turn the picture a quarter
            mode = img.mode
    except DcganError:
        raise
    except UnidentifiedImageError:
        raise DcganError(
            f"{path} is not an image dcgan can read; pass a PNG, JPEG, WebP, BMP, GIF or TIFF file"
        ) from None
    except OSError as exc:
        if exc.errno is not None:  # the file system's refusal (permissions and the like)
            raise DcganError(f"cannot read {path} ({exc.strerror or exc}); pass a readable image file") from None
        raise _damaged(path, exc) from None
    except Exception as exc:  # PIL raises many types for damaged files
        raise _damaged(path, exc) from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return (width, height), mode


def _damaged(path: Path, exc: Exception) -> DcganError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DcganError(f"{path} is not an image dcgan can decode ({reason}); pass an undamaged image file")


def _is_grey(mode: str, image: torch.Tensor) -> bool:
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"):
        return True
    return image.shape[0] == 3 and bool((image - image.mean(dim=0, keepdim=True)).abs().max() <= GREY_TOLERANCE)


def prepare_image(path: Path, *, dataset: str, size: int, channels: int) -> tuple[torch.Tensor, list[str], tuple]:
    """One file -> ((channels, size, size) in [-1, 1], notes, (width, height)); DcganError when it cannot be used."""
    path = Path(path)
    (width, height), mode = _header(path)
    least = smallest_side(dataset, size)
    if min(width, height) < least:
        raise DcganError(
            f"{path} is {width}x{height} pixels, far smaller than the {size}x{size} images this model draws: "
            f"enlarging it would invent the detail the inversion has to match; give an image at least {least} "
            "pixels on its shorter side"
        )
    try:
        data = path.read_bytes()
        side = min(width, height)
        if dataset in ARRAY_DATASETS or dataset in SCAN_DATASETS:
            # Center-cropped at its own resolution (a no-op resize), then the dataset's own resize.
            if dataset in ARRAY_DATASETS:
                from dcgan_cli.data.arrays import convert_array_images

                square = decode_image(data, side, channels, orient=True)
                pixels = square.add(1).mul(127.5).round().to(torch.uint8)
                image = convert_array_images(pixels[None], size, channels)[0]
            else:  # the scans are grey; a 3-channel digits model sees them repeated (loading.py)
                from dcgan_cli.data.loading import resize_digit_scans

                square = decode_image(data, side, 1, orient=True)
                image = resize_digit_scans(square.add(1).div(2)[None], size)[0].expand(channels, -1, -1)
        else:
            image = decode_image(data, size, channels, orient=True)
        colour = decode_image(data, 16, 3, orient=True) if channels == 1 else image  # a thumbnail says grey or not
    except OSError as exc:
        raise DcganError(f"cannot read {path} ({exc.strerror or exc}); pass a readable image file") from None
    except UnreadableImage as exc:
        raise _damaged(path, exc) from None
    notes = []
    grey = _is_grey(mode, colour)
    if channels == 3 and grey:
        notes.append(
            "a greyscale picture for a colour model: its grey is copied into the three colour channels "
            "(the result shows the model's guess at its colours)"
        )
    elif channels == 1 and not grey:
        notes.append("a colour picture for a greyscale model: converted to grey, as the training images were")
    if dataset in LIGHT_ON_DARK and _border(image) > 0:
        image = -image
        notes.append("dark strokes on a light ground: inverted to light on dark, as the run's digits are")
    return image, notes, (width, height)


def _border(image: torch.Tensor) -> float:
    """Mean of the outermost two pixels all round (the ground a digit is written on)."""
    inner = image[:, 2:-2, 2:-2]
    return float((image.sum() - inner.sum()) / (image.numel() - inner.numel()))


def load_user_images(paths: list[Path], *, dataset: str, size: int, channels: int) -> UserImages:
    """Every file prepared for a model of ``size``/``channels`` trained on ``dataset``, or one
    DcganError for the first that cannot be used (nothing is half done)."""
    if not paths:
        raise DcganError("no image given; name one or more image files, e.g. `dcgan invert seven.png`")
    images, notes, sizes = [], [], []
    for path in paths:
        image, said, original = prepare_image(Path(path), dataset=dataset, size=size, channels=channels)
        images.append(image)
        notes.append(said)
        sizes.append(original)
    return UserImages(torch.stack(images), [Path(p) for p in paths], notes, sizes)
