"""`dcgan invert` and image concepts: your own images in the latent space.

Inversion runs on the committed fixture runs (a digits model, a colour scenes model) and on
a tiny CelebA-format run trained here; images the generator itself drew from a known z are
the ground truth (an exact match exists), real-format files test the preparation.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.images import image_from_tensor
from dcgan_cli.core.model import DCGANConfig, build_models
from dcgan_cli.core.networks import load_generator, save_discriminator, save_generator
from dcgan_cli.core.prior import seeded_z, typical_norm
from dcgan_cli.engines.sampling import read_sheet
from dcgan_cli.latent.concepts import read_bank
from dcgan_cli.latent.invert import Inverter, InvertSettings, pixel_error
from dcgan_cli.training.config import TrainConfig, create_run

FIXTURES = Path(__file__).parent / "fixtures"
BAD_INPUT = DcganError.exit_code
QUICK = {"steps": 20, "candidates": 64, "encoder": False}  # enough to show the promises, fast


def error_line(result) -> str:
    assert result.exit_code == BAD_INPUT, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def digits_run(tmp_path, monkeypatch) -> Path:
    """A private copy of the committed digits model at ./runs/digits, cwd in a temp folder."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(FIXTURES / "digits-run", tmp_path / "runs" / "digits")
    return Path("runs") / "digits"


def drawn(run: Path, seed: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(z, G(z)): images the generator drew from known z."""
    netG = load_generator(run)
    z = seeded_z(seed, n, netG.config.nz, netG.config.prior)
    with torch.no_grad():
        return z, netG(z)


def save_pngs(images: torch.Tensor, folder: Path, stem: str = "img") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{stem}{i}.png")
        image_from_tensor(image).save(paths[-1])
    return paths


# ---------------------------------------------------------------------------- the inversion


def test_an_image_the_generator_drew_is_found_again_on_the_shell(digits_run):
    _, images = drawn(digits_run, seed=11, n=2)
    inversion = Inverter(digits_run, device="cpu", settings=InvertSettings(steps=100, encoder=False)).invert(images)
    # The best of 512 draws is far off; refinement lands on (nearly) the same picture.
    assert (inversion.error < inversion.start_error / 3).all(), (inversion.error, inversion.start_error)
    assert float(inversion.error.max()) < 0.025, inversion.error
    assert torch.allclose(pixel_error(inversion.images, images), inversion.error)
    # z stays on the normal prior's shell, start and result.
    shell = typical_norm(100, "normal")
    assert torch.allclose(inversion.z.norm(dim=1), torch.full((2,), shell), atol=1e-4)
    assert torch.allclose(inversion.start_z.norm(dim=1), torch.full((2,), shell), atol=1e-4)
    assert inversion.loss_used == "both" and all(s.startswith("sample ") for s in inversion.start_from)


def test_pixels_alone_and_without_a_discriminator(digits_run):
    _, images = drawn(digits_run, seed=12, n=2)
    (digits_run / "discriminator.safetensors").unlink()
    inverter = Inverter(digits_run, device="cpu", settings=InvertSettings(**QUICK))  # asks for "both"
    inversion = inverter.invert(images)
    assert inversion.loss_used == "pixels" and "no discriminator.safetensors" in inversion.notes[0]
    assert (inversion.error < inversion.start_error).all()


def uniform_run(root: Path) -> Path:
    """A run of a freshly initialised uniform-prior model (no training needed to invert it)."""
    config = DCGANConfig(size=32, channels=1, nz=24, ngf=8, ndf=8, prior="uniform")
    create_run(root, config, TrainConfig(dataset="digits", device="cpu"), {"name": "digits"})
    netG, netD = build_models(config, seed=3)
    save_generator(root, netG.state_dict(), config, {})
    save_discriminator(root, netD.state_dict(), config, {})
    return root


def test_a_uniform_prior_keeps_z_in_the_box(tmp_path):
    run = uniform_run(tmp_path / "uniform")
    netG = load_generator(run)
    with torch.no_grad():  # drawn from outside the box: matching them pulls z out of it
        images = netG(seeded_z(5, 2, 24, "uniform") * 3)
    settings = InvertSettings(steps=40, lr=0.2, loss="pixels", encoder=False)
    inversion = Inverter(run, device="cpu", settings=settings).invert(images)
    assert float(inversion.z.abs().max()) == 1.0  # pressed against the box, never beyond it
    assert float(inversion.start_z.abs().max()) <= 1.0
    assert (inversion.error < inversion.start_error).all()


def test_no_images_is_a_clear_error_not_a_crash(digits_run):
    """The library refuses an empty batch in words (a benchmark once handed it one and got torch.cat's error)."""
    inverter = Inverter(digits_run, device="cpu", settings=InvertSettings(**QUICK))
    with pytest.raises(DcganError, match="no images to invert"):
        inverter.invert(torch.zeros(0, 1, 32, 32))


def test_a_batch_inverts_as_its_images_one_by_one_and_the_seed_repeats_it(digits_run):
    _, images = drawn(digits_run, seed=13, n=2)
    together = Inverter(digits_run, device="cpu", settings=InvertSettings(**QUICK, batch_size=2))
    z = together.invert(images).z
    alone = Inverter(digits_run, device="cpu", settings=InvertSettings(**QUICK, batch_size=1)).invert(images)
    assert torch.allclose(z, alone.z, atol=1e-3), (z - alone.z).abs().max()
    assert torch.equal(together.invert(images).z, z)  # seeded: the same again
    other = Inverter(digits_run, device="cpu", settings=InvertSettings(**{**QUICK, "steps": 0}, seed=1))
    assert not torch.equal(other.invert(images).start_z, alone.start_z)


def test_the_start_encoder_is_trained_once_per_generator_and_kept(digits_run):
    _, images = drawn(digits_run, seed=14, n=2)
    settings = InvertSettings(steps=0, candidates=8, encoder=True, encoder_steps=5)
    Inverter(digits_run, device="cpu", settings=settings).invert(images)
    cached = digits_run / "invert-encoder.safetensors"
    first = cached.read_bytes()
    Inverter(digits_run, device="cpu", settings=settings).invert(images)  # read, not trained again
    assert cached.read_bytes() == first
    netG = load_generator(digits_run)
    state = {k: v + 0.001 if v.is_floating_point() else v for k, v in netG.state_dict().items()}
    save_generator(digits_run, state, netG.config, {})  # a retrained generator
    Inverter(digits_run, device="cpu", settings=settings).invert(images)
    assert cached.read_bytes() != first


# ---------------------------------------------------------------------------- dcgan invert


def test_invert_writes_the_figure_the_z_in_order_and_the_record(digits_run, cli, tmp_path):
    z, images = drawn(digits_run, seed=21, n=3)
    paths = save_pngs(images, tmp_path / "mine")
    order = [paths[2], paths[0], paths[1]]
    args = ["invert", *order, "-r", digits_run, "--steps", 50, "--candidates", 128, "--loss", "pixels"]
    result = cli([*args, "-o", tmp_path / "out" / "fig.png", "--json"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert [row["path"] for row in record["images"]] == [str(p) for p in order]
    assert (tmp_path / "out" / "fig.png").is_file() and (tmp_path / "out" / "fig.json").is_file()
    found, meta = read_sheet(tmp_path / "out" / "fig.z.safetensors")  # a sheet like `sample --save-z` writes
    assert found.shape == (3, 100) and json.loads(meta["inverted_from"]) == [str(p) for p in order]
    # Row i is image i's z: its picture matches image i better than any other image.
    with torch.no_grad():
        regenerated = load_generator(digits_run)(found)
    wanted = images[[2, 0, 1]]
    distances = (regenerated[:, None] - wanted[None]).abs().mean(dim=(2, 3, 4))
    assert torch.equal(distances.argmin(dim=1), torch.arange(3)), distances
    assert [row["error"] for row in record["images"]] == pytest.approx(
        pixel_error(regenerated, wanted).tolist(), abs=2e-3
    )  # the PNG's rounding aside
    assert all(row["error"] < row["start_error"] for row in record["images"])

    # Nothing is overwritten without --force; the sheet names a sample like any other.
    before = (tmp_path / "out" / "fig.z.safetensors").read_bytes()
    assert "already exists" in error_line(cli([*args, "-o", tmp_path / "out" / "fig.png"]))
    assert (tmp_path / "out" / "fig.z.safetensors").read_bytes() == before
    added = cli(["concepts", "add", "first", "--samples", "0", "--sheet", tmp_path / "out" / "fig.z.safetensors"])
    assert added.exit_code == 0, added.output
    assert torch.equal(read_bank(digits_run / "concepts.json")["first"].z, found[:1])


def test_invert_writes_numbered_figures_into_the_run(digits_run, cli, tmp_path):
    _, images = drawn(digits_run, seed=22, n=1)
    (path,) = save_pngs(images, tmp_path / "mine")
    for _ in range(2):
        result = cli(["invert", path, "--steps", 2, "--candidates", 8, "--no-encoder"])  # the newest run
        assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (digits_run / "figures").iterdir())
    assert names == [f"invert-00{n}{s}" for n in (1, 2) for s in (".json", ".png", ".z.safetensors")]


def write_bad_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "notes.txt").write_text("not an image")
    (folder / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature, then nothing
    Image.new("L", (3, 3), 200).save(folder / "tiny.png")
    (folder / "sub").mkdir(exist_ok=True)
    return {
        "notes.txt": folder / "notes.txt",
        "fake.png": folder / "fake.png",
        "tiny.png": folder / "tiny.png",
        "missing.png": folder / "missing.png",
        "sub": folder / "sub",
    }


@pytest.mark.parametrize(
    "name, needle",
    [
        ("notes.txt", "is not an image dcgan can read"),
        ("fake.png", "is not an image dcgan can"),  # a PNG signature, then nothing
        ("tiny.png", "is 3x3 pixels, far smaller than the 32x32 images"),
        ("missing.png", "does not exist"),
        ("sub", "is a folder"),
    ],
)
def test_bad_images_are_one_clear_line_and_nothing_is_written(digits_run, cli, tmp_path, name, needle):
    bad = write_bad_files(tmp_path / "bad")
    _, images = drawn(digits_run, seed=23, n=1)
    (good,) = save_pngs(images, tmp_path / "good")
    line = error_line(cli(["invert", good, bad[name], "--steps", 2, "--no-encoder"]))
    assert str(bad[name]) in line and needle in line
    assert not (digits_run / "figures").exists()


def test_a_damaged_generator_is_one_clear_line(digits_run, cli, tmp_path):
    _, images = drawn(digits_run, seed=26, n=1)
    (good,) = save_pngs(images, tmp_path / "good")
    weights = digits_run / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # cut short
    assert "generator.safetensors" in error_line(cli(["invert", good, "--steps", 1]))
    assert not (digits_run / "figures").exists() and not (digits_run / "invert-encoder.safetensors").exists()


def test_an_empty_list_is_one_clear_line(digits_run, cli):
    assert "no image given" in error_line(cli(["invert"]))
    assert "no image given" in error_line(cli(["invert", "-r", digits_run]))


# ---------------------------------------------------------------------------- image concepts


def test_image_concepts_feed_arithmetic_walks_and_sweeps(digits_run, cli, tmp_path):
    assert cli(["sample", "-n", "12"]).exit_code == 0
    assert cli(["concepts", "add", "seven", "--samples", "0,1,2"]).exit_code == 0
    assert cli(["concepts", "add", "one", "--samples", "3,4,5"]).exit_code == 0
    _, images = drawn(digits_run, seed=24, n=2)
    paths = save_pngs(images, tmp_path / "mine")
    result = cli(["concepts", "add", "my seven", "--image", *paths, "--steps", 60, "--loss", "pixels"])
    assert result.exit_code == 0, result.output
    assert "Added concept 'my seven': 2 image(s) inverted" in result.stdout

    concept = read_bank(digits_run / "concepts.json")["my seven"]
    sheet, _ = read_sheet(digits_run / "figures" / "invert-001.z.safetensors")
    assert torch.equal(concept.z, sheet)  # the exemplars are the images' z, in order
    assert concept.source["kind"] == "images" and concept.source["images"] == [str(p) for p in paths]
    assert concept.source["figure"] == "figures/invert-001.png"
    with torch.no_grad():
        pictures = load_generator(digits_run)(concept.z)
    assert (pixel_error(pictures, images) < 0.06).all()
    assert "images img0.png, img1.png (error" in cli(["concepts", "list"]).stdout

    arithmetic = cli(["arithmetic", "my seven - seven + one", "--json"])
    assert arithmetic.exit_code == 0, arithmetic.output
    record = json.loads(arithmetic.stdout)
    assert record["concepts"]["my seven"]["exemplars"] == 2
    assert cli(["walk", "--through", "my seven,one", "--steps", 2, "-o", tmp_path / "w.gif"]).exit_code == 0
    assert cli(["arithmetic", "my seven - seven", "--sweep", "-1:1:3", "--rows", 2]).exit_code == 0

    # An existing name is refused before any inverting; --force replaces it.
    assert "already has 'my seven'" in error_line(cli(["concepts", "add", "my seven", "--image", paths[0]]))
    assert not (digits_run / "figures" / "invert-002.png").exists()


def test_the_bank_is_untouched_unless_every_image_inverts(digits_run, cli, tmp_path):
    assert cli(["sample", "-n", "4"]).exit_code == 0
    assert cli(["concepts", "add", "seven", "--samples", "0,1"]).exit_code == 0
    bank = (digits_run / "concepts.json").read_bytes()
    bad = write_bad_files(tmp_path / "bad")
    _, images = drawn(digits_run, seed=25, n=1)
    (good,) = save_pngs(images, tmp_path / "good")
    for name in ("notes.txt", "tiny.png", "missing.png"):
        error_line(cli(["concepts", "add", "mine", "--image", good, bad[name], "--steps", 2]))
        assert (digits_run / "concepts.json").read_bytes() == bank
    assert "--samples 3,17,42" in error_line(cli(["concepts", "add", "mine"]))
    assert "one of the two" in error_line(cli(["concepts", "add", "mine", "--samples", "1", "--image", good]))
    assert "quote a concept name" in error_line(cli(["concepts", "add", "thick", "seven", "--samples", "1"]))
    assert (digits_run / "concepts.json").read_bytes() == bank
    assert not (digits_run / "figures").exists()


# ---------------------------------------------------------------------------- faces (CelebA format)


def face(width: int, height: int, seed: int) -> Image.Image:
    """An RGB stand-in for a face photo: skin-toned ground, darker eyes, a mouth bar."""
    rng = np.random.default_rng(seed)
    pixels = np.empty((height, width, 3), np.uint8)
    pixels[:] = rng.integers(120, 230, 3)
    pixels[height // 3 : height // 3 + 4, width // 4 : width // 4 + 5] = 30
    pixels[height // 3 : height // 3 + 4, -width // 4 - 5 : -width // 4] = 30
    pixels[2 * height // 3 : 2 * height // 3 + 3, width // 3 : -width // 3] = rng.integers(0, 255, 3)
    return Image.fromarray(pixels, "RGB")


def write_celeba_folder(root: Path, n: int = 16) -> Path:
    """img_align_celeba/000001.jpg ... and list_attr_celeba.txt (count, names, -1/1 rows), as CelebA ships."""
    names = ["Eyeglasses", "Male", "Smiling", "Young"]
    (root / "img_align_celeba").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = [str(n), " ".join(names)]
    for i in range(n):
        face(44, 54, i).save(root / "img_align_celeba" / f"{i + 1:06d}.jpg", quality=90)
        lines.append(f"{i + 1:06d}.jpg " + " ".join(f"{v:2d}" for v in rng.choice([-1, 1], len(names))))
    (root / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
    return root


def test_a_face_photo_becomes_a_concept_for_the_papers_arithmetic(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_celeba_folder(tmp_path / "celeba")
    args = [
        "train",
        "celeba",
        "--data",
        data,
        "--size",
        32,
        "--epochs",
        1,
        "--ngf",
        8,
        "--ndf",
        8,
        "--nz",
        16,
        "--batch-size",
        4,
    ]
    assert cli([*args, "--out", "runs/faces"]).exit_code == 0
    assert cli(["sample", "-n", "8"]).exit_code == 0
    assert cli(["concepts", "add", "neutral woman", "--samples", "0,1,2"]).exit_code == 0
    assert cli(["concepts", "add", "smiling woman", "--samples", "3,4,5"]).exit_code == 0
    face(120, 160, 99).save(tmp_path / "face.jpg", quality=92)  # a portrait photo: cropped to its middle square

    result = cli(["concepts", "add", "me", "--image", tmp_path / "face.jpg", "--steps", 20])
    assert result.exit_code == 0, result.output
    me = read_bank(Path("runs/faces/concepts.json"))["me"]
    sheet, _ = read_sheet(Path("runs/faces/figures/invert-001.z.safetensors"))
    assert torch.equal(me.z, sheet) and me.z.shape == (1, 16)
    assert torch.allclose(me.z.norm(), torch.tensor(typical_norm(16, "normal")), atol=1e-4)
    arithmetic = cli(["arithmetic", "me - neutral woman + smiling woman", "--json"])
    assert arithmetic.exit_code == 0, arithmetic.output
    assert json.loads(arithmetic.stdout)["terms"] == {"me": 1.0, "neutral woman": -1.0, "smiling woman": 1.0}

    # A greyscale photo for this colour model is converted, and the user is told.
    face(64, 64, 5).convert("L").save(tmp_path / "grey.png")
    grey = cli(["concepts", "add", "me in grey", "--image", tmp_path / "grey.png", "--steps", 2])
    assert grey.exit_code == 0, grey.output
    assert "grey.png: a greyscale picture for a colour model" in grey.stderr
    # A thumbnail far smaller than the model is refused; the bank keeps what it had.
    bank = Path("runs/faces/concepts.json").read_bytes()
    face(12, 12, 6).save(tmp_path / "thumb.png")
    line = error_line(cli(["concepts", "add", "thumb", "--image", tmp_path / "thumb.png"]))
    assert "is 12x12 pixels, far smaller than the 32x32 images this model draws" in line
    assert Path("runs/faces/concepts.json").read_bytes() == bank
