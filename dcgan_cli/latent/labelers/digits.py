"""The built-in ``digits`` labeler: digit class from a classifier of the real digits, stroke thickness and slant.

On the 8x8 ``digits`` the class comes from a logistic regression on scikit-learn's digits;
on MNIST-style runs (``mnist``, ``mnist5k``) from a classifier trained on the run's own
labelled digits (classes.py, cached in the run), and thickness and slant are judged against
the run's real digits of each class.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcgan_cli.latent.labelers.base import ConceptRule, Labeler

if TYPE_CHECKING:
    import numpy as np
    import torch

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class DigitLabeler(Labeler):
    """Digit class from a classifier fitted on the run's real digits; stroke thickness and slant."""

    NAME = "digits"
    DESCRIPTION = "digit class (a classifier of the run's real labelled digits), stroke thickness and slant"
    DATASETS = ("digits", "mnist", "mnist5k")

    CALIBRATION_SAMPLES = 2000
    REAL_CALIBRATION_SAMPLES = 10000  # real digits measured for the stroke percentiles (a seeded subset)

    def prepare(self, progress=None) -> None:
        """Fit the classifier; measure strokes of real digits and, given the generator, of its samples.

        Thick and slanted are percentiles among digits of the same class drawn by the
        generator itself (real digits for a class it rarely draws): a generator may draw
        every stroke thicker than the real scans, and "thick seven" should still mean
        thicker than its usual seven.
        """
        import numpy as np

        from dcgan_cli.core.prior import derive_seed, seeded_z
        from dcgan_cli.latent.labelers.strokes import (
            StrokeCalibration,
            fitted_classifier,
            stroke_calibration,
            stroke_slant,
            stroke_thickness,
        )

        if self.context.dataset == "digits":  # scikit-learn's 8x8 scans: their own classifier and strokes
            self.classifier = fitted_classifier(32)
            self.calibration = stroke_calibration()
        else:
            self.classifier, self.calibration = self._learn_from_run_data(progress)
        generate = self.context.generate
        if generate is None:
            return
        m = self.context.model
        seed = derive_seed(0, "digits-labeler-calibration")
        thickness, slant, labels = [], [], []
        for start in range(0, self.CALIBRATION_SAMPLES, 256):
            images = generate(seeded_z(seed, min(256, self.CALIBRATION_SAMPLES - start), m.nz, m.prior, start=start))
            labels.append(self.classifier.predict_proba(images).argmax(axis=1))
            thickness.append(stroke_thickness(images).numpy())
            slant.append(stroke_slant(images).numpy())
        drawn = StrokeCalibration.measure(np.concatenate(thickness), np.concatenate(slant), np.concatenate(labels))
        self.calibration = self.calibration.replaced_where_enough(drawn)

    def _learn_from_run_data(self, progress):
        """(class classifier, stroke calibration) from the run's own labelled digits."""
        import numpy as np
        import torch

        from dcgan_cli.core.errors import DcganError
        from dcgan_cli.latent.labelers.classes import labelled_targets, load_run_dataset, run_class_classifier
        from dcgan_cli.latent.labelers.strokes import StrokeCalibration, stroke_slant, stroke_thickness

        dataset = load_run_dataset(self.context)
        targets, names = labelled_targets(dataset, self.context)
        if len(names) != len(DIGIT_NAMES):
            raise DcganError(
                f"the digits labeler needs the 10 digit classes; the run's dataset has {len(names)} "
                "classes: use --labeler classes"
            )
        classifier = run_class_classifier(self.context, progress, dataset)
        g = torch.Generator().manual_seed(0)
        rows = torch.randperm(len(dataset), generator=g)[: self.REAL_CALIBRATION_SAMPLES].sort().values
        thickness, slant, labels = [], [], []
        for start in range(0, len(rows), 512):
            chunk = rows[start : start + 512].tolist()
            items = [dataset[i] for i in chunk]
            kept = [(item[0], i) for item, i in zip(items, chunk) if item is not None]
            images = torch.stack([image for image, _ in kept])
            thickness.append(stroke_thickness(images).numpy())
            slant.append(stroke_slant(images).numpy())
            labels.append(targets[[i for _, i in kept]].numpy())
        return classifier, StrokeCalibration.measure(
            np.concatenate(thickness), np.concatenate(slant), np.concatenate(labels)
        )

    def attributes(self) -> list[str]:
        return [*DIGIT_NAMES, "thick", "slanted"]

    def measure(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        from dcgan_cli.latent.labelers.strokes import stroke_slant, stroke_thickness

        return {"thickness_px": stroke_thickness(images).numpy(), "slant_deg": stroke_slant(images).numpy()}

    def score(self, images: torch.Tensor) -> np.ndarray:
        import numpy as np

        proba = self.classifier.predict_proba(images)
        strokes = self.measure(images)
        thick = self.calibration.thickness_percentile(strokes["thickness_px"], proba)
        slanted = self.calibration.slant_percentile(strokes["slant_deg"], proba)
        return np.concatenate([proba, thick[:, None], slanted[:, None]], axis=1)

    def concepts(self) -> list[ConceptRule]:
        rules = [ConceptRule(d, present=(d,), typical=("thick", "slanted")) for d in DIGIT_NAMES]
        rules += [
            ConceptRule("thick", present=("thick",), typical=("slanted",)),
            ConceptRule("thin", absent=("thick",), typical=("slanted",)),
            ConceptRule("slanted", present=("slanted",), typical=("thick",)),
        ]
        for d in DIGIT_NAMES:
            rules += [
                ConceptRule(f"thick {d}", present=(d, "thick"), typical=("slanted",)),
                ConceptRule(f"thin {d}", present=(d,), absent=("thick",), typical=("slanted",)),
                ConceptRule(f"slanted {d}", present=(d, "slanted"), typical=("thick",)),
            ]
        return rules

    def describe(self) -> dict:
        trained_on = "scikit-learn's 8x8 digits" if self.context.dataset == "digits" else "the run's labelled digits"
        return {
            "classifier_held_out_accuracy": round(self.classifier.held_out_accuracy, 4),
            "classifier_trained_on": trained_on,
        }
