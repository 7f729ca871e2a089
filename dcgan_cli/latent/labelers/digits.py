"""The built-in ``digits`` labeler: digit class from a classifier of the real digits, stroke thickness and slant."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dcgan_cli.latent.labelers.base import ConceptRule, Labeler

if TYPE_CHECKING:
    import numpy as np
    import torch

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class DigitLabeler(Labeler):
    """Digit class from a classifier fitted on the real digits; stroke thickness and slant."""

    NAME = "digits"
    DESCRIPTION = "digit class (logistic regression on the real digits), stroke thickness and slant"
    DATASETS = ("digits", "mnist")

    CALIBRATION_SAMPLES = 2000

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

        self.classifier = fitted_classifier(32)
        self.calibration = stroke_calibration()
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
        return {"classifier_held_out_accuracy": round(self.classifier.held_out_accuracy, 4)}
