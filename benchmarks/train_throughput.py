"""Training throughput: dcgan-cli's step against the common PyTorch DCGAN example loop.

All loops run in this process on the same synthetic batch, alternating, so machine noise
hits them alike; the figure that matters is the ratio. On the CPU each round builds every
loop anew, so no one instance's luck in memory decides it. The reference is written out below
as the PyTorch example has it: Sigmoid + BCELoss, default Adam, fp32 contiguous (NCHW)
tensors, two backward passes for D, and D's weight gradients computed during the G update.

CPU mode compares the reference with dcgan-cli's fp32 step (and its bf16 step, which a run
asks for with --precision bf16, where the CPU has bf16 dot products). GPU mode (--device cuda)
compares the fp32 reference with dcgan-cli's bf16 channels-last step, with and without
torch.compile, at batch 128 and 512.

    python benchmarks/train_throughput.py                    # 64x64, batch 128, CPU
    python benchmarks/train_throughput.py --threads 1        # steadier ratio on a busy machine
    python benchmarks/train_throughput.py --threads 1 --cpu-time --no-variants --rounds 12
    python benchmarks/train_throughput.py --device cuda      # GPU mode
    python benchmarks/train_throughput.py --size 32 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

from dcgan_cli.core.model import DCGANConfig, build_models
from dcgan_cli.engines.torch_engine import cpu_has_bf16
from dcgan_cli.training.config import TrainConfig
from dcgan_cli.training.cpu_convolutions import VARIANTS
from dcgan_cli.training.cpu_tuning import choose_cpu_step
from dcgan_cli.training.step import (
    AUTOCAST_DTYPES,
    gan_step,
    make_optimizers,
    place_models,
)


# ------------------------------------------------------------------ the reference loop
def reference_models(size: int, nz: int, ngf: int, ndf: int, nc: int) -> tuple[nn.Module, nn.Module]:
    """netG and netD as in the PyTorch DCGAN example (generalised over 32/64/128)."""
    n = {32: 3, 64: 4, 128: 5}[size]
    g_layers = [
        nn.ConvTranspose2d(nz, ngf * 2 ** (n - 1), 4, 1, 0, bias=False),
        nn.BatchNorm2d(ngf * 2 ** (n - 1)),
        nn.ReLU(True),
    ]
    for i in range(n - 1, 0, -1):
        g_layers += [
            nn.ConvTranspose2d(ngf * 2**i, ngf * 2 ** (i - 1), 4, 2, 1, bias=False),
            nn.BatchNorm2d(ngf * 2 ** (i - 1)),
            nn.ReLU(True),
        ]
    g_layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    d_layers = [nn.Conv2d(nc, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True)]
    for i in range(n - 1):
        d_layers += [
            nn.Conv2d(ndf * 2**i, ndf * 2 ** (i + 1), 4, 2, 1, bias=False),
            nn.BatchNorm2d(ndf * 2 ** (i + 1)),
            nn.LeakyReLU(0.2, inplace=True),
        ]
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
def project_step_fn(
    size, batch, nz, ngf, ndf, nc, device, real, precision="fp32", channels_last=True, compile=False, cpu_step=None
):
    config = DCGANConfig(size=size, channels=nc, nz=nz, ngf=ngf, ndf=ndf)
    netG, netD = build_models(config, seed=0)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if cpu_step is None and device.type == "cpu":  # as the trainer does: this machine's cached (or timed) choice
        cpu_step = choose_cpu_step(config, batch, precision, channels_last)[0]
    place_models(netG, netD, device, channels_last, cpu_step or "onednn")
    optG, optD = make_optimizers(netG, netD, TrainConfig())
    stepG, stepD = (torch.compile(netG), torch.compile(netD)) if compile else (netG, netD)
    autocast_dtype = AUTOCAST_DTYPES[precision]
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    real = real.contiguous(memory_format=memory_format)

    def step():
        z = torch.randn(real.shape[0], nz, device=device)
        gan_step(stepG, stepD, optG, optD, real, z, autocast_dtype=autocast_dtype, scaler=scaler)

    return step


def timed(step, n: int, device: torch.device, clock=time.perf_counter) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = clock()
    for _ in range(n):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock() - start


# What each mode compares against the reference loop (always fp32, NCHW, as the example has it).
# CPU: the step as the trainer runs it (the variant chosen for this machine), and each variant.
CPU_LOOPS = {
    "dcgan-cli fp32 (this machine's choice)": dict(precision="fp32"),
    **{f"dcgan-cli fp32, {v} convolutions": dict(precision="fp32", cpu_step=v) for v in VARIANTS},
}
GPU_LOOPS = {
    "dcgan-cli fp32 channels-last": dict(precision="fp32"),  # what the step alone gains
    "dcgan-cli bf16 channels-last": dict(precision="bf16"),
    "dcgan-cli bf16 channels-last compiled": dict(precision="bf16", compile=True),
}


def measure(
    size: int,
    batch: int,
    channels: int,
    device: torch.device,
    loops: dict,
    rounds: int,
    steps: int,
    clock=time.perf_counter,
    fresh: bool = False,
) -> dict:
    """Images per second of the reference and of each loop, alternating rounds; medians and ratios.

    ``fresh``: every round builds each loop anew (models, optimizers, buffers) and warms it up
    with one step. On the CPU two instances of the same loop run several percent apart for
    their whole life (where their buffers fall in memory, it seems: 1.23x and 1.32x for the same
    32x32 step in one run), so one instance per loop would let that chance decide the ratio.
    """
    nz, ngf, ndf = 100, 64, 64
    torch.manual_seed(0)
    real = torch.rand(batch, channels, size, size, device=device) * 2 - 1

    def build() -> dict:
        fns = {"reference": reference_step_fn(size, batch, nz, ngf, ndf, channels, device, real)}
        for name, options in loops.items():
            fns[name] = project_step_fn(size, batch, nz, ngf, ndf, channels, device, real, **options)
        return fns

    def warm_up(fns: dict, n: int) -> None:  # oneDNN/cuDNN plans, allocator, compiled graphs
        for name, step in fns.items():
            timed(step, n + 1 if "compiled" in name else n, device)

    steps_fns = build()
    warm_up(steps_fns, 2)
    rates: dict[str, list[float]] = {name: [] for name in steps_fns}
    for _ in range(rounds):
        if fresh:
            steps_fns = build()
            warm_up(steps_fns, 1)
        for name, step in steps_fns.items():
            rates[name].append(steps * batch / timed(step, steps, device, clock))
    med = {name: statistics.median(r) for name, r in rates.items()}
    return {
        "size": size,
        "batch_size": batch,
        "img_per_s": {name: round(v, 1) for name, v in med.items()},
        "ratio": {name: round(v / med["reference"], 3) for name, v in med.items() if name != "reference"},
        # Each round's rate over the reference's in the same round, median: what a slow drift
        # of the machine (other tenants) moves least.
        "paired_ratio": {
            name: round(statistics.median(a / b for a, b in zip(r, rates["reference"])), 3)
            for name, r in rates.items()
            if name != "reference"
        },
        "rounds": {name: [round(x, 1) for x in r] for name, r in rates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64, choices=(32, 64, 128))
    parser.add_argument("--batch-size", type=int, nargs="+", default=None, help="default: 128 (CPU), 128 512 (GPU)")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument(
        "--rounds", type=int, default=None, help="alternating rounds of each loop (default 5 CPU, 10 GPU)"
    )
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 3 CPU, 20 GPU)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: PyTorch's)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for the GPU mode")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time by this process's CPU seconds instead of the wall clock: steadier on a machine "
        "others share (use with --threads 1, where no thread spins waiting for another)",
    )
    parser.add_argument(
        "--no-variants",
        action="store_true",
        help="CPU: time only the reference and the trainer's choice (more rounds in the same time)",
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    device = torch.device(args.device)
    gpu = device.type == "cuda"
    if gpu and not torch.cuda.is_available():
        parser.error("--device cuda: this machine has no CUDA device")
    if args.threads:
        torch.set_num_threads(args.threads)
    if gpu:
        torch.backends.cudnn.benchmark = True  # as the PyTorch example sets it; both loops share it
    loops = GPU_LOOPS if gpu else CPU_LOOPS
    if args.no_variants and not gpu:
        loops = dict(list(CPU_LOOPS.items())[:1])
    elif not gpu and cpu_has_bf16():  # what --precision bf16 buys where the CPU has bf16 dot products
        loops = {**loops, "dcgan-cli bf16 (opt-in --precision bf16)": dict(precision="bf16")}
    batches = args.batch_size or ([128, 512] if gpu else [128])
    rounds, steps = args.rounds or (10 if gpu else 5), args.steps or (20 if gpu else 3)
    if args.cpu_time and gpu:
        parser.error("--cpu-time is for the CPU mode")
    clock = time.process_time if args.cpu_time else time.perf_counter
    # CPU: fresh instances each round (see measure); on a GPU compiling each round would dominate.
    results = [measure(args.size, b, args.channels, device, loops, rounds, steps, clock, not gpu) for b in batches]
    where = torch.cuda.get_device_name(device) if gpu else f"cpu, {torch.get_num_threads()} threads"
    if args.cpu_time:
        where += ", per CPU-second"
    if args.json:
        print(json.dumps({"device": where, "torch": torch.__version__, "results": results}, indent=2))
        return
    for r in results:
        print(f"{r['size']}x{r['size']}, batch {r['batch_size']}, {where}")
        for name, rate in r["img_per_s"].items():
            ratio = f"  {r['ratio'][name]:.2f}x (paired {r['paired_ratio'][name]:.2f}x)" if name in r["ratio"] else ""
            print(f"  {name:40s} {rate:10.1f} img/s{ratio}")


if __name__ == "__main__":
    main()
