"""CPU convolutions for the layers oneDNN runs slowly, computed another way with the same sums.

Two rewrites, each a variant of the CPU step that cpu_tuning.py times per machine:
- ``matmul``: the widest layers on 4x4 maps as one matrix multiply each;
- ``blocks``: the layers at the model's ends, which are narrow (3 colour channels, 1 logit,
  a 1x1 z) and run far below the CPU's rate in oneDNN, on 2x2 pixel blocks (space-to-depth)
  and as matrix multiplies.
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


def space_to_depth_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Conv2d(k4, s2, p1) weight (O, C, 4, 4) -> (O, 4C, 2, 2), the same sums over 2x2 pixel blocks.

    Kernel tap (2a + dy, 2b + dx) of channel c reads pixel (dy, dx) of block (i + a, j + b),
    which ``F.pixel_unshuffle`` puts in channel 4c + 2dy + dx. (A ConvTranspose2d weight
    (Cin, Cout, 4, 4) gives its adjoint's, (Cin, 4 Cout, 2, 2).)
    """
    o, c = weight.shape[:2]
    return weight.reshape(o, c, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4).reshape(o, 4 * c, 2, 2)


def conv2d_on_blocks(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv2d(x, weight, stride=2, padding=1)`` with a 4x4 kernel as a 2x2, stride-1 convolution
    over 2x2 pixel blocks: (N, C, H, W) -> pad, space-to-depth (N, 4C, H/2 + 1, W/2 + 1) -> (N, O, H/2, W/2).

    With 3 (or 1) input channels oneDNN's strided kernel idles most of its vector lanes; 12 block
    channels fill them (64x64 D, one core: forward 34 -> 14 ms, with the weight gradient 57 -> 32 ms).
    """
    blocks = F.pixel_unshuffle(F.pad(x, (1, 1, 1, 1)), 2)
    return F.conv2d(blocks.contiguous(memory_format=_memory_format(x)), space_to_depth_kernel(weight))


def conv_transpose2d_on_blocks(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``F.conv_transpose2d(x, weight, stride=2, padding=1)`` with a 4x4 kernel, the adjoint of
    conv2d_on_blocks: a 2x2, stride-1 transposed convolution to 2x2 pixel blocks, depth-to-space,
    and the padding cropped: (N, Cin, H, W) -> (N, 4 Cout, H + 1, W + 1) -> (N, Cout, 2H, 2W)."""
    out = F.pixel_shuffle(F.conv_transpose2d(x, space_to_depth_kernel(weight)), 2)[:, :, 1:-1, 1:-1]
    return out.contiguous(memory_format=_memory_format(x))


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    # The stride of C tells a 1-channel channels-last tensor from an NCHW one (both count as either).
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and (x.stride(1) == 1 or x.shape[1] > 1)
    return torch.channels_last if channels_last else torch.contiguous_format


class BlockConv2d(torch.nn.Conv2d):
    """nn.Conv2d (4x4 kernel, stride 2, padding 1, no bias) computed by conv2d_on_blocks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d_on_blocks(x, self.weight)


class BlockConvTranspose2d(torch.nn.ConvTranspose2d):
    """nn.ConvTranspose2d (4x4 kernel, stride 2, padding 1, no bias) computed by conv_transpose2d_on_blocks."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        return conv_transpose2d_on_blocks(x, self.weight)


class MatmulProjection(torch.nn.ConvTranspose2d):
    """G's projection, nn.ConvTranspose2d(nz, C, 4, 1, 0) on the 1x1 z, as z (N, nz) @ W (nz, 16 C):
    (N, nz, 1, 1) -> (N, C, 4, 4), laid out channels-last (columns in (y, x, c) order)."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        n, (nz, c, k) = x.shape[0], self.weight.shape[:3]
        out = x.reshape(n, nz) @ self.weight.permute(0, 2, 3, 1).reshape(nz, k * k * c)
        return out.reshape(n, k, k, c).permute(0, 3, 1, 2)


class MatmulLogit(torch.nn.Conv2d):
    """D's last layer, nn.Conv2d(C, O, 4, 1, 0) over the whole 4x4 map, as one matrix multiply:
    (N, C, 4, 4) -> (N, O, 1, 1)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, o = x.shape[0], self.weight.shape[0]
        rows = x.permute(0, 2, 3, 1).reshape(n, -1)  # (y, x, c) order: a view of channels-last x
        return (rows @ self.weight.permute(0, 2, 3, 1).reshape(o, -1).t()).reshape(n, o, 1, 1)


def use_block_convolutions(netG: Generator, netD: Discriminator) -> None:
    """On the CPU, compute the layers at the model's ends without oneDNN's narrow-channel kernels.

    D's input layer (3 or 1 channels) and G's image layer run on 2x2 pixel blocks
    (conv2d_on_blocks, conv_transpose2d_on_blocks); G's projection from the 1x1 z and D's
    4x4-to-1x1 logit are matrix multiplies. 64x64 model, batch 128, one core, forward and
    the gradients the step takes (ms): D's input layer 57 -> 32 (D update) and 78 -> 36 (G
    update), G's image layer 108 -> 82, the projection 24 -> 10, the logit 8 -> 3.
    """
    first, image = netD.blocks[0].conv, netG.to_image.conv
    if _paper_shape(first, (4, 4), (2, 2), (1, 1)):
        first.__class__ = BlockConv2d
    if _paper_shape(image, (4, 4), (2, 2), (1, 1)):
        image.__class__ = BlockConvTranspose2d
    if _paper_shape(netG.blocks[0].conv, (4, 4), (1, 1), (0, 0)):
        netG.blocks[0].conv.__class__ = MatmulProjection
    if _paper_shape(netD.to_logit, (4, 4), (1, 1), (0, 0)):
        netD.to_logit.__class__ = MatmulLogit


def _paper_shape(conv: torch.nn.Module, kernel, stride, padding) -> bool:
    return (
        type(conv) in (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
        and conv.kernel_size == kernel
        and conv.stride == stride
        and conv.padding == padding
        and conv.bias is None
        and conv.groups == 1
        and conv.dilation == (1, 1)
        and getattr(conv, "output_padding", (0, 0)) == (0, 0)
    )


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
        wide = max(conv.in_channels, conv.out_channels) >= MIN_CHANNELS
        if wide and _paper_shape(conv, (4, 4), (2, 2), (1, 1)):
            conv.__class__ = cls


# The CPU step's variants (cpu_tuning.py picks one per machine): what each changes in G and D.
def use_plain_convolutions(netG: Generator, netD: Discriminator) -> None:
    """Undo every rewrite (matmul, blocks): each layer computed by PyTorch's own convolutions again."""
    for module in (*netG.modules(), *netD.modules()):
        if isinstance(module, REWRITTEN):
            module.__class__ = module.__class__.__bases__[0]


REWRITTEN = (MatmulConv2d, MatmulConvTranspose2d, BlockConv2d, BlockConvTranspose2d, MatmulProjection, MatmulLogit)

VARIANTS = {
    "onednn": use_plain_convolutions,  # PyTorch's own convolutions (oneDNN) everywhere
    "matmul": lambda netG, netD: (use_plain_convolutions(netG, netD), use_matmul_convolutions(netG, netD)),
    "blocks": lambda netG, netD: (use_plain_convolutions(netG, netD), use_block_convolutions(netG, netD)),
}


def apply_variant(netG: Generator, netD: Discriminator, variant: str) -> None:
    """Make G and D (placed on the CPU) compute their convolutions the way ``variant`` does."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown CPU step variant {variant!r}; one of {', '.join(VARIANTS)}")
    VARIANTS[variant](netG, netD)
