"""Datasets of encoded images read one at a time: any image folder, CelebA, and the decoding
and cropping they share with LSUN (lsun.py).

Only the list of files (a NumPy bytes array, not a Python list: DataLoader workers then share
it without copying it page by page as reference counts change) and small label tables live
in memory; every image is read and decoded when it is asked for. A file that cannot be read
or decoded gives ``None``, which the collate function drops and counts.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dcgan_cli.core.console import note
from dcgan_cli.core.errors import DcganError

# What `folder` picks up (lower-case suffixes); anything else in the tree is ignored, not counted.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm")


class UnreadableImage(Exception):
    """A file or record that is not a decodable image (the dataset returns None for it)."""


def _eight_bit(img):
    """16-bit and float greyscale scaled to 8 bits (PIL's own convert would clip them at 255)."""
    from PIL import Image

    values = np.asarray(img, dtype=np.float64)
    if values.size and values.max() > 255:
        values = values / 257.0
    return Image.fromarray(values.clip(0, 255).astype(np.uint8), "L")


def decode_image(source: bytes | str | Path, size: int, channels: int, *, orient: bool = False) -> torch.Tensor:
    """Decode, center-crop to a square, resize to ``size``: a float (channels, size, size) in [-1, 1].

    The paper center-crops LSUN and resizes it to 64x64; the same is done for every photo
    dataset. JPEGs are decoded at the smallest DCT scale still at least ``size`` wide (much
    faster; the resize to ``size`` follows anyway). ``orient`` applies the EXIF orientation,
    as a photo viewer would. Anything that goes wrong raises UnreadableImage.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as F

    mode = "L" if channels == 1 else "RGB"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL warns per file (palette transparency, big images)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
                img.draft(mode, (size, size))
                if orient:
                    img = ImageOps.exif_transpose(img)
                if img.mode.startswith("I") or img.mode == "F":
                    img = _eight_bit(img)
                img = img.convert(mode)
        side = min(img.size)
        img = F.center_crop(img, [side, side])
        img = F.resize(img, [size, size], antialias=True)
        pixels = F.pil_to_tensor(img)
    except Exception as exc:  # PIL raises many types for broken files: all mean "not an image"
        if isinstance(exc, UnidentifiedImageError):
            raise UnreadableImage("not in an image format PIL knows") from None
        text = str(exc).strip().splitlines()
        raise UnreadableImage(f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__) from None
    return pixels.float().div_(127.5).sub_(1.0)


class ImageItems(Dataset):
    """Items read one at a time; an unreadable one is ``None``. Subclasses define read and source."""

    def read(self, index: int):
        """The item at ``index``; raises UnreadableImage when it cannot be decoded."""
        raise NotImplementedError

    def source(self, index: int) -> str:
        """Where item ``index`` comes from (a path, a database key), for messages."""
        return f"item {index}"

    def __getitem__(self, index: int):
        try:
            return self.read(index)
        except UnreadableImage:
            return None

    def why_unreadable(self, index: int) -> str | None:
        """Why item ``index`` gives None, or None when it reads fine."""
        try:
            self.read(index)
        except UnreadableImage as exc:
            return f"{self.source(index)}: {exc}"
        return None


def _read_file(path: Path, size: int, channels: int, orient: bool = False) -> torch.Tensor:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableImage(exc.strerror or str(exc)) from None
    return decode_image(data, size, channels, orient=orient)


_noted: set[str] = set()


def note_once(message: str) -> None:
    """A note printed once per process (a dataset is opened twice: checked, then trained on)."""
    if message not in _noted:
        _noted.add(message)
        note(message)


# ------------------------------------------------------------------------------- folder


def scan_image_tree(root: Path) -> list[str]:
    """Relative paths of every image file under ``root``, sorted; hidden files and folders skipped.

    Symbolic links are followed, each real folder once (a link back up the tree cannot loop).
    """
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        rel = os.path.relpath(dirpath, root)
        for name in sorted(filenames):
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                found.append(name if rel == "." else os.path.join(rel, name))
    found.sort()
    return found


class ImageFolderDataset(ImageItems):
    """Every image under a folder, recursively. When all of them lie in subfolders, each
    first-level subfolder is a class and items are ``(image, label)``; otherwise items are images.
    """

    def __init__(self, root: Path, size: int, channels: int):
        if not root.is_dir():
            raise DcganError(f"{root} is not a folder; pass --data a folder of images (searched recursively)")
        self.root, self.size, self.channels = root, size, channels
        paths = scan_image_tree(root)
        self.files = np.array([os.fsencode(p) for p in paths], dtype=bytes) if paths else np.zeros(0, "S1")
        labelled = bool(paths) and all(os.sep in p for p in paths)
        if labelled:
            tops = [p.split(os.sep, 1)[0] for p in paths]
            self.classes: list[str] | None = sorted(set(tops))
            index = {name: i for i, name in enumerate(self.classes)}
            self.targets: torch.Tensor | None = torch.tensor([index[t] for t in tops], dtype=torch.long)
        else:
            self.classes, self.targets = None, None

    def __len__(self) -> int:
        return len(self.files)

    def path(self, index: int) -> Path:
        return self.root / os.fsdecode(self.files[index])

    def source(self, index: int) -> str:
        return str(self.path(index))

    def read(self, index: int):
        image = _read_file(self.path(index), self.size, self.channels, orient=True)
        if self.targets is None:
            return image
        return image, int(self.targets[index])


# ------------------------------------------------------------------------------- CelebA


CELEBA_WHERE = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}


def _first_existing(candidates: list[Path]) -> Path | None:
    return next((p for p in candidates if p.exists()), None)


def find_celeba(root: Path) -> tuple[Path, Path, Path | None]:
    """(image folder, attribute file, partition file or None) in the layouts CelebA ships in:
    the official one (Img/, Anno/, Eval/ or all flat), torchvision's (celeba/) and Kaggle's (CSV)."""
    if not root.is_dir():
        raise DcganError(
            f"{root} is not a folder; pass --data the CelebA folder (img_align_celeba/ + list_attr_celeba.txt)"
        )
    bases = [root, root / "celeba", root / "CelebA"]
    images = _first_existing(
        [
            b / sub
            for b in bases
            for sub in (
                "img_align_celeba/img_align_celeba",
                "img_align_celeba",
                "Img/img_align_celeba",
                "img_align_celeba_png",
            )
        ]
    )
    attrs = _first_existing(
        [
            b / sub
            for b in bases
            for sub in ("list_attr_celeba.txt", "Anno/list_attr_celeba.txt", "list_attr_celeba.csv")
        ]
    )
    partition = _first_existing(
        [
            b / sub
            for b in bases
            for sub in ("list_eval_partition.txt", "Eval/list_eval_partition.txt", "list_eval_partition.csv")
        ]
    )
    if images is None or attrs is None:
        missing = " and ".join(
            n for n, p in (("img_align_celeba/", images), ("list_attr_celeba.txt", attrs)) if p is None
        )
        raise DcganError(
            f"no CelebA {missing} in {root}; get the aligned images and annotations from {CELEBA_WHERE} "
            "(or add --download) and pass --data the folder holding them"
        )
    return images, attrs, partition


def _rows(path: Path) -> list[list[str]]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DcganError(f"cannot read {path}: {exc.strerror or exc}") from None
    if path.suffix == ".csv":
        return [line.strip().split(",") for line in text.splitlines() if line.strip()]
    return [line.split() for line in text.splitlines() if line.strip()]


def read_celeba_attributes(path: Path) -> tuple[list[str], list[str], torch.Tensor]:
    """(file names, attribute names, attributes (N, A) float in {0, 1}) from list_attr_celeba.

    The .txt has a count line, a line of names, then "name v1 ... vA" with values -1 or 1;
    Kaggle's .csv has a header "image_id,name,..." and the same rows. -1 becomes 0.
    """
    rows = _rows(path)
    redo = f"download {path.name} again"
    if path.suffix == ".csv":
        if not rows or rows[0][0] != "image_id":
            raise DcganError(f"{path} does not start with the header image_id,...; {redo}")
        names, body, first_line = rows[0][1:], rows[1:], 2
    else:
        if len(rows) < 2 or len(rows[0]) != 1 or not rows[0][0].isdigit():
            raise DcganError(f"{path} does not start with the image count and the attribute names; {redo}")
        names, body, first_line = rows[1], rows[2:], 3
        if int(rows[0][0]) != len(body):
            raise DcganError(
                f"{path} announces {int(rows[0][0])} images but lists {len(body)}: it is cut short; {redo}"
            )
    values = np.empty((len(body), len(names)), dtype=np.int8)
    files = []
    for i, row in enumerate(body):
        if len(row) != len(names) + 1:
            raise DcganError(f"{path}, line {first_line + i}: expected a file name and {len(names)} values; {redo}")
        try:
            values[i] = [int(v) for v in row[1:]]
        except ValueError:
            raise DcganError(f"{path}, line {first_line + i}: attribute values must be -1 or 1; {redo}") from None
        files.append(row[0])
    if not np.isin(values, (-1, 0, 1)).all():
        raise DcganError(f"{path}: attribute values must be -1 or 1; {redo}")
    return files, names, torch.from_numpy(values > 0).float()


def read_celeba_partition(path: Path) -> dict[str, int]:
    """File name -> 0 (train), 1 (valid) or 2 (test), from list_eval_partition."""
    rows = _rows(path)
    if path.suffix == ".csv" and rows and rows[0][0] == "image_id":
        rows = rows[1:]
    try:
        return {row[0]: int(row[1]) for row in rows}
    except (IndexError, ValueError):
        raise DcganError(f"{path} is not a CelebA partition file (lines of 'name 0|1|2'); download it again") from None


class CelebADataset(ImageItems):
    """Aligned CelebA faces with their 40 attributes: items are ``(image, attrs)``.

    ``attrs`` is a float tensor of 40 values in {0, 1} (the file's -1 is 0), in the order of
    ``attr_names`` ("5_o_Clock_Shadow", ..., "Smiling", ..., "Young"). ``split`` is train,
    valid or test (from list_eval_partition.txt) or all.
    """

    def __init__(self, root: Path, size: int, channels: int, split: str | None = None):
        split = split or "all"
        if split != "all" and split not in SPLIT_CODES:
            raise DcganError(f"celeba has the splits train, valid, test and all, not {split!r}; pick one with --split")
        self.image_dir, attr_file, partition_file = find_celeba(root)
        self.size, self.channels = size, channels
        files, self.attr_names, attrs = read_celeba_attributes(attr_file)
        keep = np.ones(len(files), dtype=bool)
        if split != "all":
            if partition_file is None:
                raise DcganError(
                    f"--split {split} needs list_eval_partition.txt beside {attr_file.name} in {attr_file.parent}; "
                    f"get it from {CELEBA_WHERE}, or use --split all"
                )
            partition = read_celeba_partition(partition_file)
            keep &= np.array([partition.get(f) == SPLIT_CODES[split] for f in files], dtype=bool)
        # Each listed file as it is on disk; the PNG edition has the same names ending in .png.
        present = {entry.name for entry in os.scandir(self.image_dir)}
        wanted = int(keep.sum())
        names = []
        for i, f in enumerate(files):
            if not keep[i]:
                continue
            on_disk = f if f in present else f"{os.path.splitext(f)[0]}.png"
            if on_disk in present:
                names.append(on_disk)
            else:
                keep[i] = False
        if wanted and not names:
            raise DcganError(
                f"none of the {wanted} images listed in {attr_file.name} is in {self.image_dir}; "
                "extract img_align_celeba.zip there (its files are named 000001.jpg, ...)"
            )
        self.split = split
        self.filenames = np.array([n.encode() for n in names], dtype=bytes) if names else np.zeros(0, "S1")
        self.attrs = attrs[torch.from_numpy(keep)]
        if 0 < len(names) < wanted:
            note_once(
                f"celeba: {wanted - len(names)} images listed in {attr_file.name} are not in {self.image_dir}; "
                f"using the {len(names)} that are"
            )

    def __len__(self) -> int:
        return len(self.filenames)

    def path(self, index: int) -> Path:
        return self.image_dir / self.filenames[index].decode()

    def source(self, index: int) -> str:
        return str(self.path(index))

    def read(self, index: int):
        return _read_file(self.path(index), self.size, self.channels), self.attrs[index]
