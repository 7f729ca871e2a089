"""The training loop (paper, section 4): train a run folder from its newest checkpoint to its budget.

The step itself (D then G, the paper's algorithm) is in step.py; the checkpoint's contents
in checkpoints.py; the per-epoch quality signal in quality.py; reporters and plots beside.

Every random choice is derived from the run's seed and the step or epoch number (z of each
step, each epoch's batch order), so a resumed run is bitwise identical to one that never stopped.

Several processes (torchrun, see distributed.py) train data-parallel: ``batch_size`` stays
the global batch, each rank takes an equal slice of it and of its z, and DDP averages the
gradients, so the sequence of global batches does not depend on the number of processes
and a run resumes with another one. BatchNorm normalises each rank's slice on its own
(per-replica statistics) unless ``sync_bn`` asks for statistics over the global batch.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from dcgan_cli.core.devices import resolve_device
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.files import atomic_write_json, remove_stale_temporaries, safetensors_bytes
from dcgan_cli.core.images import save_grid
from dcgan_cli.core.model import DCGANConfig, Generator, build_models
from dcgan_cli.core.prior import derive_seed, seeded_z
from dcgan_cli.core.runs import RunPaths, read_run_config
from dcgan_cli.data.batches import EpochBatchSampler, make_loader
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset
from dcgan_cli.training import distributed
from dcgan_cli.training.checkpoints import (
    checkpoint_name,
    latest_checkpoint,
    list_checkpoints,
    outputs_step,
    restore_training_state,
    save_checkpoint,
    snapshot,
    training_state,
    truncate_logs,
)
from dcgan_cli.training.config import TrainConfig, versions
from dcgan_cli.training.cpu_tuning import cpu_step_for
from dcgan_cli.training.distributed import SINGLE, DistContext
from dcgan_cli.training.plots import PLOT_EVERY_S, write_loss_plot
from dcgan_cli.training.quality import QualityMonitor
from dcgan_cli.training.reporters import TrainingReporter
from dcgan_cli.training.snapshots import SnapshotSchedule
from dcgan_cli.training.step import (
    AUTOCAST_DTYPES,
    check_training_precision,
    gan_step,
    make_optimizers,
    parameter_digest,
    place_models,
    session_settings,
    standing_generator,
    step_noise,
)
from dcgan_cli.training.writer import BackgroundWriter

FIXED_SAMPLES = 64  # images in each epoch's sample grid


@dataclass
class TrainResult:
    run: Path
    step: int
    epoch: int
    images_per_second: float
    last_metrics: dict | None
    resumed_from_step: int | None = None  # the checkpoint's step this session began at (None: from scratch)
    steps_run: int = 0  # steps this session trained
    seconds: float = 0.0  # this session's training loop, wall-clock
    extras_seconds: float = 0.0  # of which snapshots, checkpoints and the loss plot (on the training thread)
    snapshots: int = 0  # epoch-end snapshots this session took


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
        # What this device runs of the asked-for precision and compile (MPS falls back, with a note).
        self.precision, self.compile = session_settings(self.device, self.cfg, self.dist.is_main)
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
        self.cpu_step = cpu_step_for(self.device, self.model_config, self.per_rank_batch, self.cfg, self.dist)
        place_models(self.netG, self.netD, self.device, self.cfg.channels_last, self.cpu_step.variant)
        self.optG, self.optD = make_optimizers(self.netG, self.netD, self.cfg)
        self.autocast_dtype = AUTOCAST_DTYPES[self.precision]
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None
        self.step = 0
        self.resumed_from: Path | None = None
        self.resumed_step: int | None = None
        self.resumed_world_size = self.dist.world_size
        self.replicas_identical = True
        self.fixed_z = seeded_z(
            derive_seed(self.cfg.seed, "fixed"), FIXED_SAMPLES, self.model_config.nz, self.model_config.prior
        )
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        if self.dist.is_main:
            for folder in (self.paths.root, self.paths.checkpoints, self.paths.samples):
                remove_stale_temporaries(folder)
        self.quality = QualityMonitor(self.paths, self.dataset, self.model_config, self.cfg.seed, self.device)
        # Rank 0's files: on a GPU a background thread writes them off the step's path. On the CPU the
        # step has every core already, and once that thread had run, the steps after it kept 1.7 of 2
        # cores busy instead of 1.99 (15% slower, measured), so there they are written inline.
        self.writer = BackgroundWriter(enabled=self.dist.is_main and self.device.type != "cpu")
        try:
            self._restore()
        except DcganError as exc:
            raise self._error(exc) from None
        if self.dist.is_main and self._changed_config is not None:
            atomic_write_json(self.paths.config, self._changed_config)
        # What the step calls: the same modules, compiled and/or wrapped for data parallelism.
        # DDP goes outside the compiled module, so the G update can reach the compiled D alone.
        self.stepG, self.stepD = self.netG, self.netD
        if self.compile:
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
        check_training_precision(cfg.precision, device)
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
        self.step = restore_training_state(
            tensors, meta, str(path), self.netG, self.netD, self.optG, self.optD, self.scaler, self.device
        )
        self.cpu_step = self.cpu_step.resume(meta, self.netG, self.netD)
        self.resumed_from, self.resumed_step = path, self.step
        self.resumed_world_size = int(meta.get("world_size", 1))
        if self.dist.is_main:
            truncate_logs(self.paths, self.step)
            self.quality.load_history()
        # A crash between writing the checkpoint and its companions: write them again (all ranks
        # take part in save(), rank 0 decides).
        if self.dist.run_on_main(lambda: outputs_step(self.paths) != self.step):
            self.save()

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
        tensors, optimizer_groups = training_state(self.netG, self.netD, self.optG, self.optD, self.device)
        meta = {
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "steps_per_epoch": self.steps_per_epoch,
            **optimizer_groups,
            "model": self.model_config.to_dict(),
            "world_size": self.dist.world_size,
            "per_rank_batch": self.per_rank_batch,
            # sha256 of each replica's parameters (parameter_digest), in rank order.
            "replica_sha256": [d.hex() for d in digests],
            "precision": self.precision,
            "resumed_from_step": self.resumed_step,  # where this session began (None: from scratch)
            **self.cpu_step.record(),
            "versions": versions(),
        }
        if self.scaler is not None:
            meta["scaler"] = self.scaler.state_dict()
        best = self.quality.best
        keep = {best.step} if best is not None else set()  # the best epoch's checkpoint outlives pruning
        if standing is None:
            standing = standing_generator(self.netG, self.cfg.seed, batch_size=self.cfg.batch_size)
        # Copies of this moment's state (the standing G is a copy already): training goes on while they are written.
        # SyncBatchNorm and BatchNorm2d share their state dict names: the files load either way.
        networks = {"generator": standing.state_dict(), "discriminator": snapshot(self.netD.state_dict())}
        self.writer.submit(
            save_checkpoint, self.paths.root, self.step, snapshot(tensors), meta, self.cfg.keep_checkpoints, keep,
            networks=networks, model=self.model_config,
        )  # fmt: skip
        return self.paths.checkpoints / checkpoint_name(self.step)

    def _snapshot_due(self, last: bool) -> bool:
        epoch = self.step // self.steps_per_epoch
        return self.dist.run_on_main(lambda: self.snapshots.due(epoch, last, self.writer.cpu_seconds))

    def _snapshot(self, reporter: TrainingReporter, last: bool) -> Path | None:
        """Checkpoint, generator files, and at an epoch end the sample grid and the quality score."""
        began, main, spe = time.perf_counter(), self.dist.is_main, self.steps_per_epoch
        standing = standing_generator(self.netG, self.cfg.seed, batch_size=self.cfg.batch_size) if main else None
        new_best = False
        if main and self.step % spe == 0:
            done_epoch = self.step // spe
            sample_path = self.write_samples(done_epoch, standing, reporter)
            reporter.note(f"epoch {done_epoch}/{math.ceil(self.total_steps / spe)}: samples in {sample_path}")
            if self.quality.due(last):  # on a time budget, and always at the first and last epoch end
                new_best = self.quality.check(standing, self.step, done_epoch, reporter.note)
        path = self.save(standing)
        if new_best:
            self.writer.submit(self.quality.mark_best, standing)
        self.snapshots.record(time.perf_counter() - began)
        return path

    def write_samples(self, epoch: int, standing: Generator, reporter: TrainingReporter | None = None) -> Path:
        """samples/epoch-NNN.png: the fixed noise batch through the eval-mode G; the reporter hears once it is on disk."""
        with torch.no_grad():
            images = standing(self.fixed_z.to(self.device)).cpu()
        path, step = self.paths.samples / f"epoch-{epoch:03d}.png", self.step
        self.writer.submit(lambda: (save_grid(images, path, nrow=8), reporter and reporter.samples(step, epoch, path)))
        return path

    # -- one step

    def train_step(self, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One step on this rank's slice of a global batch, with its slice of this step's seeded z."""
        c = self.model_config
        z = step_noise(
            self.cfg.seed, self.step, self.cfg.batch_size, c.nz, c.prior, self.dist.rank, self.dist.world_size
        )
        z = z[: real.shape[0]].to(self.device, non_blocking=True)  # fewer when unreadable images were dropped
        return gan_step(
            self.stepG,
            self.stepD,
            self.optG,
            self.optD,
            real,
            z,
            autocast_dtype=self.autocast_dtype,
            scaler=self.scaler,
        )

    # -- the loop

    def run(self, reporter: TrainingReporter | None = None) -> TrainResult:
        if not self.dist.is_main or reporter is None:
            reporter = TrainingReporter()  # progress is rank 0's to show
        stop = distributed.StopRequest()
        try:
            with distributed.graceful_stop(stop, self.dist):
                result = self._run(reporter, stop)
            self.writer.close()  # every file of the session is on disk before run() returns
            return result
        except BaseException:
            self.writer.close(raise_errors=False)  # what was handed over is still written
            raise
        finally:
            reporter.finish()

    def _run(self, reporter: TrainingReporter, stop: distributed.StopRequest) -> TrainResult:
        cfg, spe, main = self.cfg, self.steps_per_epoch, self.dist.is_main
        reporter.start(
            total_steps=self.total_steps, done_steps=self.step, steps_per_epoch=spe, batch_size=cfg.batch_size
        )
        if self.resumed_from is not None:
            processes = ""
            if self.resumed_world_size != self.dist.world_size:
                processes = f", written by {self.resumed_world_size} processes, continued by {self.dist.world_size}"
            reporter.note(
                f"Resuming from {self.resumed_from.name} (step {self.step}, epoch {self.step // spe + 1}{processes})"
            )
        sums = torch.zeros(5, device=self.device)
        n_sums, last_metrics = 0, None
        started, images_done = time.perf_counter(), 0
        self.snapshots = SnapshotSchedule(every=cfg.snapshot_every, started=started)
        plotted = started
        agreement = distributed.StopAgreement(self.dist)
        stop_now, steps_run, extras = 0, 0, 0.0  # stop_now: the signal every rank agreed to stop for
        metrics_file = open(self.paths.metrics, "a", encoding="utf-8") if main else None
        try:
            while self.step < self.total_steps:
                epoch, start_batch = divmod(self.step, spe)
                sampler = EpochBatchSampler(
                    len(self.dataset),
                    cfg.batch_size,
                    cfg.seed,
                    epoch,
                    start_batch,
                    self.dist.rank,
                    self.dist.world_size,
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
                    steps_run += 1
                    epoch_end, finished = self.step % spe == 0, self.step >= self.total_steps
                    stop_now = agreement.poll(stop.signal)
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
                        began = time.perf_counter()
                        self.save()
                        extras += time.perf_counter() - began
                if skipped:
                    reporter.note(f"epoch {epoch + 1}: skipped {skipped} unreadable images")
                # Every way out of the batch loop (epoch end, budget reached, Ctrl-C) may snapshot (snapshots.py);
                # the session's last one, a stop included, always does. Rank 0 decides for every rank.
                last = self.step >= self.total_steps or stop_now
                began = time.perf_counter()
                path = self._snapshot(reporter, last) if self._snapshot_due(last) else None
                if not self.replicas_identical:
                    reporter.note(
                        f"Warning: the replicas' weights differ at step {self.step} (see replica_sha256 in the checkpoint)"
                    )
                if main and (last or time.perf_counter() - plotted >= PLOT_EVERY_S):
                    self.writer.submit(write_loss_plot, self.paths.metrics, self.paths.losses)
                    plotted = time.perf_counter()
                extras += time.perf_counter() - began
                if stop_now:
                    self.writer.flush()  # "checkpoint saved" is said once it is on disk
                    raise self._error(distributed.TrainingInterrupted.after(stop_now, self.step, path, self.paths.root))
        finally:
            agreement.close()
            if metrics_file is not None:
                metrics_file.close()
        self.dist.barrier()  # every rank leaves with rank 0's files written
        seconds, root, epoch = time.perf_counter() - started, self.paths.root, self.step // spe
        rate, taken = images_done / max(seconds, 1e-9), self.snapshots.taken
        return TrainResult(
            root, self.step, epoch, rate, last_metrics, self.resumed_step, steps_run, seconds, extras, taken
        )

    def _log(self, f, epoch: int, means: torch.Tensor, rate: float) -> dict:
        loss_d, loss_g, d_x, d_g_z1, d_g_z2 = means.tolist()
        if not (math.isfinite(loss_d) and math.isfinite(loss_g)):
            self.writer.flush()
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
