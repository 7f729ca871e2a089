import numpy as np
import torch
from PIL import Image

from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.sampling import read_sheet
from dcgan_cli.engines.torch_engine import TorchEngine


def test_sample_i_of_a_seed_does_not_depend_on_how_many_are_drawn():
    many = seeded_z(3, 2500, 10, "normal")
    assert torch.equal(seeded_z(3, 5, 10, "normal"), many[:5])
    assert torch.equal(seeded_z(3, 100, 10, "normal", start=1000), many[1000:1100])  # across a chunk edge
    assert not torch.equal(seeded_z(4, 5, 10, "normal"), many[:5])
    uniform = seeded_z(3, 1000, 10, "uniform")
    assert uniform.min() >= -1 and uniform.max() <= 1


def test_sample_grid_with_saved_z(cli, trained_run):
    result = cli(["sample", "-n", "16", "--seed", "5", "--out", "grid.png", "--save-z"])
    assert result.exit_code == 0, result.output
    assert Image.open("grid.png").size == (4 * 34 + 2, 4 * 34 + 2)
    z, meta = read_sheet("grid.z.safetensors")
    assert torch.equal(z, seeded_z(5, 16, 100, "normal"))
    assert meta["seed"] == "5" and meta["run_id"] == "digits-small" and meta["image"] == "grid.png"


def test_default_output_is_a_numbered_sheet_in_the_run(cli, trained_run):
    for expected in ("sheet-001", "sheet-002"):
        result = cli(["sample", "-n", "4"])
        assert result.exit_code == 0, result.output
        assert (trained_run / "sheets" / f"{expected}.png").is_file()
        assert (trained_run / "sheets" / f"{expected}.z.safetensors").is_file()


def test_out_dir_and_npz_hold_the_same_images(cli, trained_run):
    assert cli(["sample", "-n", "6", "--seed", "1", "--out-dir", "pngs", "--save-z"]).exit_code == 0
    assert sorted(p.name for p in (trained_run.parent.parent / "pngs").iterdir() if not p.name.startswith(".")) == [
        f"{i:06d}.png" for i in range(6)
    ] + ["z.safetensors"]
    assert cli(["sample", "-n", "6", "--seed", "1", "--out", "all.npz", "--save-z", "--batch-size", "4"]).exit_code == 0
    data = np.load("all.npz")
    assert data["images"].shape == (6, 32, 32, 1) and data["images"].dtype == np.uint8
    assert np.array_equal(data["z"], seeded_z(1, 6, 100, "normal").numpy())
    assert np.array_equal(np.asarray(Image.open("pngs/000003.png")), data["images"][3, :, :, 0])


def test_engine_output_matches_the_generator_and_ignores_batching(trained_run):
    with TorchEngine(trained_run, device="cpu") as engine:
        z = seeded_z(0, 10, 100, "normal")
        whole = engine.generate(z)
        parts = torch.cat([engine.generate(z[:3]), engine.generate(z[3:])])
    assert whole.shape == (10, 1, 32, 32)
    assert torch.allclose(whole, parts, atol=1e-5)  # eval-mode BatchNorm: no batch dependence
