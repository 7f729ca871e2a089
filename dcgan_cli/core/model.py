"""The DCGAN generator and discriminator, as in Radford, Metz & Chintala (2015), section 3.

Architecture guidelines from the paper, followed here:
- no pooling: strided convolutions (discriminator) and fractionally-strided
  convolutions (generator) learn their own down- and up-sampling;
- no fully connected hidden layers: z is projected to a 4x4 map by the first
  transposed convolution, and the discriminator's last 4x4 map goes straight to one logit;
- BatchNorm in both networks, except the generator's output and the discriminator's input;
- ReLU in the generator with Tanh at the output; LeakyReLU(0.2) in the discriminator.

Shape comments are for the 64x64 RGB default (nz=100, ngf=ndf=64). At 32x32 there is one
stride-2 layer fewer on each side, at 128x128 one more.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from dcgan_cli.core.errors import DcganError

SIZES = (32, 64, 128)
CHANNELS = (1, 3)
PRIORS = ("normal", "uniform")
# Generous limits that still refuse absurd configs (nz of 10**9) before allocating anything.
MAX_NZ = 4096
MAX_WIDEST_LAYER = 8192  # channels of the widest layer (ngf * 2**(n_layers - 1))


@dataclass(frozen=True)
class DCGANConfig:
    """Model arguments. Stored with every checkpoint, so a generator loads anywhere."""

    size: int = 64  # image side in pixels: 32, 64 or 128
    channels: int = 3  # 1 (grey) or 3 (RGB)
    nz: int = 100  # length of the latent vector z
    ngf: int = 64  # generator width of its last hidden layer; earlier layers double it
    ndf: int = 64  # discriminator width of its first layer; later layers double it
    prior: str = "normal"  # distribution of z: "normal" N(0, I) or "uniform" U(-1, 1)

    @property
    def n_layers(self) -> int:
        """Stride-2 layers on each side: 3 at 32x32, 4 at 64x64, 5 at 128x128."""
        return int(math.log2(self.size)) - 2

    def validate(self, source: str = "model config") -> DCGANConfig:
        def bad(what: str) -> DcganError:
            return DcganError(f"{source}: {what}")

        for f in fields(self):
            value = getattr(self, f.name)
            expected = str if f.name == "prior" else int
            if type(value) is not expected:  # bool is an int subclass: refuse it too
                raise bad(f"{f.name} must be {expected.__name__}, got {value!r}")
        if self.size not in SIZES:
            raise bad(f"size must be one of {', '.join(map(str, SIZES))}, got {self.size}")
        if self.channels not in CHANNELS:
            raise bad(f"channels must be 1 or 3, got {self.channels}")
        if not 1 <= self.nz <= MAX_NZ:
            raise bad(f"nz must be between 1 and {MAX_NZ}, got {self.nz}")
        widest = MAX_WIDEST_LAYER // 2 ** (self.n_layers - 1)
        for name in ("ngf", "ndf"):
            value = getattr(self, name)
            if not 1 <= value <= widest:
                raise bad(f"{name} must be between 1 and {widest} at size {self.size}, got {value}")
        if self.prior not in PRIORS:
            raise bad(f"prior must be 'normal' or 'uniform', got {self.prior!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object, source: str = "model config") -> DCGANConfig:
        """Build and validate a config from JSON data, with one clear error for anything wrong."""
        return dataclass_from_json(cls, data, source, "model arguments").validate(source)


def dataclass_from_json(cls, data: object, source: str, what: str):
    """``cls(**data)`` for a JSON object, refusing anything that is not one or has unknown keys."""
    if not isinstance(data, dict):
        raise DcganError(f"{source}: expected a JSON object with the {what}, got {type(data).__name__}")
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        # Plain names as they are; anything else quoted, so a key holding a newline stays on one line.
        shown = ", ".join(k if k.isidentifier() else repr(k) for k in unknown[:8]) + (
            " ..." if len(unknown) > 8 else ""
        )
        raise DcganError(f"{source}: unknown {what} {shown}; is it a dcgan-cli file?")
    return cls(**data)


def _up(in_ch: int, out_ch: int, stride: int = 2, padding: int = 1) -> nn.Sequential:
    """Fractionally-strided convolution, BatchNorm, ReLU."""
    return nn.Sequential(
        OrderedDict(
            conv=nn.ConvTranspose2d(in_ch, out_ch, 4, stride, padding, bias=False),
            bn=nn.BatchNorm2d(out_ch),
            relu=nn.ReLU(inplace=True),
        )
    )


def _down(in_ch: int, out_ch: int, batchnorm: bool = True) -> nn.Sequential:
    """Strided convolution, BatchNorm (not on the input layer), LeakyReLU(0.2)."""
    layers = OrderedDict(conv=nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=False))
    if batchnorm:
        layers["bn"] = nn.BatchNorm2d(out_ch)
    layers["lrelu"] = nn.LeakyReLU(0.2, inplace=True)
    return nn.Sequential(layers)


class Generator(nn.Module):
    """z (N, nz) -> image (N, channels, size, size) in [-1, 1]."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config.validate()
        c = config
        # Widths from the projection down to the last hidden layer: [512, 256, 128, 64] at 64x64.
        widths = [c.ngf * 2**i for i in reversed(range(c.n_layers))]
        blocks = [_up(c.nz, widths[0], stride=1, padding=0)]  # (N, 100, 1, 1) -> (N, 512, 4, 4)
        for in_ch, out_ch in zip(widths, widths[1:]):
            # (N, 512, 4, 4) -> (N, 256, 8, 8) -> (N, 128, 16, 16) -> (N, 64, 32, 32)
            blocks.append(_up(in_ch, out_ch))
        self.blocks = nn.ModuleList(blocks)
        # Output layer, no BatchNorm: (N, 64, 32, 32) -> (N, 3, 64, 64)
        self.to_image = nn.Sequential(
            OrderedDict(conv=nn.ConvTranspose2d(widths[-1], c.channels, 4, 2, 1, bias=False), tanh=nn.Tanh())
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z.reshape(z.shape[0], self.config.nz, 1, 1)  # (N, 100) -> (N, 100, 1, 1)
        for block in self.blocks:
            x = block(x)
        return self.to_image(x)

    def features(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Every block's output (after ReLU), lowest resolution first, then the image."""
        x = z.reshape(z.shape[0], self.config.nz, 1, 1)
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        out.append(self.to_image(x))
        return out


class Discriminator(nn.Module):
    """image (N, channels, size, size) -> one real/fake logit per image (N,)."""

    def __init__(self, config: DCGANConfig):
        super().__init__()
        self.config = config.validate()
        c = config
        widths = [c.ndf * 2**i for i in range(c.n_layers)]  # [64, 128, 256, 512] at 64x64
        blocks = [_down(c.channels, widths[0], batchnorm=False)]  # (N, 3, 64, 64) -> (N, 64, 32, 32)
        for in_ch, out_ch in zip(widths, widths[1:]):
            # (N, 64, 32, 32) -> (N, 128, 16, 16) -> (N, 256, 8, 8) -> (N, 512, 4, 4)
            blocks.append(_down(in_ch, out_ch))
        self.blocks = nn.ModuleList(blocks)
        # No fully connected layer: a 4x4 convolution over the last map gives the logit.
        self.to_logit = nn.Conv2d(widths[-1], 1, 4, 1, 0, bias=False)  # (N, 512, 4, 4) -> (N, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.to_logit(x).reshape(-1)  # sigmoid is folded into the loss (BCE with logits)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every conv block's output (after LeakyReLU), highest resolution first."""
        out = []
        for block in self.blocks:
            x = block(x)
            out.append(x)
        return out


def init_weights(module: nn.Module, generator: torch.Generator | None = None) -> None:
    """The paper's initialisation: conv weights N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, 0.02, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(m.bias)


def build_models(config: DCGANConfig, seed: int) -> tuple[Generator, Discriminator]:
    """A freshly initialised generator and discriminator; the same seed gives the same weights."""
    g = torch.Generator().manual_seed(seed)
    netG, netD = Generator(config), Discriminator(config)
    init_weights(netG, g)
    init_weights(netD, g)
    return netG, netD


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
