"""The start encoder of `dcgan invert`: a guess of z from an image, in one forward pass.

Trained on the generator's own samples (z drawn from the prior, G(z) in, z out), once per
generator, and kept in the run (``invert-encoder.safetensors``, with the sha256 of the
generator it learned, so a retrained generator gets a new one). Its guess is only a start:
real images are not exactly what G draws, and refinement (invert.py) does the rest; it
beats the best of hundreds of random draws as a start (benchmarks/invert_digits.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from dcgan_cli.core.files import read_safetensors, sha256_file, write_safetensors
from dcgan_cli.core.model import DCGANConfig, Discriminator, init_weights
from dcgan_cli.core.prior import derive_seed, project_to_prior, sample_prior
from dcgan_cli.core.runs import RunPaths

ENCODER_FORMAT = "dcgan-cli/invert-encoder"
TRAIN_STEPS = 1500
BATCH_SIZE = 64


class StartEncoder(nn.Module):
    """image (N, C, S, S) -> z (N, nz): the discriminator's strided convolutions, nz outputs where D has one logit."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config
        self.blocks = Discriminator(config).blocks  # (N, C, 32, 32) -> ... -> (N, 4 ndf, 4, 4) at 32x32
        widest = config.ndf * 2 ** (config.n_layers - 1)
        self.to_z = nn.Conv2d(widest, config.nz, 4, 1, 0)  # (N, 4 ndf, 4, 4) -> (N, nz, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.to_z(x).flatten(1)


def train_start_encoder(
    netG, device, steps: int = TRAIN_STEPS, seed: int = 0, advance=None
) -> tuple[StartEncoder, dict]:
    """A StartEncoder fitted to ``netG``'s samples by the squared error of z; (encoder, record)."""
    c = netG.config
    g = torch.Generator().manual_seed(derive_seed(seed, "invert-encoder"))
    encoder = StartEncoder(c)
    init_weights(encoder, g)
    encoder.to(device).train()
    optimizer = torch.optim.Adam(encoder.parameters(), lr=1e-3, betas=(0.9, 0.999))
    for step in range(steps):
        for group in optimizer.param_groups:  # the last third at a tenth of the rate
            group["lr"] = 1e-3 if step < 2 * steps // 3 else 1e-4
        z = sample_prior(BATCH_SIZE, c.nz, c.prior, g).to(device)
        with torch.no_grad():
            images = netG(z)
        loss = (encoder(images) - z).square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if advance:
            advance(1)
    encoder.eval().requires_grad_(False)
    with torch.no_grad():  # held out: fresh draws the encoder never saw
        z = sample_prior(512, c.nz, c.prior, g).to(device)
        images = netG(z)
        guess = project_to_prior(encoder(images), c.prior)
        record = {
            "steps": steps,
            "held_out_z_mse": round(float((encoder(images) - z).square().mean()), 5),
            "held_out_image_error": round(float((netG(guess) - images).abs().mean() / 2), 5),  # on a 0..1 scale
        }
    return encoder, record


def _generator_sha(run_dir: Path) -> str:
    paths = RunPaths(Path(run_dir))
    return sha256_file(paths.generator) if paths.generator.is_file() else ""


def saved_encoder(run_dir: Path, netG, device) -> StartEncoder | None:
    """The start encoder kept in the run, if it was trained for this very generator."""
    from dcgan_cli.core.networks import check_state_dict

    path = RunPaths(Path(run_dir)).invert_encoder
    if not path.is_file():
        return None
    tensors, meta = read_safetensors(path, "start encoder")
    if meta.get("format") != ENCODER_FORMAT or meta.get("generator_sha256") != _generator_sha(run_dir):
        return None
    encoder = StartEncoder(netG.config)
    check_state_dict(encoder, tensors, str(path))
    encoder.load_state_dict(tensors)
    return encoder.to(device).eval().requires_grad_(False)


def start_encoder(run_dir: Path, netG, device, steps: int = TRAIN_STEPS, progress=None) -> StartEncoder:
    """The run's start encoder for this generator: read from the run, or trained and written there."""
    from dcgan_cli.core.console import note

    encoder = saved_encoder(run_dir, netG, device)
    if encoder is not None:
        return encoder
    path = RunPaths(Path(run_dir)).invert_encoder
    if path.is_file():
        note(f"{path.name} was trained for another generator: training it again")
    if progress is None:
        encoder, record = train_start_encoder(netG, device, steps)
    else:
        with progress("training the start encoder on the generator's samples (once per run)", steps) as advance:
            encoder, record = train_start_encoder(netG, device, steps, advance=advance)
    state = {k: v.detach().cpu().contiguous() for k, v in encoder.state_dict().items()}
    write_safetensors(
        path,
        state,
        {
            "format": ENCODER_FORMAT,
            "generator_sha256": _generator_sha(run_dir),
            "model": json.dumps(netG.config.to_dict()),
            "record": json.dumps(record),
        },
    )
    return encoder
