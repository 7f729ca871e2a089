"""The standard FID Inception (pt_inception-2015-12-05, as pytorch-fid and torchmetrics use it).

Its weights cannot be downloaded here, so the loading path is tested on a file built with the
same keys and shapes: torchvision's InceptionV3 with 1008 classes and no auxiliary head, the
network pytorch-fid builds before swapping in its blocks, saved with torch.save as pytorch-fid's
file is. The TF graph's blocks are checked by what they compute at the image border.
"""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import Inception3
from torchvision.models.inception import InceptionA

from dcgan_analysis.fid import ExtractorContext, choose_extractor
from dcgan_analysis.inception import (
    FID_WEIGHTS_NAME,
    FIDInceptionA,
    FIDInceptionC,
    FIDInceptionE,
    FidInceptionFeatures,
    InceptionFeatures,
    fid_inception_v3,
)
from dcgan_cli.api import DcganError, ExitCode


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory):
    """A file with pt_inception-2015-12-05's keys and shapes (random weights), saved as pytorch-fid's is."""
    torch.manual_seed(0)
    net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    state = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}  # as old saves
    path = tmp_path_factory.mktemp("fid") / FID_WEIGHTS_NAME
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def torchvision_weights(tmp_path_factory):
    """torchvision's ImageNet InceptionV3 layout (1000 classes, auxiliary head), as in torch's hub cache."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("tv") / "inception_v3_google-0cc3c7bd.pth"
    torch.save(Inception3(num_classes=1000, aux_logits=True, init_weights=False).state_dict(), path)
    return path


def pooled_input(block, x: torch.Tensor) -> torch.Tensor:
    """What ``block`` feeds its pooling branch's convolution."""
    seen = []
    handle = block.branch_pool.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    with torch.no_grad():
        block(x)
    handle.remove()
    return seen[0]


def test_the_fid_blocks_pool_as_the_tensorflow_graph_does():
    ones = torch.ones(1, 192, 5, 5)
    # torchvision counts the zero padding into the border's mean; the TF graph does not.
    assert pooled_input(InceptionA(192, 32).eval(), ones)[0, 0, 0, 0] == pytest.approx(4 / 9)
    assert torch.equal(pooled_input(FIDInceptionA(192, 32).eval(), ones), ones)
    assert torch.equal(pooled_input(FIDInceptionC(192, 32).eval(), ones), ones)
    assert torch.equal(pooled_input(FIDInceptionE(192, pool="avg").eval(), ones), ones)
    ramp = torch.arange(192 * 25, dtype=torch.float32).reshape(1, 192, 5, 5)
    assert torch.equal(pooled_input(FIDInceptionE(192, pool="max").eval(), ramp), F.max_pool2d(ramp, 3, 1, 1))
    net = fid_inception_v3()
    assert isinstance(net.Mixed_5b, FIDInceptionA) and isinstance(net.Mixed_6e, FIDInceptionC)
    assert (net.Mixed_7b.pool, net.Mixed_7c.pool, net.fc.out_features) == ("avg", "max", 1008)


def test_the_fid_extractor_loads_the_weights_file_and_gives_pool3_features(fid_weights):
    extractor = FidInceptionFeatures(fid_weights)
    images = torch.randint(0, 256, (2, 1, 32, 32)) / 127.5 - 1  # on the 8-bit levels, as a PNG holds them
    features = extractor(images)
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    assert FID_WEIGHTS_NAME in extractor.describe() and "FID Inception" in extractor.describe()
    # 8-bit rounding first, as published FIDs read PNG files: a change below half a level changes nothing
    assert torch.equal(extractor(images + 0.3 / 255), extractor(images))
    # the same weights in torchvision's blocks give other features: the TF graph's blocks are used
    plain = Inception3(num_classes=1008, aux_logits=False, init_weights=False, transform_input=False)
    state = torch.load(fid_weights, weights_only=True)
    plain.load_state_dict(state, strict=False)
    plain.fc = torch.nn.Identity()
    x = F.interpolate(images.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert not torch.allclose(plain.eval()(x), features, rtol=1e-3)


def test_each_inception_refuses_the_other_ones_weights_and_strangers(fid_weights, torchvision_weights, tmp_path):
    with pytest.raises(DcganError, match="holds torchvision's ImageNet Inception weights.*use --extractor inception"):
        FidInceptionFeatures(torchvision_weights)
    with pytest.raises(DcganError, match=r"holds the FID Inception weights .*use --extractor fid-inception"):
        InceptionFeatures(fid_weights)
    torch.save({"main.0.weight": torch.zeros(100, 128, 4, 4)}, tmp_path / "netG.pth")
    with pytest.raises(DcganError, match="does not hold the FID Inception weights"):
        FidInceptionFeatures(tmp_path / "netG.pth")
    (tmp_path / "notes.pth").write_text("hello")
    with pytest.raises(DcganError, match="not a PyTorch weights file"):
        FidInceptionFeatures(tmp_path / "notes.pth")
    assert InceptionFeatures(torchvision_weights).net is not None  # its own file loads (.pth, weights_only)


def test_auto_picks_the_inception_the_file_is_for(run_dir, fid_weights, torchvision_weights):
    from dcgan_analysis.data import load_real_images

    real = load_real_images(run_dir)
    for weights, expected in ((fid_weights, "fid-inception"), (torchvision_weights, "inception")):
        chosen = choose_extractor("auto", ExtractorContext(run_dir, real, "cpu", weights))
        assert expected == chosen.NAME


def test_the_fid_command_prints_every_fid_with_its_extractor(cli, run_dir, fid_weights):
    args = ["fid", "-r", run_dir, "--inception-weights", fid_weights, "-n", "6", "--max-real", "6"]
    args += ["--kid-subsets", "2", "--kid-subset-size", "3", "--batch-size", "6", "--no-cache"]
    result = cli(args)
    assert result.exit_code == 0, result.output
    printed = " ".join(result.stdout.split())
    numbers = re.findall(r"FID(?! Inception)( \(fid-inception\))? ", printed)  # every FID, with or without its name
    assert len(numbers) == 2 and all(numbers), printed
    assert "extractor: FID Inception" in result.stdout
    report = json.loads((run_dir / "analysis" / "fid-001.json").read_text())
    assert report["extractor"] == "fid-inception" and FID_WEIGHTS_NAME in report["extractor_description"]
    wrong = cli([*args, "--extractor", "inception"])
    assert wrong.exit_code == ExitCode.BAD_INPUT and "use --extractor fid-inception" in wrong.stderr
