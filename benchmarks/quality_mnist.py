"""Training quality on real MNIST: dcgan-cli's training against the PyTorch DCGAN example loop.

Both train the same 32x32 DCGAN shape on the 5,000 real MNIST digits bundled as mnist5k,
for the same number of steps at batch 128, over several seeds, in this process, in
alternating order (so machine load hits both alike). dcgan-cli trains through its Trainer
exactly as `dcgan train mnist5k` does and is sampled as `dcgan sample` samples it (eval
mode, standing BatchNorm statistics); the reference is the PyTorch example's loop and
models (benchmarks/train_throughput.py), sampled as the example does (train mode).

The evaluator is our own, trained on real digits only: the class classifier of
`dcgan concepts auto` (dcgan_cli/latent/labelers/classes.py) fitted on a 4,000-image
train split, its accuracy measured on the other 1,000. On samples of each generator:
  FD        Frechet distance between the classifier's features (last conv block averaged
            over space, 128 numbers) of the samples and of the 5,000 real digits; lower is
            better. "real" is the FD of 2,500 real digits against the 5,000 (the floor).
  coverage  classes holding at least 5% of the samples (of 10), and the smallest class share.
  confident mean top-class probability (does it look like some digit).
Printed per seed, then mean and spread (1.96 std) over seeds, and the ratios.

    python benchmarks/quality_mnist.py                           # 3 seeds x 300 steps, ngf = ndf = 32
    python benchmarks/quality_mnist.py --steps 800 --seeds 0,1,2,3,4 --ngf 64 --ndf 64 --json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.latent.labelers.base import LabelerContext
from dcgan_cli.latent.labelers.classes import ClassClassifier, train_class_classifier
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.trainer import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import reference_models  # the example's models, one definition

Z95 = 1.96


def frechet(a: np.ndarray, b: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two sets of feature rows."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = linalg.sqrtm(cov_a @ cov_b)
    root = root.real if np.iscomplexobj(root) else root
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


class Evaluator:
    """The class classifier trained on 4,000 real digits; FD and coverage of samples against the real 5,000."""

    def __init__(self, real, labels: torch.Tensor, tmp: Path, steps: int = 1200, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(real), generator=g)
        train, test = order[:4000].sort().values, order[4000:].sort().values
        context = LabelerContext(tmp, DCGANConfig(size=32, channels=1), "mnist5k", device="cpu")
        subset = torch.utils.data.Subset(real, train.tolist())
        subset.targets = labels[train]
        self.classifier: ClassClassifier = train_class_classifier(
            subset, [str(d) for d in range(10)], context, steps=steps, seed=seed
        )
        images = torch.stack([real[i][0] for i in range(len(real))])
        predicted = self.classifier.predict_proba(images[test]).argmax(axis=1)
        self.test_accuracy = float((predicted == labels[test].numpy()).mean())
        self.real_features = self.classifier.features(images).numpy()
        half = order[:2500]
        self.real_floor = frechet(self.real_features[half.numpy()], self.real_features)

    def measure(self, samples: torch.Tensor) -> dict:
        proba = self.classifier.predict_proba(samples)
        shares = np.bincount(proba.argmax(axis=1), minlength=10) / len(samples)
        return {
            "fd": frechet(self.classifier.features(samples).numpy(), self.real_features),
            "coverage": int((shares >= 0.05).sum()),
            "min_share": float(shares.min()),
            "confident": float(proba.max(axis=1).mean()),
        }


def train_project(root: Path, steps: int, seed: int, ngf: int, ndf: int, n_samples: int) -> tuple[torch.Tensor, float]:
    model = DCGANConfig(size=32, channels=1, ngf=ngf, ndf=ndf)
    create_run(
        root,
        model,
        TrainConfig(dataset="mnist5k", epochs=math.ceil(steps / 39), max_steps=steps, seed=seed, device="cpu"),
        {"name": "mnist5k"},
    )
    started = time.perf_counter()
    Trainer(root).run()
    seconds = time.perf_counter() - started
    with TorchEngine(root, device="cpu") as engine:
        samples = torch.cat(
            [engine.generate(seeded_z(12345, 500, model.nz, model.prior, start=s)) for s in range(0, n_samples, 500)]
        )
    return samples, seconds


def train_reference(images: torch.Tensor, steps: int, seed: int, ngf: int, ndf: int, n_samples: int):
    """The PyTorch example's loop (BCELoss on Sigmoid, two D backwards), batches of 128 reshuffled each epoch."""
    from torch import nn

    torch.manual_seed(seed)
    nz = 100
    netG, netD = reference_models(32, nz, ngf, ndf, 1)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    step = 0
    while step < steps:
        order = torch.randperm(len(images), generator=g)
        for lo in range(0, len(order) - 127, 128):
            real = images[order[lo : lo + 128]]
            netD.zero_grad()
            label = torch.full((128,), 1.0)
            errD_real = criterion(netD(real).view(-1), label)
            errD_real.backward()
            fake = netG(torch.randn(128, nz, 1, 1))
            label.fill_(0.0)
            errD_fake = criterion(netD(fake.detach()).view(-1), label)
            errD_fake.backward()
            optimizerD.step()
            netG.zero_grad()
            label.fill_(1.0)
            errG = criterion(netD(fake).view(-1), label)
            errG.backward()
            optimizerG.step()
            step += 1
            if step >= steps:
                break
    seconds = time.perf_counter() - started
    with torch.no_grad():  # the example draws its samples in train mode
        samples = torch.cat([netG(torch.randn(500, nz, 1, 1)) for _ in range(0, n_samples, 500)])
    return samples, seconds


def summary(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), Z95 * float(np.std(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300, help="training steps of each (39 per epoch of mnist5k)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ngf", type=int, default=32)
    parser.add_argument("--ndf", type=int, default=32)
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--evaluator-steps", type=int, default=1200, help="training steps of the evaluator")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    started = time.perf_counter()
    real, _ = load_dataset("mnist5k", DataOptions())
    labels = real.targets.clone()
    images = torch.stack([real[i][0] for i in range(len(real))])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = Evaluator(real, labels, Path(tmp), args.evaluator_steps)
        for i, seed in enumerate(int(s) for s in args.seeds.split(",")):
            order = ("dcgan-cli", "pytorch-example") if i % 2 == 0 else ("pytorch-example", "dcgan-cli")
            for loop in order:
                if loop == "dcgan-cli":
                    samples, seconds = train_project(
                        Path(tmp) / f"run-{seed}", args.steps, seed, args.ngf, args.ndf, args.samples
                    )
                else:
                    samples, seconds = train_reference(images, args.steps, seed, args.ngf, args.ndf, args.samples)
                rows.append({"loop": loop, "seed": seed, "train_seconds": seconds, **evaluator.measure(samples)})
    report = {
        "steps": args.steps,
        "model": {"size": 32, "channels": 1, "ngf": args.ngf, "ndf": args.ndf, "batch_size": 128},
        "evaluator_test_accuracy": evaluator.test_accuracy,
        "real_floor_fd": evaluator.real_floor,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "rows": rows,
        "summary": {},
        "seconds": time.perf_counter() - started,
    }
    for loop in ("dcgan-cli", "pytorch-example"):
        sel = [r for r in rows if r["loop"] == loop]
        report["summary"][loop] = {
            key: summary([r[key] for r in sel]) for key in ("fd", "coverage", "min_share", "confident", "train_seconds")
        }
    ours, theirs = report["summary"]["dcgan-cli"], report["summary"]["pytorch-example"]
    report["ratios"] = {
        "fd_ours_over_example": ours["fd"][0] / theirs["fd"][0],
        "seconds_ours_over_example": ours["train_seconds"][0] / theirs["train_seconds"][0],
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(
        f"{args.steps} steps, 32x32 ngf={args.ngf} ndf={args.ndf}, batch 128, seeds {args.seeds}; {report['machine']}"
    )
    print(
        f"evaluator: classifier of 4,000 real digits, test accuracy {evaluator.test_accuracy:.3f} on the other 1,000; "
        f"FD of 2,500 real digits: {evaluator.real_floor:.3g}"
    )
    print(f"{'loop':16s} {'seed':>4s} {'FD':>8s} {'coverage':>8s} {'min share':>9s} {'confident':>9s} {'train s':>8s}")
    for r in rows:
        print(
            f"{r['loop']:16s} {r['seed']:4d} {r['fd']:8.3g} {r['coverage']:6d}/10 {r['min_share']:9.3f} "
            f"{r['confident']:9.3f} {r['train_seconds']:8.1f}"
        )
    for loop, s in report["summary"].items():
        print(
            f"{loop:16s} mean: FD {s['fd'][0]:.3g} +- {s['fd'][1]:.2g}, coverage {s['coverage'][0]:.1f} +- {s['coverage'][1]:.1f}, "
            f"confident {s['confident'][0]:.3f} +- {s['confident'][1]:.3f}, train {s['train_seconds'][0]:.0f} +- {s['train_seconds'][1]:.0f} s"
        )
    print(
        f"ratios (dcgan-cli / example): FD {report['ratios']['fd_ours_over_example']:.2f}, "
        f"wall-clock {report['ratios']['seconds_ours_over_example']:.2f}  ({report['seconds']:.0f} s in all)"
    )


if __name__ == "__main__":
    main()
