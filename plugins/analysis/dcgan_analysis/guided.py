"""Guided backpropagation of discriminator features (the paper's fig. 5).

Guided backpropagation (Springenberg et al. 2014) shows which input pixels drive one
feature: the gradient of the feature's response with respect to the image, where every
rectifier on the way back passes only positive gradients and only where its input was
positive. The paper shows it for the strongest features of the last conv layer of a
trained discriminator beside the same for a randomly initialised one: trained features
respond to parts of objects, random ones to nothing in particular.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dcgan_cli.api import Discriminator


class _GuidedLeakyReLUFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, slope: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        return F.leaky_relu(x, slope)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        # The guided rule: positive gradients, through positive inputs only.
        return grad.clamp(min=0) * (x > 0).to(grad.dtype), None


class GuidedLeakyReLU(nn.Module):
    """LeakyReLU forward, guided-backpropagation backward."""

    def __init__(self, slope: float):
        super().__init__()
        self.slope = slope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedLeakyReLUFunction.apply(x, self.slope)


def guided_copy(discriminator: Discriminator) -> Discriminator:
    """A copy of the discriminator, in eval mode, whose LeakyReLUs backpropagate the guided way."""
    net = copy.deepcopy(discriminator).eval()
    for module in list(net.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.LeakyReLU):
                setattr(module, name, GuidedLeakyReLU(child.negative_slope))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@dataclass
class FeatureMaps:
    """The strongest features of one layer and the images that excite each most."""

    layer: int  # 0-based block index
    channels: list[int]  # the chosen feature maps, strongest first
    strength: list[float]  # mean over images of each channel's spatial maximum
    image_rows: list[list[int]]  # per channel: rows of ``images`` with the highest responses
    responses: list[list[float]]  # and those responses
    saliency: torch.Tensor  # (features, images per feature, C, H, W) guided gradients


@torch.no_grad()
def channel_responses(net: Discriminator, images: torch.Tensor, layer: int, batch_size: int = 256) -> torch.Tensor:
    """(N, channels): each image's spatial maximum of every feature map of ``layer``."""
    out = []
    for start in range(0, len(images), batch_size):
        maps = net.features(images[start : start + batch_size])[layer]
        out.append(maps.amax(dim=(2, 3)))
    return torch.cat(out)


def guided_backprop(net: Discriminator, images: torch.Tensor, layer: int, channel: int) -> torch.Tensor:
    """d(spatial maximum of ``channel`` at ``layer``)/d(image) with the guided rule, per image: (N, C, H, W).

    In eval mode BatchNorm does not mix images, so one backward of the summed maxima
    gives every image's own gradient."""
    guided = net if any(isinstance(m, GuidedLeakyReLU) for m in net.modules()) else guided_copy(net)
    x = images.detach().clone().float().requires_grad_(True)
    maps = guided.features(x)[layer]
    maps[:, channel].amax(dim=(1, 2)).sum().backward()
    return x.grad.detach()


def strongest_features(
    discriminator: Discriminator, images: torch.Tensor, layer: int = -1, features: int = 6, per_feature: int = 8
) -> FeatureMaps:
    """The ``features`` feature maps of ``layer`` with the strongest mean response over ``images``,
    with guided backpropagation for the ``per_feature`` images that excite each most."""
    net = discriminator.eval()
    n_layers = len(net.blocks)
    layer = layer % n_layers
    responses = channel_responses(net, images, layer)  # (N, channels)
    strength = responses.mean(dim=0)
    count = min(features, strength.numel())
    channels = torch.argsort(strength, descending=True)[:count].tolist()
    guided = guided_copy(net)
    per_feature = min(per_feature, len(images))
    rows, values, maps = [], [], []
    for c in channels:
        top = torch.argsort(responses[:, c], descending=True)[:per_feature]
        rows.append(top.tolist())
        values.append([float(v) for v in responses[top, c]])
        maps.append(guided_backprop(guided, images[top], layer, c))
    return FeatureMaps(layer, channels, [float(strength[c]) for c in channels], rows, values, torch.stack(maps))


def saliency_to_image(saliency: torch.Tensor) -> torch.Tensor:
    """Signed gradients scaled into [-1, 1] per map (0 is mid-grey), ready for a grid picture."""
    flat = saliency.reshape(saliency.shape[0], -1)
    peak = flat.abs().amax(dim=1).clamp_min(1e-12)
    return (flat / peak[:, None]).reshape(saliency.shape)
