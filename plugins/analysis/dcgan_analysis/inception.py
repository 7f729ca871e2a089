"""InceptionV3 feature extractors for FID, from weights the user supplies (nothing is downloaded).

Two networks, two scales of numbers; never compare an FID of one with an FID of the other:

- ``fid-inception``: the standard FID network, the TensorFlow Inception graph of 2015-12-05
  ported to PyTorch, as pytorch-fid and torchmetrics (through torch-fidelity) use it; its
  weights are ``pt_inception-2015-12-05-6726825d.pth``. Published FIDs are computed with it.
  Its blocks differ from torchvision's in three places (average pools that leave the padding
  out of the mean, a max pool in the last block) and it has 1008 classes; images are resized
  to 299x299 bilinearly, as pytorch-fid does, after rounding to 8 bits as if saved as PNG.
- ``inception``: torchvision's InceptionV3 with its ImageNet weights
  (``inception_v3_google-0cc3c7bd.pth``, or the same saved as safetensors). Its FIDs are
  only comparable with other torchvision-Inception FIDs.

Both read a .pth with ``torch.load(weights_only=True)`` (tensors only: a pickle that would
build any other object is refused unread) or a .safetensors file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

from dcgan_analysis.features import NetworkFeatures
from dcgan_cli.api import DcganError, read_state_dict, sha256_file

if TYPE_CHECKING:
    from dcgan_analysis.fid import ExtractorContext

INCEPTION_SIZE = 299
FID_CLASSES = 1008  # the TF graph's classes: ImageNet's 1000 and 8 unused
IMAGENET_CLASSES = 1000
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


def weights_kind(tensors: dict[str, torch.Tensor]) -> str | None:
    """'fid-inception' or 'inception' by the classifier's shape; None for anything else."""
    fc = tensors.get("fc.weight")
    if fc is None or tuple(fc.shape[1:]) != (2048,):
        return None
    return {FID_CLASSES: "fid-inception", IMAGENET_CLASSES: "inception"}.get(int(fc.shape[0]))


# ---------------------------------------------------------------------------- the FID network


class FIDInceptionA(InceptionA):
    """InceptionA whose branch pool averages over the image only (the TF graph's padding rule)."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch1x1 = self.branch1x1(x)
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return [branch1x1, branch5x5, branch3x3dbl, branch_pool]


class FIDInceptionC(InceptionC):
    """InceptionC whose branch pool averages over the image only."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch1x1 = self.branch1x1(x)
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for i in range(1, 6):
            branch7x7dbl = getattr(self, f"branch7x7dbl_{i}")(branch7x7dbl)
        branch_pool = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
        return [branch1x1, branch7x7, branch7x7dbl, branch_pool]


class FIDInceptionE(InceptionE):
    """InceptionE with the TF graph's pooling: an average over the image only (Mixed_7b) or a
    max (Mixed_7c)."""

    def __init__(self, in_channels: int, pool: str):
        super().__init__(in_channels)
        self.pool = pool

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return [branch1x1, branch3x3, branch3x3dbl, self.branch_pool(pooled)]


def fid_inception_v3() -> Inception3:
    """The FID Inception's architecture (no weights): torchvision's InceptionV3 with 1008 classes
    and the TF graph's blocks. Its state dict has the keys of pt_inception-2015-12-05."""
    net = Inception3(num_classes=FID_CLASSES, aux_logits=False, transform_input=False, init_weights=False)
    net.Mixed_5b = FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = FIDInceptionE(1280, pool="avg")
    net.Mixed_7c = FIDInceptionE(2048, pool="max")
    return net


# ---------------------------------------------------------------------------- loading weights


def load_weights(net: nn.Module, path: Path, kind: str, tensors: dict[str, torch.Tensor] | None = None) -> None:
    """Load ``path`` into ``net`` (an Inception of ``kind``), or refuse it in one line naming the fix."""
    tensors = dict(tensors if tensors is not None else read_state_dict(path, "an Inception weights file"))
    found = weights_kind(tensors)
    if found is not None and found != kind:
        what = (
            "the FID Inception weights (pt_inception-2015-12-05)"
            if found == "fid-inception"
            else ("torchvision's ImageNet Inception weights")
        )
        raise DcganError(f"{path} holds {what}, not weights for --extractor {kind}; use --extractor {found}")
    expected = net.state_dict()
    for key, value in expected.items():  # torch saves before 0.4.1 carry no BatchNorm step counter
        if key.endswith("num_batches_tracked") and key not in tensors:
            tensors[key] = torch.zeros_like(value)
    if kind == "inception" and not any(k.startswith("AuxLogits.") for k in expected):
        tensors = {k: v for k, v in tensors.items() if not k.startswith("AuxLogits.")}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        if missing:
            detail = f"missing {len(missing)} tensors (e.g. {missing[0]})"
        elif unexpected:
            detail = f"unexpected {len(unexpected)} tensors (e.g. {unexpected[0]})"
        else:
            detail = (
                f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, expected {tuple(expected[wrong[0]].shape)}"
            )
        wanted = (
            f"the FID Inception weights ({FID_WEIGHTS_NAME}, as pytorch-fid and torchmetrics use)"
            if kind == "fid-inception"
            else "torchvision's inception_v3 ImageNet weights (inception_v3_google-0cc3c7bd.pth)"
        )
        raise DcganError(f"{path} does not hold {wanted}: {detail}")
    net.load_state_dict(tensors)


def _resized_rgb(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    x = images.to(device, torch.float32)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)


class _InceptionFeatures(NetworkFeatures):
    """An Inception whose weights come from the user's file (named, with its hash, in every result)."""

    WEIGHTS_HINT = ""  # what --inception-weights must name for this extractor

    def __init__(self, net: nn.Module, weights: Path):
        net.fc = nn.Identity()  # the 2048-d pool features, not the class logits
        self.net = net.eval()
        self.weights_path = weights
        self.sha256 = sha256_file(weights)

    @classmethod
    def create(cls, context: ExtractorContext) -> _InceptionFeatures:
        if context.inception_weights is None:
            raise DcganError(
                f"--extractor {cls.NAME} needs --inception-weights FILE: {cls.WEIGHTS_HINT} (nothing is downloaded here)"
            )
        return cls(context.inception_weights, context.inception_state)

    def describe(self) -> str:
        return f"{self.DESCRIPTION}, weights {self.weights_path.name} sha256 {self.sha256[:12]}"

    def cache_key(self) -> dict:
        return {"extractor": self.NAME, "weights_sha256": self.sha256, "resize": INCEPTION_SIZE}


class InceptionFeatures(_InceptionFeatures):
    """torchvision's InceptionV3 with the user's ImageNet weights: the 2048-d pool features."""

    NAME = "inception"
    DESCRIPTION = "torchvision InceptionV3 (ImageNet weights), 2048-d pool features"
    WEIGHTS_HINT = (
        "torchvision's inception_v3 ImageNet weights (inception_v3_google-0cc3c7bd.pth from torch's hub cache, "
        "or saved as .safetensors)"
    )

    def __init__(self, weights: Path, tensors: dict[str, torch.Tensor] | None = None):
        from torchvision.models import inception_v3

        weights = Path(weights)
        tensors = tensors if tensors is not None else read_state_dict(weights, "an Inception weights file")
        has_aux = any(k.startswith("AuxLogits.") for k in tensors)
        # init_weights=False: every weight comes from the file, so skip the slow random init.
        # transform_input=False: our images are already in [-1, 1], the range these weights expect.
        net = inception_v3(weights=None, aux_logits=has_aux, init_weights=False, transform_input=False)
        load_weights(net, weights, self.NAME, tensors)
        super().__init__(net, weights)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(_resized_rgb(images, self.device)).float().cpu()


class FidInceptionFeatures(_InceptionFeatures):
    """The standard FID Inception (pt_inception-2015-12-05): the 2048-d pool3 features."""

    NAME = "fid-inception"
    DESCRIPTION = "FID Inception (TF 2015-12-05 graph, as pytorch-fid and torchmetrics), 2048-d pool3 features"
    WEIGHTS_HINT = f"{FID_WEIGHTS_NAME}, the FID Inception weights that pytorch-fid and torchmetrics download"

    def __init__(self, weights: Path, tensors: dict[str, torch.Tensor] | None = None):
        weights = Path(weights)
        net = fid_inception_v3()
        load_weights(net, weights, self.NAME, tensors)
        super().__init__(net, weights)  # pool3: the features every published FID is computed on

    def cache_key(self) -> dict:
        return {**super().cache_key(), "uint8": True}

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # Published FIDs read PNG files: round to 8 bits first, as saving the samples would.
        x = images.to(torch.float32).clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1)
        return self.net(_resized_rgb(x, self.device)).float().cpu()
