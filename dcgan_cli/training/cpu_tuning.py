"""Which convolution code the CPU training step runs: measured once per CPU, torch version and model.

The fastest way to compute the same sums differs between CPUs: on one, oneDNN is slow on the
widest layers with the smallest maps and one matrix multiply per layer (cpu_convolutions.py)
wins by 1.3x; on another (the 2-core AMD EPYC with AVX-512 these figures come from) oneDNN
is faster there, and only the narrow layers at the model's ends gain from a rewrite (2x2
pixel blocks, matrix multiplies). So the trainer times three steps of each variant on
copies of the model at start-up (about 19 s for 64x64 at batch 128 on 2 cores, once) and
keeps the fastest in a JSON cache (``$DCGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/dcgan-cli``,
else ``~/.cache/dcgan-cli``) under the CPU model, the thread count, the torch version, the
model's shape, the batch and the precision. The variant only changes how sums are computed
(float rounding), never the weights' names or shapes; a run records its variant in each
checkpoint, and a resume on the same machine keeps it, so resumed runs stay bitwise identical.

``DCGAN_CPU_STEP=onednn`` (or ``matmul``, ``blocks``) forces a variant and measures nothing.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dcgan_cli.core.devices import cpu_model
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import atomic_write_json, read_json
from dcgan_cli.core.model import DCGANConfig, Discriminator, Generator, build_models
from dcgan_cli.training.cpu_convolutions import VARIANTS, apply_variant

CACHE_FORMAT = "dcgan-cli/cpu-step"
FORCE_ENV = "DCGAN_CPU_STEP"
TIMED_STEPS = 2  # per variant, after one warm-up step; the fastest step counts
# Steps are compared by the process's CPU seconds, not wall-clock: on a shared machine other
# processes inflate wall-clock by several times at random (one such measurement picked the
# slower variant and cached it), while the CPU work of a step barely moves.
CLOCK = "process-cpu"


def cache_path() -> Path:
    from dcgan_cli.data.lsun import cache_dir

    return cache_dir() / "cpu-step.json"


def cpu_step_key(model: DCGANConfig, batch: int, precision: str, channels_last: bool) -> str:
    """What the choice depends on, as one string: machine, library, model shape, batch, precision."""
    shape = f"{model.size}x{model.size}x{model.channels} nz{model.nz} ngf{model.ngf} ndf{model.ndf}"
    layout = "channels-last" if channels_last else "nchw"
    return f"{cpu_model()} | {torch.get_num_threads()} threads | torch {torch.__version__} | {shape} | batch {batch} | {precision} {layout}"


def measure_variants(model: DCGANConfig, batch: int, precision: str, channels_last: bool) -> dict[str, float]:
    """CPU seconds (the process's, every thread) per step of each variant (fastest of
    TIMED_STEPS, alternating), on fresh models.

    The global RNG, which checkpoints record, is left as it was (layer constructors draw from it).
    """
    with torch.random.fork_rng(devices=[]):
        return _measure(model, batch, precision, channels_last)


def _measure(model: DCGANConfig, batch: int, precision: str, channels_last: bool) -> dict[str, float]:
    from dcgan_cli.training.config import TrainConfig
    from dcgan_cli.training.step import AUTOCAST_DTYPES, gan_step, make_optimizers

    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    real = (torch.rand(batch, model.channels, model.size, model.size, generator=gen) * 2 - 1).contiguous(
        memory_format=memory_format
    )
    z = torch.randn(batch, model.nz, generator=gen)
    steps = {}
    for variant in VARIANTS:
        netG, netD = build_models(model, seed=0)
        netG.to(memory_format=memory_format)
        netD.to(memory_format=memory_format)
        apply_variant(netG, netD, variant)
        optG, optD = make_optimizers(netG, netD, TrainConfig())
        steps[variant] = lambda g=netG, d=netD, og=optG, od=optD: gan_step(
            g, d, og, od, real, z, autocast_dtype=AUTOCAST_DTYPES[precision]
        )
    for step in steps.values():
        step()  # warm-up: oneDNN primitives, allocator
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(TIMED_STEPS):
        for variant, step in steps.items():  # alternating: load changes hit every variant alike
            started = time.process_time()
            step()
            best[variant] = min(best[variant], time.process_time() - started)
    return best


@dataclass(frozen=True)
class CpuStep:
    """The variant the step runs, the key it was chosen for, and how (forced, cached, measured, none)."""

    variant: str = "onednn"
    key: str = ""
    source: str = "none"  # none: not on the CPU

    def record(self) -> dict:
        """What a checkpoint keeps of it."""
        return {"cpu_step": self.variant, "cpu_step_key": self.key} if self.key else {}

    def resume(self, meta: dict, netG: Generator, netD: Discriminator) -> CpuStep:
        """The checkpoint's variant when it was chosen on this machine for this model (unless forced):
        a resumed run computes exactly as before, whatever the cache says now."""
        if self.source in ("none", "forced") or meta.get("cpu_step_key") != self.key:
            return self
        variant = meta.get("cpu_step")
        if variant not in VARIANTS or variant == self.variant:
            return self
        apply_variant(netG, netD, variant)
        return CpuStep(variant, self.key, "checkpoint")


def cpu_step_for(device: torch.device, model: DCGANConfig, batch: int, cfg, dist, note=None) -> CpuStep:
    """The step's variant for a training session: chosen on rank 0 (every rank computes alike)."""
    if device.type != "cpu":
        return CpuStep()
    return CpuStep(
        *dist.run_on_main(lambda: choose_cpu_step(model, batch, cfg.precision, cfg.channels_last, note=note))
    )


def choose_cpu_step(
    model: DCGANConfig, batch: int, precision: str = "fp32", channels_last: bool = True, *, note=None
) -> tuple[str, str, str]:
    """(variant, key, source) for this machine and model: forced, cached, or measured now and cached."""
    key = cpu_step_key(model, batch, precision, channels_last)
    forced = os.environ.get(FORCE_ENV, "")
    if forced:
        if forced not in VARIANTS:
            raise DcganError(f"{FORCE_ENV}={forced!r} is not a CPU step variant; use one of {', '.join(VARIANTS)}")
        return forced, key, "forced"
    path = cache_path()
    entries = {}
    try:
        data = read_json(path, "CPU step cache") if path.is_file() else {}
        if isinstance(data, dict) and data.get("format") == CACHE_FORMAT and isinstance(data.get("entries"), dict):
            entries = data["entries"]
    except DcganError:
        pass  # a damaged cache is measured again and rewritten
    cached = entries.get(key)
    # An entry timed by another clock (wall-clock, before), or before a variant existed, is measured again.
    if (
        isinstance(cached, dict)
        and cached.get("variant") in VARIANTS
        and cached.get("clock") == CLOCK
        and isinstance(cached.get("step_seconds"), dict)
        and set(cached["step_seconds"]) == set(VARIANTS)
    ):
        return cached["variant"], key, "cached"
    if note:
        note("Timing the CPU step's convolution variants on this machine (once; cached in " + str(path) + ")")
    seconds = measure_variants(model, batch, precision, channels_last)
    variant = min(seconds, key=seconds.get)
    entries[key] = {
        "variant": variant,
        "clock": CLOCK,
        "step_seconds": {k: round(v, 6) for k, v in seconds.items()},
        "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        atomic_write_json(path, {"format": CACHE_FORMAT, "entries": entries})
    except DcganError:
        pass  # a read-only home: the choice holds for this session
    return variant, key, "measured"
