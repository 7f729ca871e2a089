"""CPU convolutions for the layers oneDNN runs slowly, computed as one matrix multiply each.

The step's weights and state-dict names stay those of nn.Conv2d / nn.ConvTranspose2d; only
how the sums are computed changes (to float rounding), so checkpoints are unaffected.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dcgan_cli.core.model import Discriminator, Generator


def conv2d_as_matmul(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=stride, padding=padding)`` as one matrix multiply over the batch.

    The k x k windows of the padded NHWC input become rows (N*Ho*Wo, k*k*C), multiplied by the
    weights laid out (k*k*C, O): (N, C, H, W) -> (N, O, Ho, Wo), in the input's memory format.
    """
    n, c = x.shape[:2]
    o, k = weight.shape[0], weight.shape[-1]
    nhwc = F.pad(x, (padding,) * 4).permute(0, 2, 3, 1)
    windows = nhwc.unfold(1, k, stride).unfold(2, k, stride)  # (N, Ho, Wo, C, k, k), a view
    ho, wo = windows.shape[1:3]
    rows = windows.permute(0, 1, 2, 4, 5, 3).reshape(n * ho * wo, k * k * c)
    out = (rows @ weight.permute(0, 2, 3, 1).reshape(o, k * k * c).t()).reshape(n, ho, wo, o).permute(0, 3, 1, 2)
    return out if x.is_contiguous(memory_format=torch.channels_last) else out.contiguous()


def conv_transpose2d_as_matmul(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, stride=stride, padding=padding)`` as one matrix multiply, then col2im.

    Each input pixel's C_in values times the weights (C_in, C_out*k*k) give its k x k patch of
    the output; ``F.fold`` adds the overlapping patches up: (N, C_in, H, W) -> (N, C_out, Ho, Wo).
    """
    n, c_in, h, w = x.shape
    c_out, k = weight.shape[1], weight.shape[-1]
    patches = x.permute(0, 2, 3, 1).reshape(n * h * w, c_in) @ weight.reshape(c_in, c_out * k * k)
    patches = patches.reshape(n, h * w, c_out * k * k).transpose(1, 2)
    size = ((h - 1) * stride - 2 * padding + k, (w - 1) * stride - 2 * padding + k)
    out = F.fold(patches, size, k, padding=padding, stride=stride)
    return (
        out.contiguous(memory_format=torch.channels_last) if x.is_contiguous(memory_format=torch.channels_last) else out
    )


class MatmulConv2d(torch.nn.Conv2d):
    """nn.Conv2d (4x4 kernel, stride 2, padding 1, no bias) computed by conv2d_as_matmul."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_as_matmul(x, self.weight, self.stride[0], self.padding[0])


class MatmulConvTranspose2d(torch.nn.ConvTranspose2d):
    """nn.ConvTranspose2d (4x4 kernel, stride 2, padding 1, no bias) computed by conv_transpose2d_as_matmul."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return conv_transpose2d_as_matmul(x, self.weight, self.stride[0], self.padding[0])


MIN_CHANNELS = 512  # 64x64 and larger paper models (ngf, ndf 64)


def use_matmul_convolutions(netG: Generator, netD: Discriminator) -> None:
    """On the CPU, compute the two convolutions on 4x4 maps as one matrix multiply each.

    oneDNN, which runs PyTorch's CPU convolutions, is slow on the widest layers where the
    maps are smallest: D's last block (8x8 -> 4x4) and G's first upsampling (4x4 -> 8x8)
    take about twice the time per multiply-add of the other layers, most of it in the weight
    gradient. Gathered into one large matrix multiply, the same sums run at full speed
    (64x64, batch 128, one core: D's block forward + weight gradient 453 -> 189 ms, G's
    forward + both gradients 688 -> 394 ms). The layers keep their class's weights and
    state-dict names; only how the sums are computed changes (to float rounding).

    Narrower layers (32x32 models: 256 channels at 4x4) measured no gain (1.25x plain,
    1.21x swapped, against the example loop), so only layers of MIN_CHANNELS or more change.
    """
    for conv, cls in ((netD.blocks[-1].conv, MatmulConv2d), (netG.blocks[1].conv, MatmulConvTranspose2d)):
        paper_shape = conv.kernel_size == (4, 4) and conv.stride == (2, 2) and conv.padding == (1, 1)
        wide = max(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
        if wide and paper_shape and conv.bias is None and conv.groups == 1 and conv.dilation == (1, 1):
            conv.__class__ = cls


# The CPU step's variants (cpu_tuning.py picks one per machine): what each changes in G and D.
def use_plain_convolutions(netG: Generator, netD: Discriminator) -> None:
    """Undo use_matmul_convolutions: every layer computed by PyTorch's own convolutions again."""
    for module in (*netG.modules(), *netD.modules()):
        if isinstance(module, (MatmulConv2d, MatmulConvTranspose2d)):
            module.__class__ = module.__class__.__bases__[0]


VARIANTS = {
    "onednn": use_plain_convolutions,  # PyTorch's own convolutions (oneDNN) everywhere
    "matmul": lambda netG, netD: (use_plain_convolutions(netG, netD), use_matmul_convolutions(netG, netD)),
}


def apply_variant(netG: Generator, netD: Discriminator, variant: str) -> None:
    """Make G and D (placed on the CPU) compute their convolutions the way ``variant`` does."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CPU step variant {variant!r}; one of {', '.join(VARIANTS)}")
    VARIANTS[variant](netG, netD)
