"""Training throughput: dcgan-cli's step against the common PyTorch DCGAN example loop.

Both run in this process on the same synthetic batch, alternating, so machine noise hits
both alike; the figure that matters is the ratio. The reference is written out below as
the PyTorch example has it: Sigmoid + BCELoss, default Adam, contiguous (NCHW) tensors,
two backward passes for D, and D's weight gradients computed during the G update.

    python benchmarks/train_throughput.py                 # 64x64, batch 128, CPU
    python benchmarks/train_throughput.py --size 32 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from dcgan_cli.model import DCGANConfig, build_models
from dcgan_cli.train import TrainConfig, gan_step, make_optimizers


# ------------------------------------------------------------------ the reference loop
def reference_models(size: int, nz: int, ngf: int, ndf: int, nc: int) -> tuple[nn.Module, nn.Module]:
    """netG and netD as in the PyTorch DCGAN example (generalised over 32/64/128)."""
    n = {32: 3, 64: 4, 128: 5}[size]
    g_layers = [nn.ConvTranspose2d(nz, ngf * 2 ** (n - 1), 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2 ** (n - 1)), nn.ReLU(True)]
    for i in range(n - 1, 0, -1):
        g_layers += [nn.ConvTranspose2d(ngf * 2**i, ngf * 2 ** (i - 1), 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2 ** (i - 1)), nn.ReLU(True)]
    g_layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    d_layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for i in range(n - 1):
        d_layers += [nn.Conv2d(ndf * 2**i, ndf * 2 ** (i + 1), 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2 ** (i + 1)), nn.LeakyReLU(0.2, inplace=True)]
    d_layers += [nn.Conv2d(ndf * 2 ** (n - 1), 1, 4, 1, 0, bias=False), nn.Sigmoid()]
    netG, netD = nn.Sequential(*g_layers), nn.Sequential(*d_layers)

    def weights_init(m):
        classname = m.__class__.__name__
        if classname.find("Conv") != -1:
            nn.init.normal_(m.weight.data, 0.0, 0.02)
        elif classname.find("BatchNorm") != -1:
            nn.init.normal_(m.weight.data, 1.0, 0.02)
            nn.init.constant_(m.bias.data, 0)

    netG.apply(weights_init)
    netD.apply(weights_init)
    return netG, netD


def reference_step_fn(size, batch, nz, ngf, ndf, nc, device, real):
    netG, netD = reference_models(size, nz, ngf, ndf, nc)
    netG.to(device)
    netD.to(device)
    criterion = nn.BCELoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    real_label, fake_label = 1.0, 0.0

    def step():
        netD.zero_grad()
        b_size = real.size(0)
        label = torch.full((b_size,), real_label, dtype=torch.float, device=device)
        output = netD(real).view(-1)
        errD_real = criterion(output, label)
        errD_real.backward()
        noise = torch.randn(b_size, nz, 1, 1, device=device)
        fake = netG(noise)
        label.fill_(fake_label)
        output = netD(fake.detach()).view(-1)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        optimizerD.step()
        netG.zero_grad()
        label.fill_(real_label)
        output = netD(fake).view(-1)
        errG = criterion(output, label)
        errG.backward()
        optimizerG.step()

    return step


# ------------------------------------------------------------------ dcgan-cli's step
def project_step_fn(size, batch, nz, ngf, ndf, nc, device, real):
    config = DCGANConfig(size=size, channels=nc, nz=nz, ngf=ngf, ndf=ndf)
    netG, netD = build_models(config, seed=0)
    netG.to(device, memory_format=torch.channels_last)
    netD.to(device, memory_format=torch.channels_last)
    optG, optD = make_optimizers(netG, netD, TrainConfig())
    real_cl = real.contiguous(memory_format=torch.channels_last)

    def step():
        z = torch.randn(real.shape[0], nz, device=device)
        gan_step(netG, netD, optG, optD, real_cl, z)

    return step


def timed(step, n: int, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, choices=(32, 64, 128))
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds of each loop")
    parser.add_argument("--steps", type=int, default=3, help="steps per round")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    nz, ngf, ndf = 100, 64, 64
    real = (torch.rand(args.batch_size, args.channels, args.size, args.size, device=device) * 2 - 1)
    loops = {
        "reference": reference_step_fn(args.size, args.batch_size, nz, ngf, ndf, args.channels, device, real),
        "dcgan-cli": project_step_fn(args.size, args.batch_size, nz, ngf, ndf, args.channels, device, real),
    }
    for step in loops.values():  # warm up: oneDNN/cuDNN plans, allocator
        timed(step, 2, device)
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, step in loops.items():
            rates[name].append(args.steps * args.batch_size / timed(step, args.steps, device))
    med = {name: statistics.median(r) for name, r in rates.items()}
    result = {
        "size": args.size,
        "batch_size": args.batch_size,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "reference_img_per_s": round(med["reference"], 1),
        "dcgan_cli_img_per_s": round(med["dcgan-cli"], 1),
        "ratio": round(med["dcgan-cli"] / med["reference"], 3),
        "rounds": {name: [round(x, 1) for x in r] for name, r in rates.items()},
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.size}x{args.size}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads")
        print(f"  reference loop : {result['reference_img_per_s']:8.1f} img/s")
        print(f"  dcgan-cli step : {result['dcgan_cli_img_per_s']:8.1f} img/s")
        print(f"  ratio          : {result['ratio']:.2f}x")


if __name__ == "__main__":
    main()
