"""The CPU step's matrix-multiply convolutions compute what nn.Conv2d / nn.ConvTranspose2d compute."""

import pytest
import torch
import torch.nn.functional as F

from dcgan_cli.core.model import DCGANConfig, build_models
from dcgan_cli.training.cpu_convolutions import (
    MatmulConv2d,
    MatmulConvTranspose2d,
    conv2d_as_matmul,
    conv_transpose2d_as_matmul,
    use_matmul_convolutions,
)

FORMATS = [torch.contiguous_format, torch.channels_last]


def forward_and_grads(fn, x, w):
    x = x.detach().clone().requires_grad_(True)
    w = w.detach().clone().requires_grad_(True)
    out = fn(x, w)
    gx, gw = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum(), (x, w))
    return out, gx, gw


def assert_close(ours, theirs):
    for a, b in zip(ours, theirs):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


@pytest.mark.parametrize("memory_format", FORMATS)
def test_conv2d_as_matmul_matches_conv2d_forward_and_gradients(memory_format):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5, 24, 8, 8, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(40, 24, 4, 4, generator=gen)
    ours = forward_and_grads(lambda x, w: conv2d_as_matmul(x, w, 2, 1), x, w)
    theirs = forward_and_grads(lambda x, w: F.conv2d(x, w, stride=2, padding=1), x, w)
    assert_close(ours, theirs)
    assert ours[0].is_contiguous(memory_format=memory_format)


@pytest.mark.parametrize("memory_format", FORMATS)
def test_conv_transpose2d_as_matmul_matches_conv_transpose2d_forward_and_gradients(memory_format):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 40, 4, 4, generator=gen).contiguous(memory_format=memory_format)
    w = torch.randn(40, 24, 4, 4, generator=gen)
    ours = forward_and_grads(lambda x, w: conv_transpose2d_as_matmul(x, w, 2, 1), x, w)
    theirs = forward_and_grads(lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1), x, w)
    assert_close(ours, theirs)
    assert ours[0].shape[-2:] == (8, 8)
    assert ours[0].is_contiguous(memory_format=memory_format)


def test_narrow_models_keep_their_convolutions():
    netG, netD = build_models(DCGANConfig(size=32, channels=1, ngf=64, ndf=64), seed=0)
    use_matmul_convolutions(netG, netD)
    assert type(netG.blocks[1].conv) is torch.nn.ConvTranspose2d and type(netD.blocks[-1].conv) is torch.nn.Conv2d


def test_swapped_layers_keep_weights_names_and_outputs():
    netG, netD = build_models(DCGANConfig(size=64, channels=3, ngf=64, ndf=64), seed=0)
    netG.eval(), netD.eval()
    keys = (list(netG.state_dict()), list(netD.state_dict()))
    z = torch.randn(2, 100, generator=torch.Generator().manual_seed(2))
    before_g = netG(z)
    before_d = netD(before_g)
    use_matmul_convolutions(netG, netD)
    assert type(netG.blocks[1].conv) is MatmulConvTranspose2d
    assert type(netD.blocks[-1].conv) is MatmulConv2d
    assert (list(netG.state_dict()), list(netD.state_dict())) == keys
    torch.testing.assert_close(netG(z), before_g, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(netD(before_g), before_d, rtol=1e-4, atol=1e-5)
