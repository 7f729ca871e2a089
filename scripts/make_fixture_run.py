"""Make the small trained digits run that tests use: tests/fixtures/digits-run/.

Trains the paper's DCGAN on digits at 32x32 with ngf = ndf = 32 (small enough to commit)
and keeps only what analyses need: config.json, generator.safetensors,
discriminator.safetensors, metrics.jsonl and the last sample grid.

    python scripts/make_fixture_run.py [--steps 700] [--out tests/fixtures/digits-run]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.reporters import RichReporter
from dcgan_cli.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "digits-run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "digits-run"
        create_run(
            run,
            DCGANConfig(size=32, channels=1, ngf=32, ndf=32),
            TrainConfig(
                dataset="digits", epochs=-(-args.steps // 14), max_steps=args.steps, seed=args.seed, device="cpu"
            ),
        )
        Trainer(run).run(RichReporter())
        if args.out.exists():
            shutil.rmtree(args.out)
        args.out.mkdir(parents=True)
        for name in ("config.json", "generator.safetensors", "discriminator.safetensors", "metrics.jsonl"):
            shutil.copy(run / name, args.out / name)
        last = sorted((run / "samples").iterdir())[-1]
        (args.out / "samples").mkdir()
        shutil.copy(last, args.out / "samples" / last.name)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
