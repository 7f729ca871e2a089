"""Inverting the generator: for each image, a z whose generated image matches it.

1. Start from the best candidate: ``candidates`` seeded draws of the prior (one batch of
   images shared by every target) and, with the start encoder (invert_encoder.py), its
   guess for each image; whichever the loss below ranks first.
2. Refine z by Adam on that loss, projecting z after every step back to where the prior
   puts its mass: the shell ||z|| = sqrt(nz) for a normal prior (in 100 dimensions 95% of
   draws lie within 14% of it, and the generator has seen nothing else), the box
   [-1, 1]^nz for a uniform one. A z off the shell can match a picture the generator
   would never draw, and arithmetic and walks on such a z behave unlike on samples.
3. Keep, for each image, the z with the lowest loss seen.

The loss (``both``, the default) is the pixels' mean squared error plus
``feature_weight`` times the discriminator's features: for each of D's conv blocks, the
squared distance between the two images' feature maps over the target's squared norm
(so every block counts alike). Pixels alone reward blur: the mean of the ways a stroke
could run scores better than any one of them, and a stroke shifted by a pixel scores
worse than a wrong one. D's features are the representation the paper shows to carry
meaning (section 5.1: they classify digits and CIFAR-10): matching them matches strokes,
parts and texture, not each pixel. Features alone do not pin brightness and colour (D
was trained to tell real from fake, not to reconstruct), so the pixel term stays.
``benchmarks/invert_digits.py`` measures the three against each other. Without a
discriminator file the loss is pixels alone.

Each image is refined independently (Adam's steps are per coordinate, and the networks are
in eval mode): a batch inverts to the same z as its images one by one.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.prior import project_to_prior, seeded_z
from dcgan_cli.latent.invert_encoder import TRAIN_STEPS, saved_encoder, start_encoder

LOSSES = ("pixels", "features", "both")


@dataclass(frozen=True)
class InvertSettings:
    steps: int = 300  # Adam steps on z
    candidates: int = 512  # seeded draws of the prior scored as starting points
    lr: float = 0.05  # Adam's step size, decayed along a cosine to a tenth of it
    loss: str = "both"  # pixels, features (D's) or both
    feature_weight: float = 0.1  # of D's feature term in "both"
    # Also start from the start encoder's guess (trained once, kept in the run). None: when the
    # run has one for this generator, or trains one quickly (on a GPU; on a CPU it takes minutes).
    encoder: bool | None = None
    encoder_steps: int = TRAIN_STEPS  # training steps of the start encoder, when the run has none yet
    seed: int = 0  # of the candidates
    batch_size: int = 64  # images refined at once

    def check(self) -> InvertSettings:
        if self.loss not in LOSSES:
            raise DcganError(f"--loss {self.loss!r}: use one of {', '.join(LOSSES)}")
        if self.steps < 0 or self.candidates < 1 or self.batch_size < 1 or self.encoder_steps < 1:
            raise DcganError("--steps must be >= 0, --candidates and --batch-size >= 1")
        if not (self.lr > 0 and math.isfinite(self.lr)) or not (self.feature_weight >= 0):
            raise DcganError("--lr must be a positive number and the feature weight not negative")
        return self


@dataclass
class Inversion:
    """What inverting N images found, in the order given."""

    z: torch.Tensor  # (N, nz) the result, where the prior puts its mass
    start_z: torch.Tensor  # (N, nz) where refinement started
    targets: torch.Tensor  # (N, C, H, W) in [-1, 1]: the prepared images
    images: torch.Tensor  # (N, C, H, W) G(z)
    start_images: torch.Tensor  # (N, C, H, W) G(start_z)
    error: torch.Tensor  # (N,) mean absolute pixel difference on a 0..1 scale, G(z) vs the image
    start_error: torch.Tensor  # (N,) the same for the start
    loss: torch.Tensor  # (N,) the final value of the loss refined
    start_from: list[str]  # per image: "encoder" or "sample K of seed S"
    settings: InvertSettings
    loss_used: str  # the loss refined ("pixels" when no discriminator was there for "features"/"both")
    seconds: float
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict]:
        """Per image: its errors and where it started (for JSON records)."""
        return [
            {
                "error": round(float(self.error[i]), 6),
                "start_error": round(float(self.start_error[i]), 6),
                "loss": round(float(self.loss[i]), 6),
                "start": self.start_from[i],
                "z_norm": round(float(self.z[i].norm()), 4),
            }
            for i in range(len(self.z))
        ]

    def describe(self) -> dict:
        return {**asdict(self.settings), "loss": self.loss_used, "seconds": round(self.seconds, 3)}


def pixel_error(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute difference on a 0..1 scale (the scale of `dcgan walk`'s frame changes)."""
    return (images.float() - targets.float()).abs().flatten(1).mean(dim=1) / 2


class ReconstructionLoss:
    """Per-image loss between generated images and targets: pixels, D's features, or both."""

    def __init__(self, kind: str, netD=None, feature_weight: float = 0.1):
        if kind != "pixels" and netD is None:
            raise ValueError("the feature loss needs a discriminator")
        self.kind, self.netD, self.weight = kind, netD, feature_weight

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [] if self.kind == "pixels" else [f.flatten(1) for f in self.netD.features(images)]

    def __call__(self, images: torch.Tensor, targets: torch.Tensor, target_features: list[torch.Tensor]):
        """(N,) losses of images[i] against targets[i]."""
        total = torch.zeros(len(images), device=images.device)
        if self.kind != "features":
            total = total + (images - targets).square().flatten(1).mean(dim=1)
        if self.kind != "pixels":
            weight = 1.0 if self.kind == "features" else self.weight
            for got, want in zip(self.features(images), target_features):
                total = total + weight * (got - want).square().sum(1) / want.square().sum(1).clamp_min(1e-8) / len(
                    target_features
                )
        return total

    def pairwise(self, images: torch.Tensor, targets: torch.Tensor, target_features: list[torch.Tensor]):
        """(M, K) losses of each of K images against each of M targets, without M*K copies."""

        def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # (M, D), (K, D) -> (M, K)
            return (a.square().sum(1)[:, None] + b.square().sum(1)[None, :] - 2 * a @ b.T).clamp_min(0)

        total = torch.zeros(len(targets), len(images), device=images.device)
        if self.kind != "features":
            total = total + squared_distances(targets.flatten(1), images.flatten(1)) / targets[0].numel()
        if self.kind != "pixels":
            weight = 1.0 if self.kind == "features" else self.weight
            for got, want in zip(self.features(images), target_features):
                norm = want.square().sum(1).clamp_min(1e-8)[:, None]
                total = total + weight * squared_distances(want, got) / norm / len(target_features)
        return total


class Inverter:
    """Inverts images through one run's generator on one device (both networks in eval mode)."""

    def __init__(self, run_dir: Path, *, device="auto", settings: InvertSettings | None = None, progress=None):
        from dcgan_cli.core.devices import resolve_device
        from dcgan_cli.core.networks import load_discriminator, load_generator
        from dcgan_cli.core.runs import RunPaths

        self.settings = (settings or InvertSettings()).check()
        self.run_dir = Path(run_dir)
        self.device = resolve_device(device)
        self.netG = load_generator(self.run_dir, device=self.device).requires_grad_(False)
        self.config = self.netG.config
        self.notes: list[str] = []
        kind, netD = self.settings.loss, None
        if kind != "pixels":
            if RunPaths(self.run_dir).discriminator.is_file():
                netD = load_discriminator(self.run_dir, device=self.device).requires_grad_(False)
            else:
                self.notes.append(
                    f"no discriminator.safetensors in {self.run_dir}: the loss is pixels alone (--loss {kind} needs D)"
                )
                kind = "pixels"
        self.loss = ReconstructionLoss(kind, netD, self.settings.feature_weight)
        self.encoder = None
        use = self.settings.encoder
        if use is None:
            self.encoder = saved_encoder(self.run_dir, self.netG, self.device)
            use = self.encoder is None and self.device.type != "cpu"
            if self.encoder is None and not use:
                self.notes.append(
                    f"started from the best of {self.settings.candidates} draws alone: the run has no start encoder "
                    "yet; --encoder trains one (once per run; minutes on a CPU) for closer starts"
                )
        if use:
            self.encoder = start_encoder(
                self.run_dir, self.netG, self.device, steps=self.settings.encoder_steps, progress=progress
            )

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.netG(z.to(self.device)).float()

    def starts(self, targets: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """(M, nz) best starting z for each target, and where each came from."""
        s, c = self.settings, self.config
        feats = self.loss.features(targets)
        best = torch.full((len(targets),), math.inf, device=self.device)
        best_index = torch.zeros(len(targets), dtype=torch.long, device=self.device)
        start = torch.zeros(len(targets), c.nz, device=self.device)
        chunk = max(s.batch_size, 256)
        with torch.no_grad():
            for first in range(0, s.candidates, chunk):
                z = seeded_z(s.seed, min(chunk, s.candidates - first), c.nz, c.prior, first)
                z = project_to_prior(z, c.prior).to(self.device)
                value, index = self.loss.pairwise(self.netG(z), targets, feats).min(dim=1)
                better = value < best
                best = torch.where(better, value, best)
                best_index = torch.where(better, index + first, best_index)
                start = torch.where(better[:, None], z[index], start)
            start_from = [f"sample {int(i)} of seed {s.seed}" for i in best_index.cpu()]
            if self.encoder is not None:
                guess = project_to_prior(self.encoder(targets).float(), c.prior)
                guess_loss = self.loss(self.netG(guess), targets, feats)
                take = guess_loss < best
                start = torch.where(take[:, None], guess, start)
                start_from = ["encoder" if t else f for t, f in zip(take.tolist(), start_from)]
        return start, start_from

    def refine(self, start: torch.Tensor, targets: torch.Tensor, advance=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, loss) after Adam on z from ``start``, keeping each row's best z seen."""
        s, prior = self.settings, self.config.prior
        feats = [f.detach() for f in self.loss.features(targets)]
        z = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=s.lr)
        best_z = start.clone()
        with torch.no_grad():
            best = self.loss(self.netG(start), targets, feats)
        for step in range(s.steps):
            for group in optimizer.param_groups:  # cosine from lr down to lr / 10
                group["lr"] = s.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / max(s.steps, 1))))
            losses = self.loss(self.netG(z), targets, feats)
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # rows do not interact: each z gets its own image's gradient
            with torch.no_grad():
                better = losses < best
                best = torch.where(better, losses.detach(), best)
                best_z = torch.where(better[:, None], z.detach(), best_z)
                optimizer.step()
                z.copy_(project_to_prior(z, prior))
            if advance:
                advance(len(z))
        with torch.no_grad():
            final = self.loss(self.netG(z), targets, feats)
            better = final < best
            return torch.where(better[:, None], z.detach(), best_z), torch.where(better, final, best)

    def invert(self, targets: torch.Tensor, advance=None) -> Inversion:
        """Invert (N, C, H, W) images in [-1, 1] prepared for this model, ``batch_size`` at a time."""
        c = self.config
        if targets.ndim != 4 or tuple(targets.shape[1:]) != (c.channels, c.size, c.size):
            raise DcganError(
                f"images of shape {tuple(targets.shape[1:])} cannot be inverted by a model of "
                f"{c.channels}x{c.size}x{c.size} images"
            )
        if len(targets) == 0:
            raise DcganError("no images to invert; give at least one")
        started = time.perf_counter()
        zs, starts, losses, start_from = [], [], [], []
        for first in range(0, len(targets), self.settings.batch_size):
            batch = targets[first : first + self.settings.batch_size].to(self.device).float()
            start, came_from = self.starts(batch)
            z, loss = self.refine(start, batch, advance)
            zs.append(z)
            starts.append(start)
            losses.append(loss)
            start_from += came_from
        z, start = torch.cat(zs), torch.cat(starts)
        images, start_images = self.generate(z), self.generate(start)
        targets = targets.to(self.device).float()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return Inversion(
            z=z.cpu(),
            start_z=start.cpu(),
            targets=targets.cpu(),
            images=images.cpu(),
            start_images=start_images.cpu(),
            error=pixel_error(images, targets).cpu(),
            start_error=pixel_error(start_images, targets).cpu(),
            loss=torch.cat(losses).cpu(),
            start_from=start_from,
            settings=self.settings,
            loss_used=self.loss.kind,
            seconds=time.perf_counter() - started,
            notes=list(self.notes),
        )


def inversion_figure(inversion: Inversion, names: list[str], title: str):
    """A PIL picture: one row per image (original, start, result) with its name and errors."""
    from PIL import Image, ImageDraw

    from dcgan_cli.core.images import image_from_tensor
    from dcgan_cli.latent.arithmetic_figures import MARGIN, PAD, _font, _text_size, tile_size

    t = tile_size(inversion.targets.shape[-1])
    font = _font()
    headers = ("original", "start", "result")
    captions = [
        f"{name}   error {float(e):.3f} (start {float(s):.3f})"
        for name, e, s in zip(names, inversion.error, inversion.start_error)
    ]
    title_w, title_h = _text_size(title, font)
    label_h = _text_size("Ag", font)[1]
    caption_w = max(_text_size(c, font)[0] for c in captions)
    grid_left, grid_top = MARGIN, MARGIN + title_h + MARGIN + label_h + PAD
    rows = len(captions)
    width = max(grid_left + 3 * (t + PAD) + caption_w, MARGIN + title_w) + MARGIN
    canvas = Image.new("RGB", (width, grid_top + rows * (t + PAD) - PAD + MARGIN), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((MARGIN, MARGIN), title, fill="black", font=font)
    for col, header in enumerate(headers):
        left = grid_left + col * (t + PAD)
        draw.text(
            (left + (t - _text_size(header, font)[0]) // 2, grid_top - PAD - label_h), header, fill="black", font=font
        )
    for row, caption in enumerate(captions):
        top = grid_top + row * (t + PAD)
        for col, images in enumerate((inversion.targets, inversion.start_images, inversion.images)):
            picture = image_from_tensor(images[row]).convert("RGB").resize((t, t), Image.NEAREST)
            canvas.paste(picture, (grid_left + col * (t + PAD), top))
        draw.text((grid_left + 3 * (t + PAD) + PAD, top + (t - label_h) // 2), caption, fill="black", font=font)
    return canvas
