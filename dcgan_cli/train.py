"""The training loop (paper, section 4), checkpoints and resume. No CLI code here.

The algorithm is the paper's: each step updates D on a real batch and a fake batch (kept
as separate batches, so BatchNorm normalises each on its own), then updates G with the
non-saturating loss -log D(G(z)) against the freshly updated D. Adam, lr 2e-4, beta1 0.5.

What makes the step faster than the common reference loop, without changing the maths:
- BCE with logits instead of Sigmoid + BCELoss (one fused, stable op);
- one backward for both halves of the D loss;
- D's parameters do not require gradients during the G update, so autograd skips D's
  weight gradients there (the reference computes them and throws them away);
- channels-last tensors (oneDNN and cuDNN convolutions prefer NHWC);
- in-place activations and multi-tensor (foreach) Adam.

Every random choice is derived from the run's seed and the step or epoch number (z of each
step, each epoch's batch order), so a resumed run is bitwise identical to one that never stopped.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dcgan_cli import __version__
from dcgan_cli.checkpoint import (
    RunPaths,
    atomic_output,
    atomic_write_json,
    atomic_write_text,
    check_state_dict,
    checkpoint_name,
    latest_checkpoint,
    read_run_config,
    read_safetensors,
    remove_stale_temporaries,
    save_checkpoint,
    save_discriminator,
    save_generator,
)
from dcgan_cli.data import DataOptions, EpochBatchSampler, load_dataset, make_loader
from dcgan_cli.engines import resolve_device
from dcgan_cli.errors import DcganError
from dcgan_cli.images import save_grid
from dcgan_cli.latent import derive_seed, sample_prior, seeded_z
from dcgan_cli.model import DCGANConfig, Discriminator, Generator, build_models, dataclass_from_json

FIXED_SAMPLES = 64  # images in each epoch's sample grid


@dataclass
class TrainConfig:
    """Training arguments; defaults are the paper's (section 4)."""

    dataset: str = "digits"
    data: str | None = None  # path to the data on disk, when the dataset needs one
    category: str | None = None  # LSUN category and the like
    split: str | None = None  # train, valid, test or all (datasets that have splits)
    epochs: int = 25
    max_steps: int | None = None  # stop after this many steps in all, whatever the epochs
    batch_size: int = 128
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    seed: int = 0
    device: str = "auto"
    workers: int = 0  # DataLoader worker processes
    checkpoint_every: int = 500  # steps between checkpoints (one is also written at each epoch end)
    keep_checkpoints: int = 3  # newest checkpoints kept on disk
    log_every: int = 10  # steps between lines of metrics.jsonl

    def validate(self, source: str = "training config") -> TrainConfig:
        def bad(what: str) -> DcganError:
            return DcganError(f"{source}: {what}")

        if not isinstance(self.dataset, str) or not self.dataset:
            raise bad("dataset must be a name")
        for name in ("epochs", "batch_size", "seed", "workers", "checkpoint_every", "keep_checkpoints", "log_every"):
            value = getattr(self, name)
            if type(value) is not int:
                raise bad(f"{name} must be a whole number, got {value!r}")
        if self.max_steps is not None and (type(self.max_steps) is not int or self.max_steps < 1):
            raise bad(f"max_steps must be a positive whole number, got {self.max_steps!r}")
        if self.epochs < 1:
            raise bad(f"epochs must be at least 1, got {self.epochs}")
        if not 1 <= self.batch_size <= 65536:
            raise bad(f"batch size must be between 1 and 65536, got {self.batch_size}")
        for name in ("lr", "beta1", "beta2"):
            value = getattr(self, name)
            if type(value) not in (int, float) or not math.isfinite(value):
                raise bad(f"{name} must be a number, got {value!r}")
        if not 0 < self.lr < 1:
            raise bad(f"learning rate must be between 0 and 1, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise bad("Adam betas must be in [0, 1)")
        if self.checkpoint_every < 1 or self.log_every < 1 or self.workers < 0 or self.keep_checkpoints < 1:
            raise bad("checkpoint_every, log_every and keep_checkpoints must be at least 1, workers at least 0")
        return self

    @classmethod
    def from_dict(cls, data: object, source: str = "training config") -> TrainConfig:
        return dataclass_from_json(cls, data, source, "training arguments").validate(source)


def versions() -> dict:
    return {"dcgan-cli": __version__, "torch": torch.__version__, "python": platform.python_version()}


def create_run(root: Path, model: DCGANConfig, train: TrainConfig, dataset_info: dict | None = None) -> RunPaths:
    """Make the run folder and write its config.json."""
    model.validate()
    train.validate()
    paths = RunPaths(Path(root))
    paths.root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        paths.config,
        {
            "format": "dcgan-cli/run",
            "format_version": 1,
            "run_id": paths.root.name,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "model": model.to_dict(),
            "train": asdict(train),
            "dataset": dataset_info or {"name": train.dataset},
            "versions": versions(),
        },
    )
    return paths


# ---------------------------------------------------------------------------- progress


class TrainingReporter:
    """Receives progress; the default one prints nothing."""

    def start(self, *, total_steps: int, done_steps: int, steps_per_epoch: int, batch_size: int) -> None: ...

    def step(self, step: int, epoch: int, metrics: dict | None) -> None: ...

    def note(self, text: str) -> None: ...

    def samples(self, step: int, epoch: int, path: Path) -> None:
        """An epoch's fixed-noise grid was written to ``path``."""

    def finish(self) -> None: ...


class RichReporter(TrainingReporter):
    """A rich progress bar with images/s, ETA, epoch and the latest losses."""

    def start(self, *, total_steps, done_steps, steps_per_epoch, batch_size):
        from rich.progress import TextColumn

        from dcgan_cli.progress import make_progress

        self.batch_size, self.steps_per_epoch = batch_size, steps_per_epoch
        self.progress = make_progress(TextColumn("{task.fields[losses]}"), unit="img")
        self.progress.start()
        self.task = self.progress.add_task(
            "epoch", total=total_steps * batch_size, completed=done_steps * batch_size, losses=""
        )

    def step(self, step, epoch, metrics):
        fields_ = {"description": f"epoch {epoch + 1}"}
        if metrics:
            fields_["losses"] = (
                f"D {metrics['loss_d']:.3f} G {metrics['loss_g']:.3f} "
                f"D(x) {metrics['d_x']:.2f} D(G(z)) {metrics['d_g_z']:.2f}"
            )
        self.progress.update(self.task, advance=self.batch_size, **fields_)

    def note(self, text):
        self.progress.console.print(text, highlight=False, soft_wrap=True)

    def finish(self):
        self.progress.stop()


# ---------------------------------------------------------------------------- helpers


class TrainingInterrupted(DcganError):
    """Ctrl-C during training: a checkpoint was written; exit code 130 as for SIGINT."""

    exit_code = 130


@torch.no_grad()
def standing_generator(netG: Generator, seed: int, batches: int = 8, batch_size: int = 128) -> Generator:
    """A copy of G in eval mode whose BatchNorm statistics are measured for its current weights.

    During training the running averages trail weights that keep changing; recomputing them
    over fresh batches of z ("standing statistics") makes eval-mode samples match what the
    generator draws in training mode, which is what every exported engine runs.
    """
    g = copy.deepcopy(netG)
    bns = [m for m in g.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    g.train()
    device = next(g.parameters()).device
    gen = torch.Generator().manual_seed(derive_seed(seed, "standing-stats"))
    for _ in range(batches):
        g(sample_prior(batch_size, g.config.nz, g.config.prior, gen).to(device))
    for m in bns:
        m.momentum = 0.1
    return g.eval()


def _optimizer_tensors(prefix: str, optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"{prefix}.{index}.{key}"] = value
    return tensors, state["param_groups"]


def _restore_optimizer(prefix: str, optimizer: torch.optim.Optimizer, tensors: dict, groups: list, source: str) -> None:
    params = [p for group in optimizer.param_groups for p in group["params"]]
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, index, name = key.split(".", 2)
        index = int(index)
        if index >= len(params):
            raise DcganError(f"checkpoint {source}: optimizer state for a parameter the model does not have")
        param = params[index]
        if value.shape == param.shape:
            # Match the parameter's memory layout (channels-last) so fused updates line up.
            value = torch.empty_like(param).copy_(value)
        state.setdefault(index, {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError, TypeError) as exc:
        raise DcganError(f"checkpoint {source}: optimizer state does not fit the model ({exc})") from None


def _module_state(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def _split(prefix: str, tensors: dict) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def write_loss_plot(metrics_path: Path, out: Path) -> None:
    """losses.png: G and D losses, and D(x) against D(G(z)), over the steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(steps, [r["loss_d"] for r in rows], label="D loss")
    ax1.plot(steps, [r["loss_g"] for r in rows], label="G loss")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(steps, [r["d_x"] for r in rows], label="D(x)")
    ax2.plot(steps, [r["d_g_z"] for r in rows], label="D(G(z))")
    ax2.set_ylabel("probability real")
    ax2.set_xlabel("step")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def gan_step(
    netG: Generator,
    netD: Discriminator,
    optG: torch.optim.Optimizer,
    optD: torch.optim.Optimizer,
    real: torch.Tensor,
    z: torch.Tensor,
) -> tuple[torch.Tensor, ...]:
    """One D update then one G update; returns (loss_d, loss_g, D(x), D(G(z)) before and after D's update)."""
    fake = netG(z)

    # (1) D: maximise log D(x) + log(1 - D(G(z))), real and fake as separate batches.
    optD.zero_grad(set_to_none=True)
    logit_real = netD(real)
    logit_fake = netD(fake.detach())
    loss_d = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
    loss_d = loss_d + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    loss_d.backward()  # one backward for both halves
    optD.step()

    # (2) G: maximise log D(G(z)) against the updated D. D is frozen: only gradients into G.
    netD.requires_grad_(False)
    optG.zero_grad(set_to_none=True)
    logit_gen = netD(fake)
    loss_g = F.binary_cross_entropy_with_logits(logit_gen, torch.ones_like(logit_gen))
    loss_g.backward()
    optG.step()
    netD.requires_grad_(True)
    with torch.no_grad():
        return (
            loss_d.detach(),
            loss_g.detach(),
            torch.sigmoid(logit_real).mean(),
            torch.sigmoid(logit_fake).mean(),
            torch.sigmoid(logit_gen).mean(),
        )


def make_optimizers(netG: Generator, netD: Discriminator, cfg: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for each network (paper: lr 2e-4, beta1 0.5), multi-tensor updates."""
    adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), foreach=True)
    return torch.optim.Adam(netG.parameters(), **adam), torch.optim.Adam(netD.parameters(), **adam)


# ---------------------------------------------------------------------------- the trainer


@dataclass
class TrainResult:
    run: Path
    step: int
    epoch: int
    images_per_second: float
    last_metrics: dict | None


class Trainer:
    """Trains the run in ``root`` from its newest checkpoint (or from scratch) to its epoch budget."""

    def __init__(self, root: Path | str, *, epochs: int | None = None, max_steps: int | None = None):
        self.paths = RunPaths(Path(root))
        config = read_run_config(self.paths.root)
        self.model_config = DCGANConfig.from_dict(config["model"], source=str(self.paths.config))
        self.cfg = TrainConfig.from_dict(config.get("train", {}), source=str(self.paths.config))
        if epochs is not None or max_steps is not None:
            if epochs is not None:
                self.cfg.epochs = epochs
            self.cfg.max_steps = max_steps
            self.cfg.validate()
            config["train"] = asdict(self.cfg)
            atomic_write_json(self.paths.config, config)
        self.device = resolve_device(self.cfg.device)

        dataset_options = DataOptions(
            data=Path(self.cfg.data) if self.cfg.data else None,
            size=self.model_config.size,
            channels=self.model_config.channels,
            category=self.cfg.category,
            workers=self.cfg.workers,
            split=self.cfg.split,
        )
        self.dataset, _ = load_dataset(self.cfg.dataset, dataset_options)
        self.steps_per_epoch = len(self.dataset) // self.cfg.batch_size
        if self.steps_per_epoch == 0:
            raise DcganError(
                f"dataset {self.cfg.dataset!r} has {len(self.dataset)} images, fewer than one batch of "
                f"{self.cfg.batch_size}; lower --batch-size"
            )
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        if self.cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, self.cfg.max_steps)

        # The global RNG only seeds DataLoader workers here; seed it so a run is repeatable.
        torch.manual_seed(derive_seed(self.cfg.seed, "global"))
        self.netG, self.netD = build_models(self.model_config, self.cfg.seed)
        self.netG.to(self.device, memory_format=torch.channels_last)
        self.netD.to(self.device, memory_format=torch.channels_last)
        self.optG, self.optD = make_optimizers(self.netG, self.netD, self.cfg)
        self.step = 0
        self.resumed_from: Path | None = None
        self.fixed_z = seeded_z(derive_seed(self.cfg.seed, "fixed"), FIXED_SAMPLES, self.model_config.nz, self.model_config.prior)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        for folder in (self.paths.root, self.paths.checkpoints, self.paths.samples):
            remove_stale_temporaries(folder)
        self._restore()

    # -- checkpoints

    def _restore(self) -> None:
        found = latest_checkpoint(self.paths.root)
        if found is None:
            return
        path, tensors, meta = found
        source = str(path)
        g_state, d_state = _split("G", tensors), _split("D", tensors)
        check_state_dict(self.netG, g_state, f"checkpoint {source} (generator)")
        check_state_dict(self.netD, d_state, f"checkpoint {source} (discriminator)")
        self.netG.load_state_dict(g_state)
        self.netD.load_state_dict(d_state)
        try:
            _restore_optimizer("optG", self.optG, tensors, meta["optG_groups"], source)
            _restore_optimizer("optD", self.optD, tensors, meta["optD_groups"], source)
            self.step = int(meta["step"])
        except (KeyError, TypeError, ValueError):
            raise DcganError(f"checkpoint {source} lacks its optimizer or step records; use an intact copy") from None
        if "rng.cpu" in tensors:
            torch.set_rng_state(tensors["rng.cpu"])
        if self.device.type == "cuda":
            for i in range(torch.cuda.device_count()):
                if f"rng.cuda.{i}" in tensors:
                    torch.cuda.set_rng_state(tensors[f"rng.cuda.{i}"], i)
        self.resumed_from = path
        self._truncate_metrics()
        if self._outputs_step() != self.step:
            # A crash between writing the checkpoint and its companions: write them again.
            self.save()

    def _outputs_step(self) -> int | None:
        """The step latest.json and generator.safetensors agree on, or None when they do not."""
        try:
            pointer = json.loads(self.paths.latest.read_text())
            _, metadata = read_safetensors(self.paths.generator)
            steps = {int(pointer["step"]), int(json.loads(metadata["meta"])["step"])}
        except (OSError, ValueError, KeyError, TypeError, DcganError):
            return None
        return steps.pop() if len(steps) == 1 else None

    def _truncate_metrics(self) -> None:
        """Drop metric lines written after the checkpoint we resume from (a crash leaves some)."""
        if not self.paths.metrics.exists():
            return
        kept = []
        for line in self.paths.metrics.read_text().splitlines():
            try:
                if json.loads(line)["step"] <= self.step:
                    kept.append(line)
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
        atomic_write_text(self.paths.metrics, "".join(line + "\n" for line in kept))

    def save(self, standing: Generator | None = None) -> Path:
        """Checkpoint (G, D, both Adam states, RNG), then generator.safetensors; all atomic."""
        for net in (self.netG, self.netD):
            for p in net.parameters():
                if not torch.isfinite(p).all():
                    raise DcganError(
                        f"training diverged before step {self.step}: the weights hold NaN or inf; "
                        "the last good checkpoint is kept. Start again with a lower --lr or another --seed."
                    )
        tensors = {**_module_state("G", self.netG), **_module_state("D", self.netD)}
        g_opt, g_groups = _optimizer_tensors("optG", self.optG)
        d_opt, d_groups = _optimizer_tensors("optD", self.optD)
        tensors.update(g_opt)
        tensors.update(d_opt)
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            for i in range(torch.cuda.device_count()):
                tensors[f"rng.cuda.{i}"] = torch.cuda.get_rng_state(i)
        meta = {
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "optG_groups": g_groups,
            "optD_groups": d_groups,
            "model": self.model_config.to_dict(),
            "versions": versions(),
        }
        path = save_checkpoint(self.paths.root, self.step, tensors, meta, keep_last=self.cfg.keep_checkpoints)
        if standing is None:
            standing = standing_generator(self.netG, self.cfg.seed, batch_size=self.cfg.batch_size)
        save_generator(self.paths.root, standing.state_dict(), self.model_config, {"step": self.step})
        save_discriminator(self.paths.root, self.netD.state_dict(), self.model_config, {"step": self.step})
        return path

    def write_samples(self, epoch: int, standing: Generator) -> Path:
        """samples/epoch-NNN.png: the fixed noise batch through the eval-mode generator."""
        with torch.no_grad():
            images = standing(self.fixed_z.to(self.device))
        path = self.paths.samples / f"epoch-{epoch:03d}.png"
        save_grid(images, path, nrow=8)
        return path

    # -- one step

    def train_step(self, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One step on a real batch, with this step's seeded z."""
        c = self.model_config
        gen = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "noise", self.step))
        z = sample_prior(real.shape[0], c.nz, c.prior, gen).to(self.device, non_blocking=True)
        return gan_step(self.netG, self.netD, self.optG, self.optD, real, z)

    # -- the loop

    def run(self, reporter: TrainingReporter | None = None) -> TrainResult:
        reporter = reporter or TrainingReporter()
        stop = threading.Event()
        previous_handler = None
        if threading.current_thread() is threading.main_thread():

            def on_sigint(signum, frame):
                if stop.is_set():  # a second Ctrl-C stops at once
                    signal.signal(signal.SIGINT, signal.default_int_handler)
                    raise KeyboardInterrupt
                stop.set()

            previous_handler = signal.signal(signal.SIGINT, on_sigint)
        try:
            return self._run(reporter, stop)
        finally:
            reporter.finish()
            if previous_handler is not None:
                signal.signal(signal.SIGINT, previous_handler)

    def _run(self, reporter: TrainingReporter, stop: threading.Event) -> TrainResult:
        cfg, spe = self.cfg, self.steps_per_epoch
        reporter.start(total_steps=self.total_steps, done_steps=self.step, steps_per_epoch=spe, batch_size=cfg.batch_size)
        if self.resumed_from is not None:
            reporter.note(f"Resuming from {self.resumed_from.name} (step {self.step}, epoch {self.step // spe + 1})")
        sums = torch.zeros(5, device=self.device)
        n_sums, last_metrics = 0, None
        started, images_done = time.perf_counter(), 0
        metrics_file = open(self.paths.metrics, "a", encoding="utf-8")
        try:
            while self.step < self.total_steps:
                epoch, start_batch = divmod(self.step, spe)
                sampler = EpochBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, epoch, start_batch)
                loader = make_loader(self.dataset, sampler, cfg.workers, pin_memory=self.device.type == "cuda")
                skipped = 0
                for batch in loader:
                    skipped += batch.skipped
                    real = batch.images.to(self.device, non_blocking=True, memory_format=torch.channels_last)
                    if real.shape[0] > 0:
                        sums += torch.stack(self.train_step(real))
                        n_sums += 1
                        images_done += real.shape[0]
                    self.step += 1
                    epoch_end, finished = self.step % spe == 0, self.step >= self.total_steps
                    metrics = None
                    if n_sums and (self.step % cfg.log_every == 0 or epoch_end or finished):
                        rate = images_done / (time.perf_counter() - started)
                        metrics = last_metrics = self._log(metrics_file, epoch, sums / n_sums, rate)
                        sums.zero_()
                        n_sums = 0
                    reporter.step(self.step, epoch, metrics)
                    if epoch_end or finished or stop.is_set():
                        break
                    if self.step % cfg.checkpoint_every == 0:
                        self.save()
                if skipped:
                    reporter.note(f"epoch {epoch + 1}: skipped {skipped} unreadable images")
                # Every way out of the batch loop (epoch end, budget reached, Ctrl-C) checkpoints.
                standing = standing_generator(self.netG, cfg.seed, batch_size=cfg.batch_size)
                if self.step % spe == 0:
                    sample_path = self.write_samples(self.step // spe, standing)
                    reporter.samples(self.step, self.step // spe, sample_path)
                    reporter.note(f"epoch {self.step // spe}/{math.ceil(self.total_steps / spe)}: samples in {sample_path}")
                path = self.save(standing)
                write_loss_plot(self.paths.metrics, self.paths.losses)
                if stop.is_set():
                    raise TrainingInterrupted(
                        f"interrupted at step {self.step}; checkpoint {path.name} saved. "
                        f"Resume with: dcgan train --resume {self.paths.root}"
                    )
        finally:
            metrics_file.close()
        rate = images_done / max(time.perf_counter() - started, 1e-9)
        return TrainResult(self.paths.root, self.step, self.step // spe, rate, last_metrics)

    def _log(self, f, epoch: int, means: torch.Tensor, rate: float) -> dict:
        loss_d, loss_g, d_x, d_g_z1, d_g_z2 = means.tolist()
        if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
            last = latest_checkpoint(self.paths.root)
            kept = f"the last good checkpoint {last[0].name} is kept" if last else "no checkpoint was written"
            raise DcganError(
                f"training diverged at step {self.step}: loss is not finite (D {loss_d}, G {loss_g}); {kept}. "
                "Start again with a lower --lr or another --seed."
            )
        row = {
            "step": self.step,
            "epoch": epoch + 1,
            "loss_d": loss_d,
            "loss_g": loss_g,
            "d_x": d_x,
            "d_g_z": d_g_z1,
            "d_g_z_after": d_g_z2,
            "images_per_s": rate,
            "time": time.time(),
        }
        f.write(json.dumps(row) + "\n")
        f.flush()
        return row


def train(root: Path | str, *, epochs: int | None = None, reporter: TrainingReporter | None = None) -> TrainResult:
    """Train (or resume) the run in ``root``."""
    return Trainer(root, epochs=epochs).run(reporter)


def checkpoint_path(root: Path, step: int) -> Path:
    return RunPaths(root).checkpoints / checkpoint_name(step)
