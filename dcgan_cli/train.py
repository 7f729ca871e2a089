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
- in-place activations and fused Adam (one pass over each parameter).
Options that change how the maths runs, not what it is: ``precision`` (bf16 or fp16
autocast, with a gradient scaler for fp16), ``channels_last`` and ``compile``.

Every random choice is derived from the run's seed and the step or epoch number (z of each
step, each epoch's batch order), so a resumed run is bitwise identical to one that never stopped.

Several processes (torchrun, see distributed.py) train data-parallel: ``batch_size`` stays
the global batch, each rank takes an equal slice of it and of its z, and DDP averages the
gradients, so the sequence of global batches does not depend on the number of processes
and a run resumes with another one. BatchNorm normalises each rank's slice on its own
(per-replica statistics) unless ``sync_bn`` asks for statistics over the global batch.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import platform
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from dcgan_cli import __version__
from dcgan_cli import distributed
from dcgan_cli.checkpoint import (
    RunPaths,
    atomic_output,
    atomic_write_json,
    atomic_write_text,
    check_state_dict,
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    read_run_config,
    read_safetensors,
    remove_stale_temporaries,
    safetensors_bytes,
    save_best_generator,
    save_checkpoint,
    save_discriminator,
    save_generator,
)
from dcgan_cli.cpu_convolutions import use_matmul_convolutions
from dcgan_cli.data import DataOptions, EpochBatchSampler, load_dataset, make_loader
from dcgan_cli.distributed import SINGLE, DistContext
from dcgan_cli.engines import resolve_device
from dcgan_cli.errors import DcganError
from dcgan_cli.images import save_grid
from dcgan_cli.latent import derive_seed, sample_prior, seeded_z
from dcgan_cli.model import DCGANConfig, Discriminator, Generator, build_models, dataclass_from_json
from dcgan_cli.quality import QUALITY_SAMPLES, QualityProbe, QualityRecord, QualityTracker

FIXED_SAMPLES = 64  # images in each epoch's sample grid
# Autocast dtype of each --precision; fp32 runs without autocast.
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    precision: str = "fp32"  # fp32, or bf16/fp16 autocast (fp16 with a gradient scaler)
    channels_last: bool = True  # NHWC tensors and weights, which cuDNN and oneDNN convolve fastest
    compile: bool = False  # torch.compile G and D
    sync_bn: bool = False  # several processes: BatchNorm statistics over the global batch, not each slice

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
        if self.precision not in PRECISIONS:
            raise bad(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("channels_last", "compile", "sync_bn"):
            if type(getattr(self, name)) is not bool:
                raise bad(f"{name} must be true or false, got {getattr(self, name)!r}")
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
    g = distributed.to_plain_batchnorm(copy.deepcopy(netG))  # one process measures these: no syncing
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
    *,
    autocast_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
) -> tuple[torch.Tensor, ...]:
    """One D update then one G update; returns (loss_d, loss_g, D(x), D(G(z)) before and after D's update).

    ``netG`` and ``netD`` may be compiled and/or wrapped in DistributedDataParallel. The
    forwards run under autocast to ``autocast_dtype`` when given (losses in fp32), and
    ``scaler`` scales both losses for fp16.
    """
    amp = torch.autocast(real.device.type, dtype=autocast_dtype) if autocast_dtype is not None else contextlib.nullcontext()
    with amp:
        fake = netG(z)

    # (1) D: maximise log D(x) + log(1 - D(G(z))), real and fake as separate batches.
    optD.zero_grad(set_to_none=True)
    with amp:
        logit_real = netD(real)
        logit_fake = netD(fake.detach())
        loss_d = F.binary_cross_entropy_with_logits(logit_real, torch.ones_like(logit_real))
        loss_d = loss_d + F.binary_cross_entropy_with_logits(logit_fake, torch.zeros_like(logit_fake))
    _backward_and_step(loss_d, optD, scaler)  # one backward for both halves

    # (2) G: maximise log D(G(z)) against the updated D. D is frozen: only gradients into G.
    # DDP's wrapper is bypassed here: no gradient of D's is made, so none needs averaging.
    frozen_d = distributed.unwrap(netD)
    frozen_d.requires_grad_(False)
    optG.zero_grad(set_to_none=True)
    with amp:
        logit_gen = frozen_d(fake)
        loss_g = F.binary_cross_entropy_with_logits(logit_gen, torch.ones_like(logit_gen))
    _backward_and_step(loss_g, optG, scaler)
    if scaler is not None:
        scaler.update()  # once per iteration, after both optimizers stepped
    frozen_d.requires_grad_(True)
    with torch.no_grad():
        return (
            loss_d.detach().float(),
            loss_g.detach().float(),
            torch.sigmoid(logit_real.float()).mean(),
            torch.sigmoid(logit_fake.float()).mean(),
            torch.sigmoid(logit_gen.float()).mean(),
        )


def _backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None) -> None:
    if scaler is None:
        loss.backward()
        optimizer.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optimizer)  # unscales, and skips the step when a gradient overflowed


def place_models(netG: Generator, netD: Discriminator, device: torch.device, channels_last: bool = True) -> None:
    """Move G and D to ``device`` in the memory format and with the convolutions the step runs fastest."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    netG.to(device, memory_format=memory_format)
    netD.to(device, memory_format=memory_format)
    if device.type == "cpu":
        use_matmul_convolutions(netG, netD)


def make_optimizers(netG: Generator, netD: Discriminator, cfg: TrainConfig) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for each network (paper: lr 2e-4, beta1 0.5), fused: one pass over each parameter."""
    adam = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    return torch.optim.Adam(netG.parameters(), **adam), torch.optim.Adam(netD.parameters(), **adam)


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run, in one line."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise DcganError(f"{torch.cuda.get_device_name(device)} has no bf16 support; use --precision fp16 (or fp32)")


def parameter_digest(*modules: torch.nn.Module) -> bytes:
    """sha256 over the parameters of ``modules`` (float32 bytes, in named_parameters order).

    BatchNorm running statistics are buffers, not parameters: each replica keeps its own.
    Replicas of a data-parallel run hold identical parameters, so their digests agree.
    """
    h = hashlib.sha256()
    for module in modules:
        for _, p in module.named_parameters():
            h.update(p.detach().float().contiguous().cpu().numpy().tobytes())
    return h.digest()


def step_noise(seed: int, step: int, batch_size: int, nz: int, prior: str, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """z of one step for rank ``rank``: its slice of the global batch's z, seeded by (seed, step)."""
    gen = torch.Generator().manual_seed(derive_seed(seed, "noise", step))
    z = sample_prior(batch_size, nz, prior, gen)
    per_rank = batch_size // world_size
    return z[rank * per_rank : (rank + 1) * per_rank]


# ---------------------------------------------------------------------------- the trainer


@dataclass
class TrainResult:
    run: Path
    step: int
    epoch: int
    images_per_second: float
    last_metrics: dict | None


class Trainer:
    """Trains the run in ``root`` from its newest checkpoint (or from scratch) to its epoch budget.

    ``epochs``, ``max_steps`` and ``overrides`` (TrainConfig fields such as ``precision``)
    change the run's config for this and later sessions. ``dist`` is this process's place
    in a data-parallel job (``distributed.init_distributed()``): rank 0 alone reads and
    writes the run folder, the other ranks receive what they need from it.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        epochs: int | None = None,
        max_steps: int | None = None,
        overrides: dict | None = None,
        dist: DistContext | None = None,
    ):
        self.dist = dist or SINGLE
        self.paths = RunPaths(Path(root))
        self.dataset = None
        self._changed_config: dict | None = None
        # Rank 0 reads the config and checks it (and loads the data first), so a problem is one
        # message from one process; the other ranks get the config or the error from it.
        config = self.dist.run_on_main(lambda: self._prepare(epochs, max_steps, overrides or {}))
        self.model_config = DCGANConfig.from_dict(config["model"], source=str(self.paths.config))
        self.cfg = TrainConfig.from_dict(config["train"], source=str(self.paths.config))
        self.device = distributed.device_for(self.dist, resolve_device(self.cfg.device))
        if self.dataset is None:
            self.dataset = self._load_dataset()
        self.per_rank_batch = self.cfg.batch_size // self.dist.world_size
        self.steps_per_epoch = len(self.dataset) // self.cfg.batch_size
        self.total_steps = self.cfg.epochs * self.steps_per_epoch
        if self.cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, self.cfg.max_steps)

        # The global RNG only seeds DataLoader workers here; seed it so a run is repeatable.
        torch.manual_seed(derive_seed(self.cfg.seed, "global"))
        self.memory_format = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        self.netG, self.netD = build_models(self.model_config, self.cfg.seed)
        if self.cfg.sync_bn and self.dist.is_distributed:
            distributed.to_sync_batchnorm(self.netG)
            distributed.to_sync_batchnorm(self.netD)
        place_models(self.netG, self.netD, self.device, self.cfg.channels_last)
        self.optG, self.optD = make_optimizers(self.netG, self.netD, self.cfg)
        self.autocast_dtype = PRECISIONS[self.cfg.precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if self.cfg.precision == "fp16" else None
        self.step = 0
        self.resumed_from: Path | None = None
        self.resumed_world_size = self.dist.world_size
        self.replicas_identical = True
        self.fixed_z = seeded_z(derive_seed(self.cfg.seed, "fixed"), FIXED_SAMPLES, self.model_config.nz, self.model_config.prior)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.dist.is_main:
            for folder in (self.paths.root, self.paths.checkpoints, self.paths.samples):
                remove_stale_temporaries(folder)
        self.quality_probe: QualityProbe | None = None  # rank 0 builds it at the first epoch end
        self.quality = QualityTracker()
        try:
            self._restore()
        except DcganError as exc:
            raise self._error(exc) from None
        if self.dist.is_main and self._changed_config is not None:
            atomic_write_json(self.paths.config, self._changed_config)
        # What the step calls: the same modules, compiled and/or wrapped for data parallelism.
        # DDP goes outside the compiled module, so the G update can reach the compiled D alone.
        self.stepG, self.stepD = self.netG, self.netD
        if self.cfg.compile:
            self.stepG, self.stepD = torch.compile(self.netG), torch.compile(self.netD)
        if self.dist.is_distributed:
            self.stepG = distributed.data_parallel(self.stepG, self.device)
            self.stepD = distributed.data_parallel(self.stepD, self.device)

    def _prepare(self, epochs: int | None, max_steps: int | None, overrides: dict) -> dict:
        """Rank 0: the run config with this session's changes (written back), checked; the data loaded."""
        config = read_run_config(self.paths.root)
        if self.paths.generator.exists() and not list_checkpoints(self.paths.root):
            # A run made by `dcgan forget`, or copied without checkpoints/: training would start
            # from scratch and replace the generator the user has.
            raise DcganError(
                f"{self.paths.root} has a generator but no training checkpoint to resume from "
                "(runs made by `dcgan forget`, or copied without checkpoints/, cannot train further); "
                "its generator is left as it is. Train a new run with `dcgan train --out NEW`."
            )
        cfg = TrainConfig.from_dict(config.get("train", {}), source=str(self.paths.config))
        changes = dict(overrides)
        if epochs is not None or max_steps is not None:
            changes["max_steps"] = max_steps
            if epochs is not None:
                changes["epochs"] = epochs
        changed = {k: v for k, v in changes.items() if getattr(cfg, k) != v}
        for key, value in changed.items():
            setattr(cfg, key, value)
        cfg.validate("options")
        world = self.dist.world_size
        distributed.check_batch_split(cfg.batch_size, world)
        device = distributed.device_for(self.dist, resolve_device(cfg.device))
        check_precision(cfg.precision, device)
        if cfg.sync_bn:
            distributed.check_sync_batchnorm(device, world)
        config["train"] = asdict(cfg)
        # Written once the checkpoint has been restored: a refused resume changes nothing.
        self._changed_config = config if changed else None
        self.model_config, self.cfg = DCGANConfig.from_dict(config["model"], source=str(self.paths.config)), cfg
        self.dataset = self._load_dataset()
        return config

    def _load_dataset(self):
        cfg = self.cfg
        dataset_options = DataOptions(
            data=Path(cfg.data) if cfg.data else None,
            size=self.model_config.size,
            channels=self.model_config.channels,
            category=cfg.category,
            workers=cfg.workers,
            split=cfg.split,
        )
        dataset, _ = load_dataset(cfg.dataset, dataset_options)
        if len(dataset) < cfg.batch_size:
            raise DcganError(
                f"dataset {cfg.dataset!r} has {len(dataset)} images, fewer than one batch of "
                f"{cfg.batch_size}; lower --batch-size"
            )
        return dataset

    def _error(self, error: DcganError) -> DcganError:
        """``error`` on rank 0; on the others, the same exit code without a second copy of the message."""
        if self.dist.is_main:
            return error
        return distributed.ErrorOnMain(str(error), exit_code=error.exit_code)

    # -- checkpoints

    def _latest(self) -> tuple[Path, dict, dict] | None:
        """The newest checkpoint on every rank: rank 0 reads it, the others receive it over the group."""
        found = None

        def read() -> str | None:
            nonlocal found
            found = latest_checkpoint(self.paths.root)
            return None if found is None else str(found[0])

        path = self.dist.run_on_main(read)
        if path is None or not self.dist.is_distributed:
            return found
        from safetensors.torch import load as safetensors_load

        meta = self.dist.broadcast_json(found[2] if found else None)
        data = self.dist.broadcast_bytes(safetensors_bytes(found[1], {}) if found else None)
        return Path(path), (found[1] if found else safetensors_load(data)), meta

    def _restore(self) -> None:
        found = self._latest()
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
        if self.scaler is not None and isinstance(meta.get("scaler"), dict):
            self.scaler.load_state_dict(meta["scaler"])
        if "rng.cpu" in tensors:
            torch.set_rng_state(tensors["rng.cpu"])
        cuda_rng = f"rng.cuda.{self.device.index or 0}"
        if self.device.type == "cuda" and cuda_rng in tensors:
            torch.cuda.set_rng_state(tensors[cuda_rng], self.device)
        self.resumed_from = path
        self.resumed_world_size = int(meta.get("world_size", 1))
        if self.dist.is_main:
            self._truncate_metrics()
            self.quality = QualityTracker(self._quality_history())
        # A crash between writing the checkpoint and its companions: write them again (all ranks
        # take part in save(), rank 0 decides).
        if self.dist.run_on_main(lambda: self._outputs_step() != self.step):
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
        """Drop metric and quality lines written after the checkpoint we resume from (a crash leaves some)."""
        for path in (self.paths.metrics, self.paths.quality):
            if not path.exists():
                continue
            kept = []
            for line in path.read_text().splitlines():
                try:
                    if json.loads(line)["step"] <= self.step:
                        kept.append(line)
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            atomic_write_text(path, "".join(line + "\n" for line in kept))

    def _quality_history(self) -> list[QualityRecord]:
        records = []
        if self.paths.quality.exists():
            for line in self.paths.quality.read_text().splitlines():
                try:
                    records.append(QualityRecord(**json.loads(line)))
                except (json.JSONDecodeError, TypeError):
                    continue
        return records

    # -- quality: best checkpoint and collapse warning (dcgan_cli.quality)

    def _real_probe(self) -> QualityProbe | None:
        """Thumbnails of QUALITY_SAMPLES real images chosen by the seed; None without two readable ones."""
        from dcgan_cli.data import collate_images

        gen = torch.Generator().manual_seed(derive_seed(self.cfg.seed, "quality-real"))
        picked = torch.randperm(len(self.dataset), generator=gen)[:QUALITY_SAMPLES].tolist()
        real = collate_images([self.dataset[i] for i in picked]).images
        return QualityProbe.from_images(real) if real.shape[0] >= 2 else None

    def check_quality(self, standing: Generator, reporter: TrainingReporter) -> bool:
        """Rank 0 at an epoch end: score the samples, log them, warn of collapse; True for a new best."""
        if self.quality_probe is None:
            self.quality_probe = self._real_probe()
            if self.quality_probe is None:
                return False
        c = self.model_config
        z = seeded_z(derive_seed(self.cfg.seed, "quality"), QUALITY_SAMPLES, c.nz, c.prior)
        with torch.no_grad():
            samples = torch.cat([standing(chunk.to(self.device)).float().cpu() for chunk in z.split(128)])
        record = QualityRecord(step=self.step, epoch=self.step // self.steps_per_epoch, **self.quality_probe.score(samples))
        with open(self.paths.quality, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(record)) + "\n")
        is_best, warning = self.quality.add(record)
        if warning:
            reporter.note(warning)
        return is_best

    def mark_best(self, standing: Generator) -> None:
        """best.json and generator-best.safetensors for the checkpoint just written (the new best)."""
        best = self.quality.best
        save_best_generator(self.paths.root, standing.state_dict(), self.model_config, {"step": best.step})
        atomic_write_json(
            self.paths.best,
            {
                **asdict(best),
                "checkpoint": f"checkpoints/{checkpoint_name(best.step)}",
                "generator": self.paths.best_generator.name,
                "signal": "thumb_fd: Frechet distance of 8x8 thumbnails to real images (lower is better)",
            },
        )

    def save(self, standing: Generator | None = None) -> Path | None:
        """Checkpoint (G, D, both Adam states, RNG), then generator.safetensors; all atomic.

        Every rank calls it (they compare their weights); rank 0 writes and returns the path.
        """
        for net in (self.netG, self.netD):
            for p in net.parameters():
                if not torch.isfinite(p).all():
                    raise self._error(
                        DcganError(
                            f"training diverged before step {self.step}: the weights hold NaN or inf; "
                            "the last good checkpoint is kept. Start again with a lower --lr or another --seed."
                        )
                    )
        digests = self.dist.all_gather_bytes(parameter_digest(self.netG, self.netD))
        self.replicas_identical = len(set(digests)) == 1
        if not self.dist.is_main:
            return None
        tensors = {**_module_state("G", self.netG), **_module_state("D", self.netD)}
        g_opt, g_groups = _optimizer_tensors("optG", self.optG)
        d_opt, d_groups = _optimizer_tensors("optD", self.optD)
        tensors.update(g_opt)
        tensors.update(d_opt)
        tensors["rng.cpu"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors[f"rng.cuda.{self.device.index or 0}"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            "optG_groups": g_groups,
            "optD_groups": d_groups,
            "model": self.model_config.to_dict(),
            "world_size": self.dist.world_size,
            "per_rank_batch": self.per_rank_batch,
            # sha256 of each replica's parameters (parameter_digest), in rank order.
            "replica_sha256": [d.hex() for d in digests],
            "precision": self.cfg.precision,
            "versions": versions(),
        }
        if self.scaler is not None:
            meta["scaler"] = self.scaler.state_dict()
        best = self.quality.best
        keep = {best.step} if best is not None else set()  # the best epoch's checkpoint outlives pruning
        path = save_checkpoint(self.paths.root, self.step, tensors, meta, keep_last=self.cfg.keep_checkpoints, keep=keep)
        if standing is None:
            standing = standing_generator(self.netG, self.cfg.seed, batch_size=self.cfg.batch_size)
        save_generator(self.paths.root, standing.state_dict(), self.model_config, {"step": self.step})
        # SyncBatchNorm and BatchNorm2d share their state dict names: the files load either way.
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
        """One step on this rank's slice of a global batch, with its slice of this step's seeded z."""
        c = self.model_config
        z = step_noise(self.cfg.seed, self.step, self.cfg.batch_size, c.nz, c.prior, self.dist.rank, self.dist.world_size)
        z = z[: real.shape[0]].to(self.device, non_blocking=True)  # fewer when unreadable images were dropped
        return gan_step(
            self.stepG, self.stepD, self.optG, self.optD, real, z, autocast_dtype=self.autocast_dtype, scaler=self.scaler
        )

    def describe(self) -> str:
        """One line on how this session trains: processes, batch split, learning rate, BatchNorm, precision."""
        cfg, world = self.cfg, self.dist.world_size
        parts = []
        if world > 1:
            backend = "NCCL" if self.dist.has_nccl and self.device.type == "cuda" else "gloo"
            parts.append(
                f"{world} processes (DDP over {backend}): batch {cfg.batch_size} = {world} x {self.per_rank_batch}, "
                f"lr {cfg.lr:g} (the global batch is --batch-size, so the lr is unchanged); "
                + (
                    "BatchNorm over the global batch (--sync-bn)"
                    if cfg.sync_bn
                    else f"BatchNorm per process over {self.per_rank_batch} images"
                )
            )
        else:
            parts.append(f"batch {cfg.batch_size}, lr {cfg.lr:g}")
        parts.append(f"{cfg.precision}{', channels-last' if cfg.channels_last else ''}{', compiled' if cfg.compile else ''}")
        return "; ".join(parts)

    # -- the loop

    def run(self, reporter: TrainingReporter | None = None) -> TrainResult:
        if not self.dist.is_main or reporter is None:
            reporter = TrainingReporter()  # progress is rank 0's to show
        stop = threading.Event()
        try:
            with distributed.graceful_stop(stop, self.dist):
                return self._run(reporter, stop)
        finally:
            reporter.finish()

    def _run(self, reporter: TrainingReporter, stop: threading.Event) -> TrainResult:
        cfg, spe, main = self.cfg, self.steps_per_epoch, self.dist.is_main
        reporter.start(total_steps=self.total_steps, done_steps=self.step, steps_per_epoch=spe, batch_size=cfg.batch_size)
        if self.resumed_from is not None:
            processes = ""
            if self.resumed_world_size != self.dist.world_size:
                processes = f", written by {self.resumed_world_size} processes, continued by {self.dist.world_size}"
            reporter.note(f"Resuming from {self.resumed_from.name} (step {self.step}, epoch {self.step // spe + 1}{processes})")
        sums = torch.zeros(5, device=self.device)
        n_sums, last_metrics = 0, None
        started, images_done = time.perf_counter(), 0
        agreement = distributed.StopAgreement(self.dist)
        stop_now = False
        metrics_file = open(self.paths.metrics, "a", encoding="utf-8") if main else None
        try:
            while self.step < self.total_steps:
                epoch, start_batch = divmod(self.step, spe)
                sampler = EpochBatchSampler(
                    len(self.dataset), cfg.batch_size, cfg.seed, epoch, start_batch, self.dist.rank, self.dist.world_size
                )
                loader = make_loader(self.dataset, sampler, cfg.workers, pin_memory=self.device.type == "cuda")
                skipped = 0
                for batch in loader:
                    skipped += batch.skipped
                    real = batch.images.to(self.device, non_blocking=True, memory_format=self.memory_format)
                    if real.shape[0] > 0:
                        sums += torch.stack(self.train_step(real))
                        n_sums += 1
                        images_done += real.shape[0] * self.dist.world_size
                    elif self.dist.is_distributed:
                        # The other ranks are inside DDP's collectives and would wait for ever.
                        raise DcganError(
                            f"every image of rank {self.dist.rank}'s slice of batch {self.step + 1} is unreadable; "
                            "remove the broken files from the dataset and resume"
                        )
                    self.step += 1
                    epoch_end, finished = self.step % spe == 0, self.step >= self.total_steps
                    stop_now = agreement.poll(stop.is_set())
                    metrics = None
                    if n_sums and (self.step % cfg.log_every == 0 or epoch_end or finished):
                        rate = images_done / (time.perf_counter() - started)
                        means = self.dist.all_reduce_mean_(sums / n_sums)
                        metrics = last_metrics = self._log(metrics_file, epoch, means, rate)
                        sums.zero_()
                        n_sums = 0
                    reporter.step(self.step, epoch, metrics)
                    if epoch_end or finished or stop_now:
                        break
                    if self.step % cfg.checkpoint_every == 0:
                        self.save()
                if skipped:
                    reporter.note(f"epoch {epoch + 1}: skipped {skipped} unreadable images")
                # Every way out of the batch loop (epoch end, budget reached, Ctrl-C) checkpoints.
                standing = standing_generator(self.netG, cfg.seed, batch_size=cfg.batch_size) if main else None
                new_best = False
                if main and self.step % spe == 0:
                    sample_path = self.write_samples(self.step // spe, standing)
                    reporter.samples(self.step, self.step // spe, sample_path)
                    reporter.note(f"epoch {self.step // spe}/{math.ceil(self.total_steps / spe)}: samples in {sample_path}")
                    new_best = self.check_quality(standing, reporter)
                path = self.save(standing)
                if new_best:
                    self.mark_best(standing)
                if not self.replicas_identical:
                    reporter.note(f"Warning: the replicas' weights differ at step {self.step} (see replica_sha256 in the checkpoint)")
                if main:
                    write_loss_plot(self.paths.metrics, self.paths.losses)
                if stop_now:
                    raise self._error(
                        TrainingInterrupted(
                            f"interrupted at step {self.step}; checkpoint {path.name if path else ''} saved. "
                            f"Resume with: dcgan train --resume {self.paths.root}"
                        )
                    )
        finally:
            agreement.close()
            if metrics_file is not None:
                metrics_file.close()
        self.dist.barrier()  # every rank leaves with rank 0's files written
        rate = images_done / max(time.perf_counter() - started, 1e-9)
        return TrainResult(self.paths.root, self.step, self.step // spe, rate, last_metrics)

    def _log(self, f, epoch: int, means: torch.Tensor, rate: float) -> dict:
        loss_d, loss_g, d_x, d_g_z1, d_g_z2 = means.tolist()
        if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
            last = latest_checkpoint(self.paths.root) if self.dist.is_main else None
            kept = f"the last good checkpoint {last[0].name} is kept" if last else "no checkpoint was written"
            raise self._error(
                DcganError(
                    f"training diverged at step {self.step}: loss is not finite (D {loss_d}, G {loss_g}); {kept}. "
                    "Start again with a lower --lr or another --seed."
                )
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
        if f is not None:
            f.write(json.dumps(row) + "\n")
            f.flush()
        return row


def train(root: Path | str, *, epochs: int | None = None, reporter: TrainingReporter | None = None) -> TrainResult:
    """Train (or resume) the run in ``root``."""
    return Trainer(root, epochs=epochs).run(reporter)


def checkpoint_path(root: Path, step: int) -> Path:
    return RunPaths(root).checkpoints / checkpoint_name(step)
