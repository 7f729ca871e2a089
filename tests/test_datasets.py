"""The real datasets, each read from small files this module writes in its publisher's format:
an LSUN LMDB written with the lmdb package, a CelebA folder with its attribute and partition
files, CIFAR-10 python batches (pickled as the real ones are) and binary batches, MNIST IDX
files gzipped, and a nested image folder with broken files in it.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_cli.core.errors import DcganError, ExitCode
from dcgan_cli.data.batches import collate_images
from dcgan_cli.data.catalog import DataOptions, get_datasets
from dcgan_cli.data.loading import load_dataset

CELEBA_ATTRS = [
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
]


# --------------------------------------------------------------------------- file writers


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A small RGB picture: a gradient with a random block, different for each seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), np.full_like(x, seed * 37 % 256)], -1
    )
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    pixels[top : top + height // 3, left : left + width // 3] = rng.integers(0, 256, 3)
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def encoded(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, quality=85) if fmt in ("JPEG", "WEBP") else img.save(buf, fmt)
    return buf.getvalue()


def thirds(width: int, height: int) -> Image.Image:
    """Red, green and blue vertical thirds: a center crop to a square keeps only the green."""
    pixels = np.zeros((height, width, 3), np.uint8)
    third = width // 3
    pixels[:, :third, 0] = 255
    pixels[:, third : 2 * third, 1] = 255
    pixels[:, 2 * third :, 2] = 255
    return Image.fromarray(pixels, "RGB")


def write_lsun(db: Path, n: int = 14, broken: int = 2) -> Path:
    """An LMDB as LSUN ships it: SHA-1 hex keys -> WebP bytes (a few JPEGs); ``broken`` damaged values."""
    import lmdb

    db.parent.mkdir(parents=True, exist_ok=True)
    env = lmdb.open(str(db), map_size=1 << 26)
    with env.begin(write=True) as txn:
        for i in range(n):
            img = thirds(150, 50) if i == 0 else photo(48 + 4 * (i % 3), 40, i)
            txn.put(hashlib.sha1(f"image {i}".encode()).hexdigest().encode(), encoded(img, "WEBP" if i % 3 else "JPEG"))
        for j in range(broken):
            value = encoded(photo(48, 40, 100 + j), "WEBP")[:60] if j % 2 == 0 else b"this is not an image"
            txn.put(hashlib.sha1(f"broken {j}".encode()).hexdigest().encode(), value)
    env.close()
    return db


def write_celeba(root: Path, n: int = 12, partition: bool = True) -> torch.Tensor:
    """img_align_celeba/000001.jpg ... with list_attr_celeba.txt (-1/1, the real spacing) and
    list_eval_partition.txt; returns the -1/1 attribute table written."""
    rng = np.random.default_rng(0)
    (root / "img_align_celeba").mkdir(parents=True)
    values = rng.choice([-1, 1], size=(n, len(CELEBA_ATTRS)))
    lines = [str(n), " ".join(CELEBA_ATTRS) + " "]
    for i in range(n):
        name = f"{i + 1:06d}.jpg"
        photo(44, 54, i).save(root / "img_align_celeba" / name, quality=90)
        lines.append(name + "".join(f" {v:2d}" for v in values[i]))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    if partition:  # 6 train, 3 valid, 3 test
        codes = [0] * (n // 2) + [1] * (n // 4) + [2] * (n - n // 2 - n // 4)
        (root / "list_eval_partition.txt").write_text("".join(f"{i + 1:06d}.jpg {c}\n" for i, c in enumerate(codes)))
    return torch.from_numpy(values)


def cifar_pickle(obj) -> bytes:
    # The published batches were pickled by Python 2's NumPy, which names numpy.core.multiarray.
    data = pickle.dumps(obj, protocol=2)
    return data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar_images(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """(n, 3072) rows (R plane, G plane, B plane); image k of each batch is pure red, green or blue."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    data[0] = 0
    data[0, seed % 3] = 255
    return data.reshape(n, 3072), [int(v) for v in rng.integers(0, 10, n)]


def write_cifar10(root: Path, per_batch: int = 8, binary: bool = False) -> Path:
    folder = root / ("cifar-10-batches-bin" if binary else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        data, labels = cifar_images(per_batch, seed)
        if binary:
            (folder / f"{name}.bin").write_bytes(
                np.concatenate([np.array(labels, np.uint8)[:, None], data], 1).tobytes()
            )
        else:
            batch = {
                b"batch_label": name.encode(),
                b"labels": labels,
                b"data": data,
                b"filenames": [b"x.png"] * per_batch,
            }
            (folder / name).write_bytes(cifar_pickle(batch))
    if binary:
        (folder / "batches.meta.txt").write_text("\n".join(CIFAR_CLASSES) + "\n\n")
    else:
        meta = {
            b"num_cases_per_batch": per_batch,
            b"label_names": [c.encode() for c in CIFAR_CLASSES],
            b"num_vis": 3072,
        }
        (folder / "batches.meta").write_bytes(cifar_pickle(meta))
    return root


def idx_bytes(array: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(root: Path, n_train: int = 16, n_test: int = 8, gz: bool = True) -> Path:
    """train-/t10k- images (idx3) and labels (idx1), gzipped; image 0's top half is white."""
    rng = np.random.default_rng(1)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
        images[0, :14] = 255
        labels = (np.arange(n) % 10).astype(np.uint8)
        for kind, array in (("images-idx3", images), ("labels-idx1", labels)):
            path = root / f"{prefix}-{kind}-ubyte{'.gz' if gz else ''}"
            path.write_bytes(gzip.compress(idx_bytes(array)) if gz else idx_bytes(array))
    return root


def write_folder(root: Path) -> Path:
    """8 good images in class subfolders, nested, of several formats; 4 broken image files;
    files that are not images, or hidden, which must be ignored."""
    good = {
        "cats/a.jpg": "JPEG",
        "cats/deep/b.png": "PNG",
        "cats/deep/deeper/c.webp": "WEBP",
        "cats/D.JPEG": "JPEG",
        "dogs/e.bmp": "BMP",
        "dogs/f.gif": "GIF",
        "dogs/x/y/g.tiff": "TIFF",
        "dogs/h.png": "PNG",
    }
    for i, (rel, fmt) in enumerate(good.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = photo(40 + 3 * i, 36, i)
        path.write_bytes(encoded(img.convert("P") if fmt == "GIF" else img, fmt))
    (root / "cats/truncated.jpg").write_bytes(encoded(photo(40, 40, 50), "JPEG")[:200])
    (root / "dogs/notes.png").write_text("not a picture")
    (root / "dogs/empty.jpg").write_bytes(b"")
    (root / "cats/deep/noise.webp").write_bytes(np.random.default_rng(2).bytes(300))
    (root / "dogs/README.txt").write_text("ignored: not an image suffix")
    (root / "cats/._a.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble junk")  # hidden: ignored
    (root / ".thumbnails").mkdir()
    photo(20, 20, 9).save(root / ".thumbnails/t.png")
    return root


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep the LMDB key cache out of the user's ~/.cache."""
    monkeypatch.setenv("DCGAN_CACHE_DIR", str(tmp_path / "cache"))


def load(name, data, **options):
    return load_dataset(name, DataOptions(data=data, **options))


def assert_images(dataset, shape, skip=()):
    """Every item other than those in ``skip`` is an image of ``shape`` in [-1, 1]; those are None."""
    for i in range(len(dataset)):
        item = dataset[i]
        if i in skip:
            assert item is None, i
            continue
        image = item[0] if isinstance(item, tuple) else item
        assert image.dtype == torch.float32 and tuple(image.shape) == shape, (i, image.shape)
        assert image.min() >= -1.0 and image.max() <= 1.0 and image.max() > image.min()


# ---------------------------------------------------------------------------------- LSUN


def test_lsun_reads_the_lmdb_lazily_with_center_crop(tmp_path):
    db = write_lsun(tmp_path / "bedroom_train_lmdb")
    dataset, options = load("lsun", db)
    assert (options.size, options.channels) == (64, 3)  # the paper's LSUN setting
    assert len(dataset) == 16
    broken = {
        i
        for i in range(16)
        if dataset.key(i) in {hashlib.sha1(f"broken {j}".encode()).hexdigest().encode() for j in range(2)}
    }
    assert len(broken) == 2
    assert_images(dataset, (3, 64, 64), skip=broken)
    # Image 0 is red | green | blue thirds, 150x50: the center crop keeps the middle, all green.
    first = next(i for i in range(16) if dataset.key(i) == hashlib.sha1(b"image 0").hexdigest().encode())
    mean = dataset[first].mean(dim=(1, 2))
    assert mean[1] > 0.8 and mean[0] < -0.8 and mean[2] < -0.8, mean
    assert all("key" in dataset.why_unreadable(i) for i in broken) and dataset.why_unreadable(first) is None
    # Nothing of the database is held: what a spawned worker receives is the key table, a few KB.
    assert len(pickle.dumps(dataset)) < 4096 < (db / "data.mdb").stat().st_size
    # The key list is cached in our cache folder (not beside the data) and reused.
    cached = list((tmp_path / "cache" / "lmdb-keys").glob("*.npy"))
    assert len(cached) == 1 and sorted(p.name for p in db.iterdir()) == ["data.mdb", "lock.mdb"]
    stamp = cached[0].stat().st_mtime_ns
    again, _ = load("lsun", db, size=32, channels=1)
    assert again.key(5) == dataset.key(5) and tuple(again[first].shape) == (1, 32, 32)
    assert cached[0].stat().st_mtime_ns == stamp


def test_lsun_category_picks_a_database_and_errors_say_where_to_get_it(tmp_path):
    write_lsun(tmp_path / "scenes" / "bedroom_train_lmdb", n=6, broken=0)
    write_lsun(tmp_path / "scenes" / "kitchen_train_lmdb", n=4, broken=0)
    dataset, _ = load("lsun", tmp_path / "scenes", category="kitchen")
    assert len(dataset) == 4 and dataset.database.name == "kitchen_train_lmdb"
    with pytest.raises(DcganError, match=r"holds 2 LSUN databases \(bedroom, kitchen\); pick one with --category"):
        load("lsun", tmp_path / "scenes")
    with pytest.raises(DcganError, match="no LSUN database for --category tower .* it holds: bedroom, kitchen"):
        load("lsun", tmp_path / "scenes", category="tower")
    (tmp_path / "nothing").mkdir()
    for data in (tmp_path / "nothing", None):
        with pytest.raises(DcganError, match=r"github.com/fyu/lsun .*download.py -c bedroom"):
            load("lsun", data)
    empty = tmp_path / "empty_lmdb"
    __import__("lmdb").open(str(empty)).close()
    with pytest.raises(DcganError, match="has no images"):
        load("lsun", empty)


# -------------------------------------------------------------------------------- CelebA


def test_celeba_images_with_their_40_attributes_and_splits(tmp_path):
    written = write_celeba(tmp_path / "celeba")
    dataset, options = load("celeba", tmp_path / "celeba")
    assert (options.size, options.channels) == (64, 3)
    assert dataset.attr_names == CELEBA_ATTRS and len(dataset.attr_names) == 40
    assert len(dataset) == 12
    assert_images(dataset, (3, 64, 64))
    image, attrs = dataset[3]
    assert attrs.dtype == torch.float32 and attrs.shape == (40,)
    assert torch.equal(attrs, (written[3] > 0).float())  # -1 -> 0, 1 -> 1, in file order
    smiling = dataset.attr_names.index("Smiling")
    assert attrs[smiling] == float(written[3, CELEBA_ATTRS.index("Smiling")] > 0)
    sizes = {
        split: len(load("celeba", tmp_path / "celeba", split=split)[0]) for split in ("train", "valid", "test", "all")
    }
    assert sizes == {"train": 6, "valid": 3, "test": 3, "all": 12}
    test_set, _ = load("celeba", tmp_path / "celeba", split="test")
    assert torch.equal(test_set[0][1], (written[9] > 0).float())  # the first test image is 000010.jpg


def test_celeba_without_partition_file_or_with_missing_images(tmp_path, capsys):
    write_celeba(tmp_path / "c", n=8, partition=False)
    assert len(load("celeba", tmp_path / "c")[0]) == 8
    with pytest.raises(DcganError, match="--split train needs list_eval_partition.txt"):
        load("celeba", tmp_path / "c", split="train")
    (tmp_path / "c" / "img_align_celeba" / "000002.jpg").unlink()
    assert len(load("celeba", tmp_path / "c")[0]) == 7
    assert "1 images listed in list_attr_celeba.txt are not in" in capsys.readouterr().err
    (tmp_path / "c" / "list_attr_celeba.txt").write_text("8\n" + " ".join(CELEBA_ATTRS) + "\n000001.jpg 1 -1\n")
    with pytest.raises(DcganError, match="announces 8 images but lists 1"):
        load("celeba", tmp_path / "c")
    with pytest.raises(DcganError, match="no CelebA img_align_celeba/ and list_attr_celeba.txt"):
        load("celeba", tmp_path)


# ------------------------------------------------------------------------------ CIFAR-10


@pytest.mark.parametrize("binary", [False, True], ids=["python", "binary"])
def test_cifar10_batches(tmp_path, binary):
    write_cifar10(tmp_path, binary=binary)
    dataset, options = load("cifar10", tmp_path)
    assert (options.size, options.channels) == (32, 3)
    assert len(dataset) == 40 and dataset.classes == CIFAR_CLASSES
    assert_images(dataset, (3, 32, 32))
    for batch in range(5):  # image 0 of batch k is pure red, green or blue: plane order R, G, B
        image, label = dataset[8 * batch]
        assert image[batch % 3].min() == 1.0 and image.sum() == -32 * 32  # one plane at 1, two at -1
        assert label == cifar_images(8, batch)[1][0] == int(dataset.targets[8 * batch])
    assert len(load("cifar10", tmp_path, split="test")[0]) == 8
    assert len(load("cifar10", tmp_path, split="all")[0]) == 48
    grey, _ = load("cifar10", tmp_path, size=64, channels=1)
    assert tuple(grey[0][0].shape) == (1, 64, 64)


class Payload:
    """Unpickling this with pickle.load creates ``path``: what a malicious batch would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_malicious_cifar_batch_is_refused_and_not_run(tmp_path, cli, monkeypatch):
    write_cifar10(tmp_path / "evil")
    marker = tmp_path / "pwned"
    batch = {b"labels": [0], b"data": np.zeros((1, 3072), np.uint8), b"hook": Payload(marker)}
    (tmp_path / "evil" / "cifar-10-batches-py" / "data_batch_1").write_bytes(cifar_pickle(batch))
    with pytest.raises(
        DcganError, match=r"asks for io\.open, which a CIFAR-10 batch never needs; refusing to unpickle it"
    ):
        load("cifar10", tmp_path / "evil")
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "cifar10", "--data", tmp_path / "evil", "--out", "runs/evil"])
    assert result.exit_code == ExitCode.BAD_INPUT and "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.startswith("Error:")][0].count(
        "refusing to unpickle"
    ) == 1
    assert not marker.exists() and not (tmp_path / "runs" / "evil").exists()
    # The payload is live: plain pickle would have run it.
    with open(tmp_path / "evil" / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        pickle.load(f, encoding="bytes")
    assert marker.exists()


# --------------------------------------------------------------------------------- MNIST


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_mnist_idx_files(tmp_path, gz):
    write_mnist(tmp_path / "MNIST" / "raw", gz=gz)  # torchvision's layout, found from the parent
    dataset, options = load("mnist", tmp_path)
    assert (options.size, options.channels) == (32, 1)
    assert len(dataset) == 16 and dataset.classes[3] == "3 - three"
    assert dataset.targets.tolist() == [i % 10 for i in range(16)]
    assert_images(dataset, (1, 32, 32))
    image, label = dataset[0]
    assert label == 0 and image[0, :14].min() > 0.95 and image[0, 18:].max() < -0.5  # white top half
    assert len(load("mnist", tmp_path, split="test")[0]) == 8
    assert len(load("mnist", tmp_path, split="all")[0]) == 24
    with pytest.raises(DcganError, match="splits train, test and all"):
        load("mnist", tmp_path, split="valid")


def test_mnist_damaged_files_are_clear_errors(tmp_path):
    root = write_mnist(tmp_path / "m")
    images = root / "train-images-idx3-ubyte.gz"
    whole = images.read_bytes()
    images.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DcganError, match="truncated gzip file"):
        load("mnist", root)
    images.write_bytes(gzip.compress(gzip.decompress(whole)[:-100]))
    with pytest.raises(DcganError, match="header describes"):
        load("mnist", root)
    images.write_bytes(gzip.compress(b"\x89PNG not idx at all"))
    with pytest.raises(DcganError, match="not an IDX file"):
        load("mnist", root)
    with pytest.raises(DcganError, match="no MNIST train-images-idx3-ubyte"):
        load("mnist", tmp_path)


# -------------------------------------------------------------------------------- folder


def test_folder_tree_with_classes_and_broken_files(tmp_path):
    root = write_folder(tmp_path / "pets")
    dataset, options = load("folder", root)
    assert (options.size, options.channels) == (64, 3)
    names = [str(dataset.path(i).relative_to(root)) for i in range(len(dataset))]
    assert len(dataset) == 12 and not any("README" in n or "._" in n or ".thumbnails" in n for n in names)
    assert dataset.classes == ["cats", "dogs"]
    broken = {
        names.index(n) for n in ("cats/truncated.jpg", "dogs/notes.png", "dogs/empty.jpg", "cats/deep/noise.webp")
    }
    assert_images(dataset, (3, 64, 64), skip=broken)
    assert all(dataset[i][1] == (0 if names[i].startswith("cats") else 1) for i in range(12) if i not in broken)
    assert "truncated.jpg" in dataset.why_unreadable(names.index("cats/truncated.jpg"))
    batch = collate_images([dataset[i] for i in range(12)])
    assert batch.images.shape == (8, 3, 64, 64) and batch.skipped == 4
    # A flat folder: plain images, no labels.
    flat = tmp_path / "flat"
    flat.mkdir()
    for i in range(3):
        photo(30, 50, i).save(flat / f"{i}.png")
    flat_set, _ = load("folder", flat, size=32, channels=1)
    assert flat_set.classes is None and tuple(flat_set[0].shape) == (1, 32, 32)


def test_empty_or_unreadable_datasets_are_refused(tmp_path, cli, monkeypatch):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(DcganError, match="dataset 'folder' has no images in .*empty; it expects: a folder of images"):
        load("folder", tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    for i in range(3):
        (bad / f"{i}.jpg").write_bytes(b"garbage")
    with pytest.raises(
        DcganError,
        match=r"has no readable image: none of its 3 items decodes \(e.g. .*0.jpg: not in an image format PIL knows",
    ):
        load("folder", bad)
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "folder", "--data", "bad", "--out", "runs/bad"])
    assert (
        result.exit_code == ExitCode.BAD_INPUT
        and "has no readable image" in result.stderr
        and "Traceback" not in result.output
    )
    assert not (tmp_path / "runs" / "bad").exists()  # refused before the run folder is made


def test_download_without_network_is_one_clear_line(tmp_path, cli, monkeypatch):
    from dcgan_cli.data import download as datasets_download

    # Port 9 (discard) on this machine refuses connections at once: the same failure as no network.
    monkeypatch.setattr(datasets_download, "CIFAR10_URL", "http://127.0.0.1:9/cifar-10-python.tar.gz")
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "cifar10", "--download", "--out", "runs/c"])
    assert result.exit_code == ExitCode.BAD_INPUT and "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "could not download CIFAR-10 from http://127.0.0.1:9/" in errors[0]
    assert not list((tmp_path / "data" / "cifar10").glob("*.tar.gz"))  # no partial file left
    result = cli(["train", "folder", "--download", "--data", "x"])
    assert result.exit_code == ExitCode.BAD_INPUT and "cannot be downloaded" in result.stderr


# ------------------------------------------------------------------------------ training


def _lsun(tmp_path):
    return write_lsun(tmp_path / "bedroom_train_lmdb", n=16, broken=0)


def _celeba(tmp_path):
    write_celeba(tmp_path / "celeba", n=16)
    return tmp_path / "celeba"


@pytest.mark.parametrize(
    "name,make,extra,steps",
    [
        ("lsun", _lsun, ["--workers", "2"], 4),  # forked workers read through the LMDB environment
        ("celeba", _celeba, ["--split", "all"], 4),
        ("cifar10", lambda p: write_cifar10(p, per_batch=4), [], 5),
        ("mnist", lambda p: write_mnist(p / "mnist"), [], 4),
        ("folder", lambda p: write_folder(p / "pets"), [], 3),
    ],
)
def test_train_one_epoch_on_each_dataset(tmp_path, cli, monkeypatch, name, make, extra, steps):
    data = make(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = ["train", name, "--data", data, "--epochs", 1, "--ngf", 8, "--ndf", 8, "--nz", 16, "--batch-size", 4]
    result = cli([*args, "--out", "runs/one", *extra])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "one"
    assert (run / "samples" / "epoch-001.png").is_file() and (run / "generator.safetensors").is_file()
    assert json.loads((run / "latest.json").read_text())["step"] == steps  # every batch of the epoch
    assert json.loads((run / "config.json").read_text())["train"]["dataset"] == name
    if name == "folder":  # 12 files, 4 of them broken: 3 full batches, every broken one counted once
        assert "epoch 1: skipped 4 unreadable images" in result.stderr


def test_datasets_command_lists_every_dataset_and_inspects_one(tmp_path, cli):
    result = cli(["datasets", "--json"])
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert {"digits", "fake", "lsun", "celeba", "cifar10", "mnist", "folder"} <= set(rows) == set(get_datasets())
    assert rows["lsun"]["size"] == 64 and "data.mdb" in rows["lsun"]["expects"] and rows["lsun"]["downloads"]
    assert (rows["mnist"]["size"], rows["mnist"]["channels"]) == (32, 1)
    write_celeba(tmp_path / "celeba", n=6)
    result = cli(["datasets", "celeba", "--data", tmp_path / "celeba"])
    assert result.exit_code == 0, result.output
    assert "6 items" in result.stdout and "Smiling" in result.stdout and "3x64x64" in result.stdout
