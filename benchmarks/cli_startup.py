"""How fast the command line answers: whole-process runs of `dcgan --help` and friends.

    python benchmarks/cli_startup.py [--runs 15]

Each command runs ``--runs`` times as a fresh process (`python -m dcgan_cli ...`); the
figure is the median wall time. Two references run in the same loop, interleaved, so a
busy machine slows all alike: a bare interpreter (`python -c pass`, the floor) and
`python -c "import torch"` (what every command paid before the CLI stopped importing
torch). Target: every command under 0.5 s on a 2-core machine.

A command that does run torch cannot answer in 0.5 s (importing torch alone takes longer);
what the CLI controls there is the garbage collector's work while torch and torchvision load
and again at exit (cli.entry). So `dcgan datasets digits` (torch, torchvision, scikit-learn)
also runs as the program does and through a plain ``main()`` with Python's default collector
settings, interleaved, and the ratio of the two is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "dcgan --help": ["--help"],
    "dcgan --version": ["--version"],
    "dcgan plugins": ["plugins"],
    "dcgan datasets": ["datasets"],
    "dcgan train --help": ["train", "--help"],
    "dcgan sample --help": ["sample", "--help"],
    "dcgan classify --help": ["classify", "--help"],
}
TARGET_S = 0.5
TORCH_COMMAND = ["datasets", "digits"]
PLAIN_MAIN = "import sys; from dcgan_cli.cli import main; main(sys.argv[1:])"


def run_once(argv: list[str], env: dict) -> float:
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "100", "DCGAN_QUIET": "1"}
    python = sys.executable
    cases = {
        "python -c pass (floor)": [python, "-c", "pass"],
        "python -c 'import torch' (before)": [python, "-c", "import torch"],
        **{name: [python, "-m", "dcgan_cli", *argv] for name, argv in COMMANDS.items()},
        "dcgan datasets digits (torch)": [python, "-m", "dcgan_cli", *TORCH_COMMAND],
        "  same, default GC (reference)": [python, "-c", PLAIN_MAIN, *TORCH_COMMAND],
    }
    for argv in cases.values():  # warm the page cache and write bytecode
        run_once(argv, env)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, argv in cases.items():
            times[name].append(run_once(argv, env))
    medians = {name: statistics.median(values) for name, values in times.items()}
    floor, torch_import = medians["python -c pass (floor)"], medians["python -c 'import torch' (before)"]
    print(f"median of {args.runs} whole-process runs, {os.cpu_count()} CPUs")
    print(f"{'command':38} {'median s':>9} {'vs import torch':>16} {'above floor s':>14}")
    worst = 0.0
    for name, median in medians.items():
        print(f"{name:38} {median:9.3f} {median / torch_import:15.2f}x {median - floor:14.3f}")
        if name.startswith("dcgan") and "(torch)" not in name:
            worst = max(worst, median)
    program, plain = medians["dcgan datasets digits (torch)"], medians["  same, default GC (reference)"]
    print(
        f"a command that runs torch: {program:.3f} s with the CLI's GC settings, {plain:.3f} s without: {program / plain:.2f}x"
    )
    verdict = "PASS" if worst < TARGET_S else "FAIL"
    print(f"slowest dcgan command: {worst:.3f} s (target < {TARGET_S} s): {verdict}")
    return 0 if worst < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
