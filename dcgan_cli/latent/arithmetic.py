"""Vector arithmetic on z (paper, section 6.3 and fig. 7): an expression over concepts to z vectors.

Each concept stands for the mean z of its first ``exemplars`` exemplars (3, as the paper);
the expression (expressions.py) is a linear combination of those means. Figures are in
arithmetic_figures.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.prior import rescale_to_norm, typical_norm
from dcgan_cli.latent.expressions import ExpressionError, check_names, parse_expression

# ---------------------------------------------------------------------------- vectors


@dataclass
class ArithmeticResult:
    """The vectors of one expression."""

    expression: str
    terms: dict[str, float]  # concept -> coefficient, in order of appearance, zeros dropped
    exemplars: dict[str, torch.Tensor]  # concept -> (K, nz) exemplars used
    means: dict[str, torch.Tensor]  # concept -> (nz,) mean z
    raw: torch.Tensor  # (nz,) the combination of the means
    result: torch.Tensor  # (nz,) after rescaling (== raw without it)
    variants: torch.Tensor  # (V, nz) result + uniform noise
    rescaled: bool
    target_norm: float | None

    def to_json(self) -> dict:
        return {
            "expression": self.expression,
            "terms": self.terms,
            "rescaled": self.rescaled,
            "target_norm": self.target_norm,
            "raw_norm": float(self.raw.norm()),
            "concepts": {
                name: {
                    "exemplars": len(self.exemplars[name]),
                    "mean": self.means[name].tolist(),
                    "mean_norm": float(self.means[name].norm()),
                }
                for name in self.terms
            },
            "result": self.result.tolist(),
            "variants": self.variants.tolist(),
        }


def evaluate(
    expression: str,
    concepts: dict[str, torch.Tensor],
    *,
    exemplars: int = 3,
    prior: str = "normal",
    rescale: bool | None = None,
    noise: float = 0.25,
    variants: int = 8,
    seed: int = 0,
) -> ArithmeticResult:
    """Parse ``expression`` and combine the mean z of each concept's first ``exemplars`` exemplars.

    ``concepts`` maps names to (K, nz) exemplar z, best first. ``rescale`` (default: on for a
    normal prior) moves the result, and each mean, to the prior's typical norm: a mean of a
    few draws is shorter than a draw, and sums of means drift off the shell the generator
    was trained on. ``variants`` copies get uniform noise in [-noise, noise] per dimension
    (the paper's 8 samples at scale 0.25).
    """
    from dcgan_cli.core.prior import derive_seed

    combination = parse_expression(expression)
    check_names(combination, expression, list(concepts))
    terms = {name: coef for name, coef in combination.terms.items() if coef != 0.0}
    if not terms:
        raise ExpressionError("the concepts cancel out: every coefficient is zero", expression, 1)
    if exemplars < 1:
        raise DcganError(f"--exemplars must be at least 1, got {exemplars}")
    if variants < 0 or noise < 0:
        raise DcganError("--variants and --noise must not be negative")
    rescale = (prior == "normal") if rescale is None else rescale
    target = typical_norm(next(iter(concepts.values())).shape[1], prior) if rescale else None
    used = {name: concepts[name][:exemplars].float() for name in terms}
    means = {name: z.mean(dim=0) for name, z in used.items()}
    raw = sum(coef * means[name] for name, coef in terms.items())
    result = raw
    if rescale:
        if float(raw.norm()) < 1e-6:
            raise ExpressionError(
                "the expression comes out as the zero vector, which has no direction to rescale", expression, 1
            )
        result = rescale_to_norm(raw, target)
        means = {name: rescale_to_norm(m, target) if float(m.norm()) > 1e-6 else m for name, m in means.items()}
    g = torch.Generator().manual_seed(derive_seed(seed, "arithmetic-noise"))
    noise_z = (torch.rand(variants, raw.shape[0], generator=g) * 2 - 1) * noise
    return ArithmeticResult(expression, terms, used, means, raw, result, result + noise_z, rescale, target)


def parse_sweep(text: str) -> tuple[float, float, int]:
    """ "A:B:N" -> (A, B, N): N coefficients from A to B."""
    parts = text.split(":")
    try:
        a, b, n = float(parts[0]), float(parts[1]), int(parts[2])
        if len(parts) != 3:
            raise ValueError
    except (ValueError, IndexError):
        raise DcganError(f"--sweep {text!r}: write START:STOP:COUNT, e.g. --sweep -2:2:9") from None
    if not (math.isfinite(a) and math.isfinite(b)) or n < 2 or n > 64:
        raise DcganError(f"--sweep {text!r}: START and STOP must be numbers and COUNT between 2 and 64")
    return a, b, n


def sweep_vectors(bases: torch.Tensor, direction: torch.Tensor, start: float, stop: float, count: int) -> torch.Tensor:
    """(R, nz) bases + t * direction for ``count`` t from start to stop: (R, count, nz)."""
    t = torch.linspace(start, stop, count)
    return bases[:, None, :] + t[None, :, None] * direction[None, None, :]
