"""One training step (paper, section 4) and what it needs: optimizers, device placement, seeded noise.

The algorithm is the paper's: each step updates D on a real batch and a fake batch (kept
as separate batches, so BatchNorm normalises each on its own), then updates G with the
non-saturating loss -log D(G(z)) against the freshly updated D. Adam, lr 2e-4, beta1 0.5.

What makes the step faster than the common reference loop, without changing the maths:
- BCE with logits instead of Sigmoid + BCELoss (one fused, stable op);
- one backward for both halves of the D loss;
- D's parameters do not require gradients during the G update, so autograd skips D's
  weight gradients there (the reference computes them and throws them away);
- channels-last tensors (oneDNN and cuDNN convolutions prefer NHWC);
- in-place activations and fused Adam (one pass over each parameter).
Options that change how the maths runs, not what it is: ``precision`` (bf16 or fp16
autocast, with a gradient scaler for fp16), ``channels_last`` and ``compile``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib

import torch
import torch.nn.functional as F

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.model import (
    Discriminator,
    Generator,
)
from dcgan_cli.core.prior import derive_seed, sample_prior
from dcgan_cli.training import distributed
from dcgan_cli.training.config import TrainConfig
from dcgan_cli.training.cpu_convolutions import apply_variant

# Autocast dtype of each training --precision; fp32 runs without autocast.
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@torch.no_grad()
def standing_generator(netG: Generator, seed: int, batches: int = 2, batch_size: int = 128) -> Generator:
    """A copy of G in eval mode whose BatchNorm statistics are measured for its current weights.

    During training the running averages trail weights that keep changing; recomputing them
    over fresh batches of z ("standing statistics") makes eval-mode samples match what the
    generator draws in training mode, which is what every exported engine runs. Two batches
    are enough, at a quarter of the cost of eight that the trainer paid at each save: on the
    trained digits fixture, images from 2 and from 8 batches differ by 0.003 on average (of
    [-1, 1]), about as much as 8 batches of two seeds do (0.0023).
    """
    g = distributed.to_plain_batchnorm(copy.deepcopy(netG))  # one process measures these: no syncing
    bns = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    g.train()
    device = next(g.parameters()).device
    gen = torch.Generator().manual_seed(derive_seed(seed, "standing-stats"))
    for _ in range(batches):
        g(sample_prior(batch_size, g.config.nz, g.config.prior, gen).to(device))
    for m in bns:
        m.momentum = 0.1
    return g.eval()


def gan_step(
    netG: Generator,
    netD: Discriminator,
    optG: torch.optim.Optimizer,
    optD: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
    *,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, ...]:
    """One D update then one G update; returns (loss_d, loss_g, D(x), D(G(z)) before and after D's update).

    ``netG`` and ``netD`` may be compiled and/or wrapped in DistributedDataParallel. The
    forwards run under autocast to ``autocast_dtype`` when given (losses in fp32), and
    ``scaler`` scales both losses for fp16.
    """
    amp = (
        torch.autocast(real.device.type, dtype=autocast_dtype)
        if autocast_dtype is not None
        else contextlib.nullcontext()
    )
    with amp:
        fake = netG(z)

    # (1) D: maximise log D(x) + log(1 - D(G(z))), real and fake as separate batches.
    optD.zero_grad(set_to_none=True)
    with amp:
        logit_real = netD(real)
        logit_fake = netD(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    _backward_and_step(loss_d, optD, scaler)  # one backward for both halves

    # (2) G: maximise log D(G(z)) against the updated D. D is frozen: only gradients into G.
    # DDP's wrapper is bypassed here: no gradient of D's is made, so none needs averaging.
    frozen_d = distributed.unwrap(netD)
    frozen_d.requires_grad_(False)
    optG.zero_grad(set_to_none=True)
    with amp:
        logit_gen = frozen_d(fake)
        loss_g = F.binary_cross_entropy_with_logits(logit_gen, torch.ones_like(logit_gen))
    _backward_and_step(loss_g, optG, scaler)
    if scaler is not None:
        scaler.update()  # once per iteration, after both optimizers stepped
    frozen_d.requires_grad_(True)
    with torch.no_grad():
        return (
            loss_d.detach().float(),
            loss_g.detach().float(),
            torch.sigmoid(logit_real.float()).mean(),
            torch.sigmoid(logit_fake.float()).mean(),
            torch.sigmoid(logit_gen.float()).mean(),
        )


def _backward_and_step(
    loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None
) -> None:
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # unscales, and skips the step when a gradient overflowed


def place_models(
    netG: Generator, netD: Discriminator, device: torch.device, channels_last: bool = True, cpu_step: str = "onednn"
) -> None:
    """Move G and D to ``device`` in the memory format, on the CPU with the convolution variant
    ``cpu_step`` (cpu_convolutions.VARIANTS; cpu_tuning.choose_cpu_step finds the fastest)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    netG.to(device, memory_format=memory_format)
    netD.to(device, memory_format=memory_format)
    if device.type == "cpu":
        apply_variant(netG, netD, cpu_step)


def make_optimizers(
    netG: Generator, netD: Discriminator, cfg: TrainConfig
) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for each network (paper: lr 2e-4, beta1 0.5), fused: one pass over each parameter."""
    adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    return torch.optim.Adam(netG.parameters(), **adam), torch.optim.Adam(netD.parameters(), **adam)


def session_settings(device: torch.device, cfg: TrainConfig, report: bool = True) -> tuple[str, bool]:
    """(precision, compile) this session trains with on ``device``: the config's, except what the
    device cannot run (MPS: half precision, torch.compile), which falls back with a one-line note."""
    from dcgan_cli.core.console import note
    from dcgan_cli.core.devices import compile_for, training_precision_for

    precision, why_precision = training_precision_for(device.type, cfg.precision)
    compile, why_compile = compile_for(device.type, cfg.compile)
    for message in (why_precision, why_compile):
        if message and report:
            note(message)
    return precision, compile


def check_training_precision(precision: str, device: torch.device) -> None:
    """Refuse a training precision the device cannot run, in one line."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DcganError(f"{torch.cuda.get_device_name(device)} has no bf16 support; use --precision fp16 (or fp32)")


def parameter_digest(*modules: torch.nn.Module) -> bytes:
    """sha256 over the parameters of ``modules`` (float32 bytes, in named_parameters order).

    BatchNorm running statistics are buffers, not parameters: each replica keeps its own.
    Replicas of a data-parallel run hold identical parameters, so their digests agree.
    """
    h = hashlib.sha256()
    for module in modules:
        for _, p in module.named_parameters():
            h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.digest()


def step_noise(
    seed: int, step: int, batch_size: int, nz: int, prior: str, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """z of one step for rank ``rank``: its slice of the global batch's z, seeded by (seed, step)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "noise", step))
    z = sample_prior(batch_size, nz, prior, gen)
    per_rank = batch_size // world_size
    return z[rank * per_rank : (rank + 1) * per_rank]
