"""Where training reports its progress: nowhere (the default), a rich progress bar, TensorBoard."""

from __future__ import annotations

from pathlib import Path

from dcgan_cli.training.snapshots import SNAPSHOT_BUDGET


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

        from dcgan_cli.core.console import make_progress

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


def describe_session(trainer) -> str:
    """One line on how ``trainer``'s session trains: processes, batch split, learning rate, BatchNorm, precision."""
    cfg, world = trainer.cfg, trainer.dist.world_size
    parts = []
    if world > 1:
        backend = "NCCL" if trainer.dist.has_nccl and trainer.device.type == "cuda" else "gloo"
        parts.append(
            f"{world} processes (DDP over {backend}): batch {cfg.batch_size} = {world} x {trainer.per_rank_batch}, "
            f"lr {cfg.lr:g} (the global batch is --batch-size, so the lr is unchanged); "
            + (
                "BatchNorm over the global batch (--sync-bn)"
                if cfg.sync_bn
                else f"BatchNorm per process over {trainer.per_rank_batch} images"
            )
        )
    else:
        parts.append(f"batch {cfg.batch_size}, lr {cfg.lr:g}")
    parts.append(
        f"{trainer.precision}{', channels-last' if cfg.channels_last else ''}{', compiled' if trainer.compile else ''}"
    )
    cpu = [f"{trainer.cpu_step.variant} CPU convolutions ({trainer.cpu_step.source})"] if trainer.cpu_step.key else []
    every = cfg.snapshot_every
    if every == 0:
        snapshots = f"snapshots within {SNAPSHOT_BUDGET:.0%} of the time"
    else:
        snapshots = "snapshots every epoch" if every == 1 else f"snapshots every {every} epochs"
    return "; ".join([*parts, *cpu, snapshots])
