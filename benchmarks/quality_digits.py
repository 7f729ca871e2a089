"""Sample quality on digits: train the default model for a fixed budget, then score samples.

Trains the default DCGAN (32x32, paper hyper-parameters) on scikit-learn's digits on the CPU
for --steps steps, draws 1,000 samples through the torch engine (eval mode, as every
engine runs it), and classifies them with a logistic regression trained on the real
labelled digits. Targets: at least 9 of the 10 classes each hold 5% or more of the
samples (no mode collapse), and the mean top-class probability is 0.8 or more (the
samples look like digits). Exit code 0 when both hold.

    python benchmarks/quality_digits.py                 # about 10 minutes on 2 cores
    python benchmarks/quality_digits.py --steps 300 --keep runs/quality
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.engines.torch_engine import TorchEngine
from dcgan_cli.latent.labelers.strokes import DigitClassifier
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.reporters import RichReporter
from dcgan_cli.training.trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=700, help="training steps (14 per epoch on digits)")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the run folder here instead of a temporary one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "quality-digits"
        epochs = -(-args.steps // 14)
        create_run(
            root,
            DCGANConfig(size=32, channels=1),
            TrainConfig(dataset="digits", epochs=epochs, max_steps=args.steps, seed=args.seed),
        )
        started = time.perf_counter()
        Trainer(root).run(RichReporter())
        train_seconds = time.perf_counter() - started

        classifier = DigitClassifier.fit()
        with TorchEngine(root, device="cpu") as engine:
            images = engine.generate(seeded_z(12345, args.samples, engine.config.nz, engine.config.prior))
        proba = classifier.predict_proba(images)
        classes = proba.argmax(axis=1)
        shares = np.bincount(classes, minlength=10) / len(classes)
        top = float(proba.max(axis=1).mean())
        classes_ok = int((shares >= 0.05).sum())
        result = {
            "steps": args.steps,
            "train_seconds": round(train_seconds, 1),
            "classifier_held_out_accuracy": round(classifier.held_out_accuracy, 4),
            "class_shares": [round(float(s), 3) for s in shares],
            "classes_with_5pct": classes_ok,
            "mean_top_class_probability": round(top, 4),
            "pass": classes_ok >= 9 and top >= 0.8,
        }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"trained {args.steps} steps in {result['train_seconds']} s; classifier held-out accuracy {result['classifier_held_out_accuracy']:.3f}"
        )
        print("class shares: " + "  ".join(f"{d}:{s:.1%}" for d, s in enumerate(shares)))
        print(f"classes holding >= 5% of samples: {classes_ok}/10 (target >= 9)")
        print(f"mean top-class probability: {top:.3f} (target >= 0.8)")
        print("PASS" if result["pass"] else "FAIL")
    raise SystemExit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()
