"""Labelers that learn the run's own labels: a classifier trained on the run's labelled images names
what generated images show (classes.py), and the digits labeler uses it on MNIST-style runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset
from dcgan_cli.latent.concepts import read_bank
from dcgan_cli.latent.labelers.base import LabelerContext, choose_labelers, get_labelers
from dcgan_cli.latent.labelers.classes import ClassLabeler, class_concept_names, training_steps
from dcgan_cli.latent.labelers.digits import DigitLabeler
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
MNIST_RUN = ROOT / "tests" / "fixtures" / "mnist5k-run"


def test_labelers_by_dataset():
    labelers = get_labelers()
    assert labelers["classes"] is ClassLabeler and labelers["digits"] is DigitLabeler
    assert choose_labelers(None, "mnist5k") == choose_labelers(None, "mnist") == [DigitLabeler]
    assert choose_labelers(None, "cifar10") == choose_labelers(None, "folder") == [ClassLabeler]
    assert class_concept_names(["0 - zero", "airplane", "Wearing_Hat", "001", "t-shirt"]) == [
        "zero",
        "airplane",
        "wearing hat",
        "class_001",
        "t shirt",
    ]
    assert training_steps(5000) == 20 * 79 and training_steps(100) == 200 and training_steps(60000) == 3000


def write_digit_folder(root: Path, digits: dict[str, int], per_class: int) -> Path:
    """Class subfolders of real MNIST digits (from the bundled mnist5k) as PNG files."""
    from PIL import Image

    real, _ = load_dataset("mnist5k", DataOptions(size=28))
    targets = real.targets.numpy()
    for name, digit in digits.items():
        (root / name).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(targets == digit)[:per_class]):
            pixels = ((real[int(i)][0][0].numpy() + 1) * 127.5).round().astype(np.uint8)
            Image.fromarray(pixels, "L").save(root / name / f"{k:03d}.png")
    return root


def folder_run(tmp_path: Path, folder: Path) -> Path:
    """A run trained (briefly) on a folder of images, at ./runs/folder-run."""
    root = tmp_path / "runs" / "folder-run"
    create_run(
        root,
        DCGANConfig(size=32, channels=1, ngf=8, ndf=8, nz=16),
        TrainConfig(dataset="folder", data=str(folder), epochs=1, max_steps=2, batch_size=16, device="cpu"),
        {"name": "folder", "data": str(folder)},
    )
    Trainer(root).run()
    return root


def test_class_labeler_learns_a_labelled_folder_and_caches_it(tmp_path, cli, monkeypatch):
    folder = write_digit_folder(tmp_path / "digits", {"zeros": 0, "ones": 1, "sevens": 7}, per_class=40)
    run = folder_run(tmp_path, folder)
    monkeypatch.chdir(tmp_path)
    result = cli(["concepts", "auto", "-r", run, "-n", "300", "--keep", "3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    bank = read_bank(run / "concepts.json")
    assert set(bank) <= {"zeros", "ones", "sevens"} and bank  # the folder's classes, nothing else
    assert all(c.source["labeler"] == "classes" for c in bank.values())
    cache = run / "labelers" / "classes.safetensors"
    assert cache.is_file()
    trained_at = cache.stat().st_mtime_ns

    # The classifier learned the real digits: its held-out accuracy, and other real digits it never saw.
    context = LabelerContext(run, DCGANConfig(size=32, channels=1, ngf=8, ndf=8, nz=16), "folder", data=folder)
    labeler = ClassLabeler(context)
    labeler.prepare()  # from the cache: not trained again
    assert cache.stat().st_mtime_ns == trained_at
    assert labeler.attributes() == ["ones", "sevens", "zeros"]  # class folders in sorted order
    assert labeler.describe()["classifier_held_out_accuracy"] >= 0.9
    real, _ = load_dataset("mnist5k", DataOptions())
    want = {0: "zeros", 1: "ones", 7: "sevens"}
    rows = np.concatenate([np.flatnonzero(real.targets.numpy() == d)[100::15] for d in want])  # past the 40 it saw
    guessed = np.array(labeler.names)[labeler.score(torch.stack([real[int(i)][0] for i in rows])).argmax(axis=1)]
    assert (guessed == np.array([want[int(real.targets[i])] for i in rows])).mean() >= 0.9


def test_class_labeler_on_cifar10_files_names_its_ten_classes(tmp_path):
    """CIFAR-10's binary format (label byte + 3,072 pixel bytes per record) holding real digits in colour:
    the labeler reads the run's files, learns their labels and calls the classes by CIFAR-10's names."""
    real, _ = load_dataset("mnist5k", DataOptions(size=32, channels=3))
    rows = np.concatenate([np.flatnonzero(real.targets.numpy() == d)[:60] for d in range(10)])
    images = torch.stack([real[int(i)][0] for i in rows]).add(1).mul(127.5).round().to(torch.uint8)
    records = np.concatenate([real.targets.numpy()[rows, None].astype(np.uint8), images.reshape(len(rows), -1)], 1)
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    records[np.random.default_rng(0).permutation(len(records))].tofile(folder / "data_batch_1.bin")
    context = LabelerContext(tmp_path / "run", DCGANConfig(size=32, channels=3), "cifar10", data=tmp_path, device="cpu")
    labeler = ClassLabeler(context)
    labeler.prepare()
    assert labeler.attributes() == [
        "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"
    ]  # fmt: skip
    assert [r.name for r in labeler.concepts()] == labeler.attributes()
    assert labeler.describe()["classifier_held_out_accuracy"] >= 0.8  # 60 held out of 600
    assert (tmp_path / "run" / "labelers" / "classes.safetensors").is_file()


def test_runs_without_labels_say_what_would_help(tmp_path, cli, monkeypatch):
    flat = tmp_path / "flat"
    write_digit_folder(tmp_path / "tmp-digits", {"a": 3, "b": 4}, per_class=12)
    flat.mkdir()
    for png in sorted((tmp_path / "tmp-digits").rglob("*.png")):
        png.rename(flat / f"{png.parent.name}-{png.name}")  # no class subfolders: no labels
    one = write_digit_folder(tmp_path / "one-class", {"threes": 3}, per_class=24)
    monkeypatch.chdir(tmp_path)
    for folder, message in ((flat, "has no class subfolders"), (one, "one class only ('threes')")):
        run = folder_run(tmp_path / f"run-of-{folder.name}", folder)
        result = cli(["concepts", "auto", "-r", run, "-n", "64"])
        assert result.exit_code == ExitCode.BAD_INPUT, result.output
        assert message in result.stderr and "Traceback" not in result.output
        assert "dcgan concepts add" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert not (run / "concepts.json").exists() and not (run / "labelers" / "classes.safetensors").exists()
    # A run whose dataset no labeler reads (procedural scenes): the same kind of answer.
    scenes = ROOT / "tests" / "fixtures" / "scenes-run"
    result = cli(["concepts", "auto", "-r", scenes, "-n", "64"])
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "no labeler knows the dataset 'scenes'" in result.stderr and "--labeler classes" in result.stderr


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory) -> Path:
    """A copy of the committed run trained on the 5,000 real MNIST digits, its class classifier trained once."""
    import shutil

    if not (MNIST_RUN / "generator.safetensors").is_file():
        pytest.skip("the committed mnist5k fixture run is missing")
    run = tmp_path_factory.mktemp("mnist") / "runs" / "mnist5k-run"
    run.mkdir(parents=True)
    for name in ("config.json", "generator.safetensors", "discriminator.safetensors"):
        shutil.copy(MNIST_RUN / name, run / name)
    return run


@pytest.mark.slow
def test_concepts_auto_on_real_mnist_finds_every_digit_and_the_stroke_concepts(mnist_run, cli, monkeypatch):
    monkeypatch.chdir(mnist_run.parents[1])
    result = cli(["concepts", "auto", "-r", mnist_run, "-n", "4000", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    bank = read_bank(mnist_run / "concepts.json")
    digits = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    assert set(digits) <= set(bank), sorted(set(digits) - set(bank))
    assert {"thick", "thin", "slanted", "thick seven", "thin seven"} <= set(bank)
    meta = json.loads(
        __import__("safetensors")
        .safe_open(mnist_run / "labelers" / "classes.safetensors", "np")
        .metadata()["held_out_accuracy"]
    )
    assert meta >= 0.95  # a classifier of the real digits, measured on real digits it did not see
    assert "the run's labelled digits" in result.stdout + result.stderr or "0.9" in result.stdout + result.stderr
    # Thick sevens are thicker than thin sevens (measured in pixels on the generated images).
    thick, thin = bank["thick seven"].source["thickness_px"], bank["thin seven"].source["thickness_px"]
    assert min(thick) > max(thin)
    arithmetic = cli(["arithmetic", "thick seven - seven + one", "-r", mnist_run, "--device", "cpu"])
    assert arithmetic.exit_code == 0, arithmetic.output
