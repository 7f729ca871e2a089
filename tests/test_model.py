import pytest
import torch
from torch import nn

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.model import DCGANConfig, Discriminator, Generator, build_models


@pytest.mark.parametrize("size,n_layers", [(32, 3), (64, 4), (128, 5)])
@pytest.mark.parametrize("channels", [1, 3])
def test_shapes(size, n_layers, channels):
    config = DCGANConfig(size=size, channels=channels, nz=20, ngf=8, ndf=8)
    netG, netD = build_models(config, seed=0)
    z = torch.randn(4, 20)
    images = netG(z)
    assert images.shape == (4, channels, size, size)
    assert images.min() >= -1 and images.max() <= 1  # Tanh output
    assert netD(images).shape == (4,)
    # Generator: 4x4 projection, then each layer doubles the side and halves the width.
    feats = netG.features(z)
    assert [tuple(f.shape[1:]) for f in feats[:-1]] == [
        (8 * 2 ** (n_layers - 1 - i), 4 * 2**i, 4 * 2**i) for i in range(n_layers)
    ]
    # Discriminator: each layer halves the side and doubles the width, ending at 4x4.
    dfeats = netD.features(images)
    assert [tuple(f.shape[1:]) for f in dfeats] == [
        (8 * 2**i, size // 2 ** (i + 1), size // 2 ** (i + 1)) for i in range(n_layers)
    ]
    assert dfeats[-1].shape[-1] == 4


def test_paper_architecture_rules():
    netG, netD = Generator(DCGANConfig()), Discriminator(DCGANConfig())
    for net in (netG, netD):
        kinds = {type(m) for m in net.modules()}
        assert nn.Linear not in kinds, "no fully connected layers"
        assert not any(issubclass(k, (nn.MaxPool2d, nn.AvgPool2d)) for k in kinds), "no pooling"
    # BatchNorm on every generator layer but the output, ReLU inside, Tanh out.
    assert all(isinstance(b.bn, nn.BatchNorm2d) and isinstance(b.relu, nn.ReLU) for b in netG.blocks)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in netG.to_image.modules())
    assert isinstance(netG.to_image[-1], nn.Tanh)
    # BatchNorm on every discriminator layer but the input; LeakyReLU(0.2); strided convs.
    assert not hasattr(netD.blocks[0], "bn")
    assert all(isinstance(b.bn, nn.BatchNorm2d) for b in netD.blocks[1:])
    assert all(b.lrelu.negative_slope == 0.2 and b.conv.stride == (2, 2) for b in netD.blocks)
    assert all(b.conv.stride == (2, 2) for b in netG.blocks[1:])


def test_paper_initialisation():
    netG, netD = build_models(DCGANConfig(), seed=1)
    convs = torch.cat(
        [
            m.weight.flatten()
            for net in (netG, netD)
            for m in net.modules()
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        ]
    )
    assert abs(convs.mean().item()) < 1e-3
    assert convs.std().item() == pytest.approx(0.02, rel=0.02)
    scales = torch.cat([m.weight for m in netG.modules() if isinstance(m, nn.BatchNorm2d)])
    assert scales.mean().item() == pytest.approx(1.0, abs=0.01)
    assert scales.std().item() == pytest.approx(0.02, rel=0.2)
    # The same seed gives the same weights.
    again, _ = build_models(DCGANConfig(), seed=1)
    assert all(torch.equal(a, b) for a, b in zip(netG.state_dict().values(), again.state_dict().values()))


@pytest.mark.parametrize(
    "changes,needle",
    [
        ({"size": 48}, "size must be one of"),
        ({"channels": 2}, "channels must be 1 or 3"),
        ({"nz": 10**9}, "nz must be between"),
        ({"nz": True}, "nz must be int"),
        ({"ngf": "64"}, "ngf must be int"),
        ({"ndf": 0}, "ndf must be between"),
        ({"prior": "cauchy"}, "prior must be"),
        ({"depth": 3}, "unknown model arguments depth"),
    ],
)
def test_config_validation(changes, needle):
    data = {**DCGANConfig().to_dict(), **changes}
    with pytest.raises(DcganError, match=needle):
        DCGANConfig.from_dict(data)
