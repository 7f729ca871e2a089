"""GPU acceptance check: every GPU path of dcgan-cli in one go, one table, a few minutes.

Run it once on a machine with an NVIDIA GPU (and the engines installed: `make install`):

    python scripts/gpu_check.py            # the table; exit 0 when every check passed
    python scripts/gpu_check.py --json     # the same rows as JSON
    python scripts/gpu_check.py --device cpu --steps 2   # the same checks where they apply
                                                          # on the CPU: a smoke test of this script

What it checks, on CUDA:
  train    a few steps of the paper's training in fp32, bf16 and fp16, channels-last and
           contiguous, one with torch.compile; 2 processes over NCCL where 2 GPUs exist
  export   generator.onnx and generator-fp16.onnx, each checked against PyTorch
  sample   the torch engine (CUDA graphs; fp32, fp16, bf16), ONNX Runtime's CUDA provider
           with I/O binding (fp32, fp16), TensorRT where installed (built here; fp32, fp16,
           bf16), each drawing 300 seeded images that must match PyTorch fp32 on the CPU
           within the precision's tolerance; and what `--engine auto` takes
  bench    `dcgan bench` figures of every engine, fp32 and fp16

A check that does not apply here (one GPU, TensorRT not installed, bf16 on a GPU without
it) is a skip with its reason. Exit codes: 0 every check passed or skipped, 1 a check
failed, 2 no CUDA GPU here (one line says so).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "digits-run"  # a properly trained 32x32 digits generator
SAMPLES = 300  # above TensorRT's max batch below: the engine runs it in slices
TRT_PROFILE = (64, 256)  # opt, max batch of the engines built here


class Skip(Exception):
    """A check that does not apply on this machine; the message says why."""


@dataclass
class Row:
    group: str
    check: str
    status: str  # ok, FAIL, skip
    seconds: float
    detail: str


def run_checks(checks, verbose: bool = False) -> list[Row]:
    """Run each (group, check, fn) in turn; fn returns its detail line, raises Skip, or fails."""
    from dcgan_cli.core.errors import DcganError

    rows = []
    for group, name, fn in checks:
        started = time.perf_counter()
        try:
            status, detail = "ok", fn()
        except Skip as exc:
            status, detail = "skip", str(exc)
        except DcganError as exc:
            status, detail = "FAIL", str(exc)
        except Exception as exc:  # a check that breaks is a failure to report, not a crash
            status, detail = "FAIL", f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"
            if verbose:
                traceback.print_exc()
        rows.append(Row(group, name, status, time.perf_counter() - started, detail))
    return rows


def print_table(rows: list[Row], seconds: float) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="dcgan-cli GPU check", show_lines=False)
    for column in ("", "check", "status", "s", "detail"):
        table.add_column(column, overflow="fold")
    style = {"ok": "green", "FAIL": "bold red", "skip": "yellow"}
    for row in rows:
        table.add_row(row.group, row.check, f"[{style[row.status]}]{row.status}", f"{row.seconds:.1f}", row.detail)
    console = Console(width=max(120, shutil.get_terminal_size().columns))
    console.print(table)
    console.print(summary(rows, seconds))


def summary(rows: list[Row], seconds: float) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "skip", "FAIL")}
    return (
        f"{len(rows)} checks: {counts['ok']} ok, {counts['skip']} skipped, {counts['FAIL']} failed in {seconds:.0f} s"
    )


# ---------------------------------------------------------------------------- the checks


def machine_line(device: str) -> str:
    import torch

    if device == "cuda":
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return f"{', '.join(names)}; torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"CPU ({os.cpu_count()} cores); torch {torch.__version__}"


def train_check(work: Path, device: str, steps: int, precision: str, channels_last: bool, compile: bool):
    """A few steps of training on digits, in this precision and layout: finite losses and weights."""

    def check() -> str:
        import torch

        from dcgan_cli.core.model import DCGANConfig
        from dcgan_cli.training.checkpoints import latest_checkpoint
        from dcgan_cli.training.config import TrainConfig, create_run
        from dcgan_cli.training.reporters import describe_session
        from dcgan_cli.training.trainer import Trainer

        if device == "cuda" and precision == "bf16" and not torch.cuda.is_bf16_supported():
            raise Skip(f"{torch.cuda.get_device_name(0)} has no bf16")
        if device == "cpu" and compile:
            raise Skip("torch.compile is for GPUs (minutes of compiling on a CPU)")
        if device == "cpu" and precision == "fp16":
            raise Skip("fp16 autocast is for GPUs (slow on CPUs; tests/test_precision.py trains it there)")
        run = work / f"train-{precision}-{'cl' if channels_last else 'contiguous'}{'-compile' if compile else ''}"
        cfg = TrainConfig(
            dataset="digits",
            max_steps=steps,
            batch_size=128,
            device=device,
            log_every=1,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
        )
        create_run(run, DCGANConfig(size=32, channels=1, ngf=32, ndf=32), cfg, {"name": "digits"})
        trainer = Trainer(run)
        if trainer.device.type != device:
            raise RuntimeError(f"trained on {trainer.device}, not {device}")
        result = trainer.run()
        _, tensors, meta = latest_checkpoint(run)
        metrics = result.last_metrics or {}
        if result.step != steps or meta["precision"] != precision:
            raise RuntimeError(f"stopped at step {result.step} ({meta['precision']}), expected {steps} ({precision})")
        if not all(math.isfinite(metrics.get(k, math.nan)) for k in ("loss_d", "loss_g")):
            raise RuntimeError(f"losses are not finite: {metrics}")
        if not all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith(("G.", "D."))):
            raise RuntimeError("weights are not finite after training")
        return (
            f"{steps} step{'s' if steps != 1 else ''}, {result.images_per_second:,.0f} img/s, "
            f"D {metrics['loss_d']:.3f} G {metrics['loss_g']:.3f} ({describe_session(trainer)})"
        )

    return check


def nccl_check(work: Path, device: str, steps: int):
    def check() -> str:
        import torch

        from dcgan_cli.training.checkpoints import latest_checkpoint

        if device != "cuda":
            raise Skip("NCCL is for GPUs (tests/test_distributed.py runs 2 processes over gloo)")
        if torch.cuda.device_count() < 2:
            raise Skip(f"{torch.cuda.device_count()} GPU here; 2 processes over NCCL need 2")
        run = work / "train-nccl"
        command = [
            sys.executable, "-m", "dcgan_cli", "train", "digits", "--out", str(run), "--nproc", "2",
            "--device", "cuda", "--max-steps", str(steps), "--batch-size", "128", "--ngf", "32", "--ndf", "32",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DCGAN_QUIET": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"exit {done.returncode}: {(done.stderr.strip().splitlines() or [''])[-1]}")
        if "DDP over NCCL" not in done.stderr:
            raise RuntimeError("the processes did not use NCCL: " + done.stderr.strip().splitlines()[0])
        meta = latest_checkpoint(run)[2]
        if meta["world_size"] != 2 or len(set(meta["replica_sha256"])) != 1:
            raise RuntimeError(f"replicas differ: {meta['replica_sha256']}")
        return f"{steps} steps on 2 GPUs, replicas identical"

    return check


def export_check(run: Path, precision: str):
    def check() -> str:
        from dcgan_cli.engines.export import export_generator

        result = export_generator(run, precision, force=True)
        if result.parity is None:
            raise Skip("exported, not verified: the onnxruntime engine is not installed")
        if not result.parity.passed:
            raise RuntimeError(f"differs from PyTorch by {result.parity.max_abs_diff:.3g}")
        return f"{result.path.name}: max |ONNX - PyTorch| {result.parity.max_abs_diff:.2e} [{result.parity.runtime}]"

    return check


def reference_images(run: Path):
    """The images every engine must draw: PyTorch fp32 on the CPU, for SAMPLES seeded z."""
    import torch

    from dcgan_cli.core.networks import load_generator
    from dcgan_cli.core.prior import seeded_z

    z = seeded_z(0, SAMPLES, 100, "normal")
    with torch.inference_mode():
        return z, load_generator(run)(z)


def sample_check(run: Path, reference, engine_name: str, precision: str, device: str):
    """The engine draws the reference images within the precision's tolerance, on ``device``."""

    def check() -> str:
        import torch

        from dcgan_cli.engines.base import get_engines
        from dcgan_cli.engines.onnx_files import TOLERANCES, BuildRequest

        engines = get_engines()
        cls = engines.get(engine_name)
        if cls is None:
            raise Skip(f"the {engine_name} engine is not installed")
        available, why = cls.is_available()
        if not available:
            raise Skip(why)
        if precision not in cls.PRECISIONS:
            raise Skip(f"the {engine_name} engine does not run {precision}")
        if device == "cpu" and engine_name == "torch" and precision != "fp32":
            raise Skip("the torch engine runs fp16/bf16 on CUDA only")
        if engine_name == "tensorrt":
            cls.build(run, BuildRequest(precision, opt_batch=TRT_PROFILE[0], max_batch=TRT_PROFILE[1]))
        z, expected = reference
        with cls(run, device=device, precision=precision) as engine:
            first = engine.generate(z)
            again = engine.generate(z)
            where = engine.describe()
            if engine_name == "onnxruntime" and device == "cuda" and not engine.on_cuda:
                raise RuntimeError(f"ran on {engine.provider}, not CUDA: install onnxruntime-gpu")
            if engine_name == "torch" and device == "cuda" and not engine.use_graphs:
                raise RuntimeError("no CUDA graphs")
        diff = float((first.float() - expected).abs().max())
        if first.shape != expected.shape or not torch.isfinite(first).all():
            raise RuntimeError(f"drew {tuple(first.shape)} images with non-finite values")
        if not torch.equal(first, again):
            raise RuntimeError("two calls on the same z drew different images")
        if diff > TOLERANCES[precision]:
            raise RuntimeError(f"max |diff| {diff:.3g} from PyTorch fp32 > tolerance {TOLERANCES[precision]:g}")
        return f"max |diff| {diff:.2e} <= {TOLERANCES[precision]:g}; {where}"

    return check


def auto_check(run: Path, device: str):
    def check() -> str:
        from dcgan_cli.engines.selection import select_engine

        choice = select_engine("auto", run, device=device, batch_size=256)
        skipped = "; ".join(f"{name}: {why}" for name, why in choice.passed_over)
        return f"{choice.engine.NAME} ({choice.reason})" + (f"; passed over {skipped}" if skipped else "")

    return check


def bench_check(run: Path, device: str, precision: str, min_time: float):
    def check() -> str:
        from dcgan_cli.engines.bench import run_bench

        table = run_bench(run, batch_sizes=(1, 256), precision=precision, device=device, min_time=min_time)
        if not table["results"]:
            raise Skip("no engine runs " + precision + " here")
        best = {}
        for row in table["results"]:
            best.setdefault(row["engine"], {})[row["batch"]] = row
        return "; ".join(
            f"{name} {rows[256]['images_per_s']:,.0f} img/s at 256, {rows[1]['latency_ms']:.2f} ms at 1"
            for name, rows in best.items()
        )

    return check


def checks_for(work: Path, device: str, steps: int, bench_time: float) -> list:
    run = work / "digits-run"
    shutil.copytree(FIXTURE, run)
    reference = reference_images(run)
    checks = [("machine", device, lambda: machine_line(device))]
    for precision, channels_last, compile in (
        ("fp32", True, False),
        ("fp32", False, False),
        ("bf16", True, False),
        ("fp16", True, False),
        ("bf16", True, True),
    ):
        what = f"{precision}, {'channels-last' if channels_last else 'contiguous'}{', compile' if compile else ''}"
        checks.append(("train", what, train_check(work, device, steps, precision, channels_last, compile)))
    checks.append(("train", "2 processes, NCCL", nccl_check(work, device, steps)))
    for precision in ("fp32", "fp16"):
        checks.append(("export", precision, export_check(run, precision)))
    for engine_name, precisions in (("torch", ("fp32", "fp16", "bf16")), ("onnxruntime", ("fp32", "fp16"))):
        for precision in precisions:
            checks.append(
                ("sample", f"{engine_name} {precision}", sample_check(run, reference, engine_name, precision, device))
            )
    for precision in ("fp32", "fp16", "bf16"):
        check = sample_check(run, reference, "tensorrt", precision, device)
        checks.append(("sample", f"tensorrt {precision}", check))
    checks.append(("sample", "--engine auto", auto_check(run, device)))
    for precision in ("fp32", "fp16"):
        checks.append(("bench", precision, bench_check(run, device, precision, bench_time)))
    return checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: a smoke test of this script")
    parser.add_argument("--steps", type=int, default=6, help="training steps of each training check")
    parser.add_argument("--bench-time", type=float, default=0.5, help="seconds each bench figure is measured for")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of a table")
    parser.add_argument("--verbose", action="store_true", help="print the traceback of a check that breaks")
    args = parser.parse_args(argv)

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            "no CUDA GPU here (torch.cuda.is_available() is False): nothing to check; run this on a machine "
            "with an NVIDIA GPU, or pass --device cpu for a smoke test of the script"
        )
        return 2
    os.environ.setdefault("DCGAN_QUIET", "1")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="dcgan-gpu-check-") as tmp:
        rows = run_checks(checks_for(Path(tmp), args.device, args.steps, args.bench_time), args.verbose)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"rows": [asdict(r) for r in rows], "summary": summary(rows, seconds)}, indent=2))
    else:
        print_table(rows, seconds)
    return 1 if any(r.status == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
