"""Sampling over processes: `dcgan sample -n N --nproc P` for P = 1 and 2 (or --nprocs), side by side.

Each case is the whole command in a fresh process (start-up, engine load, workers, writing the
files), on a 64x64 generator (untrained: speed does not depend on the weights) with its ONNX
export. Cases alternate over the rounds so machine noise hits them alike; the figure that
matters is the ratio to P = 1. Every run's files are checked to be identical to the first one's.

    python benchmarks/sample_processes.py                      # PNG folder, 4096 images, P = 1, 2
    python benchmarks/sample_processes.py --kind npz --engine torch --n 8192
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sample_throughput import make_run  # (the same untrained run as the throughput benchmark)

from dcgan_cli.engines.export import export_generator


def digest(target: Path) -> str:
    """sha256 over the images written (file names and bytes; the .npz's images.npy member)."""
    h = hashlib.sha256()
    if target.is_dir():
        for p in sorted(target.iterdir()):
            if not p.name.startswith("."):
                h.update(p.name.encode() + p.read_bytes())
    else:
        import numpy as np

        h.update(np.load(target)["images"].tobytes())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--nprocs", default="1,2")
    parser.add_argument("--kind", choices=("png", "tar", "npz"), default="png")
    parser.add_argument("--engine", default="onnxruntime")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="dcgan-procs-"))
    try:
        run = make_run(work / "run", args.size, 64, 3)
        export_generator(run, "fp32")
        if args.precision != "fp32":
            export_generator(run, args.precision)
        nprocs = [int(p) for p in args.nprocs.split(",")]
        env = {**os.environ, "DCGAN_QUIET": "1"}
        seconds: dict[int, list[float]] = {p: [] for p in nprocs}
        digests = set()
        for _ in range(args.rounds):
            for p in nprocs:
                target = work / ("out.npz" if args.kind == "npz" else "out")
                where = ["--out", str(target)] if args.kind == "npz" else ["--out-dir", str(target)]
                command = [
                    sys.executable, "-m", "dcgan_cli", "sample", "-r", str(run), "-n", str(args.n),
                    "--nproc", str(p), "--engine", args.engine, "--precision", args.precision, "--device", "cpu",
                    *where, *(["--tar"] if args.kind == "tar" else []),
                ]  # fmt: skip
                started = time.perf_counter()
                subprocess.run(command, check=True, env=env)
                seconds[p].append(time.perf_counter() - started)
                digests.add(digest(target))
                shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink()
        base = statistics.median(seconds[nprocs[0]])
        rows = [
            {
                "nproc": p,
                "seconds": statistics.median(s),
                "images_per_s": args.n / statistics.median(s),
                "ratio": base / statistics.median(s),
                "rounds": [round(x, 2) for x in s],
            }
            for p, s in seconds.items()
        ]
        print(
            f"dcgan sample -n {args.n} ({args.kind}, {args.engine} {args.precision}, {args.size}x{args.size}), "
            f"{os.cpu_count()} CPUs, whole command, median of {args.rounds}:"
        )
        for r in rows:
            print(f"  --nproc {r['nproc']}: {r['seconds']:6.1f} s  {r['images_per_s']:8.1f} img/s  {r['ratio']:.2f}x")
        print(f"  files identical in every run: {'yes' if len(digests) == 1 else 'NO'}")
        if args.json:
            print(json.dumps({"rows": rows, "identical": len(digests) == 1}, indent=2))
        return 0 if len(digests) == 1 else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
