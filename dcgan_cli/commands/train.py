"""`dcgan train`: train a DCGAN, or resume one."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer

from dcgan_cli.hookspecs import hookimpl


def train_command(
    dataset: Annotated[str, typer.Argument(help="Dataset name (see `dcgan datasets`).")] = "digits",
    data: Annotated[Optional[Path], typer.Option(help="Where the dataset lies on disk, when it needs files.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder to create. Default: runs/DATASET-TIME.")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue this run from its newest checkpoint.")] = None,
    size: Annotated[Optional[int], typer.Option(help="Image side: 32, 64 or 128. Default: the dataset's.")] = None,
    channels: Annotated[Optional[int], typer.Option(help="1 or 3. Default: the dataset's.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Epochs in all (on --resume: the new total). [default: 25]")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps in all.")] = None,
    batch_size: Annotated[int, typer.Option(help="Mini-batch size (paper: 128).")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate (paper: 0.0002).")] = 2e-4,
    beta1: Annotated[float, typer.Option(help="Adam beta1 (paper: 0.5).")] = 0.5,
    nz: Annotated[int, typer.Option(help="Length of z.")] = 100,
    ngf: Annotated[int, typer.Option(help="Generator width.")] = 64,
    ndf: Annotated[int, typer.Option(help="Discriminator width.")] = 64,
    prior: Annotated[str, typer.Option(help="Distribution of z: normal or uniform.")] = "normal",
    seed: Annotated[int, typer.Option(help="Seed for weights, noise and batch order.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    category: Annotated[Optional[str], typer.Option(help="LSUN database to use when --data holds several (e.g. bedroom).")] = None,
    split: Annotated[Optional[str], typer.Option(help="train, valid, test or all, for datasets with splits. Default: the dataset's.")] = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch the dataset from its publisher first (into --data, default data/NAME).")] = False,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints (also one per epoch).")] = 500,
    log_every: Annotated[int, typer.Option(help="Steps between lines of metrics.jsonl.")] = 10,
    nproc: Annotated[int, typer.Option(help="Processes (data-parallel); 1 trains in this process.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run folder given with --out.")] = False,
    tensorboard: Annotated[
        bool, typer.Option("--tensorboard", help="Also log scalars and sample grids for TensorBoard into RUN/tensorboard.")
    ] = False,
) -> None:
    """Train a DCGAN the paper's way (Adam 2e-4, beta1 0.5, batch 128) and write a run folder."""
    from dcgan_cli.checkpoint import new_run_dir, run_lock
    from dcgan_cli.data import DataOptions, default_download_dir, get_spec, load_dataset, resolve_options
    from dcgan_cli.errors import DcganError
    from dcgan_cli.model import DCGANConfig
    from dcgan_cli.progress import console, note
    from dcgan_cli.train import RichReporter, TrainConfig, Trainer, create_run

    if nproc != 1:
        raise DcganError("--nproc is not available yet in this version; train with one process")
    if tensorboard:  # before anything is written, so a missing package costs nothing
        from dcgan_cli.tensorboard_log import require_tensorboard

        require_tensorboard()
    if resume is not None:
        from dcgan_cli.checkpoint import resolve_run

        root = resolve_run(resume)
    else:
        spec = get_spec(dataset)
        if download and data is None and spec.downloads:
            data = default_download_dir(dataset)
        options = resolve_options(
            spec, DataOptions(data=data, size=size, channels=channels, category=category, split=split, download=download)
        )
        model = DCGANConfig(options.size, options.channels, nz, ngf, ndf, prior).validate("options")
        train_cfg = TrainConfig(
            dataset=dataset,
            data=str(data.resolve()) if data else None,
            category=category,
            split=split,
            epochs=epochs if epochs is not None else 25,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            beta1=beta1,
            seed=seed,
            device=device,
            workers=workers,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
        ).validate("options")
        # Download when asked, and refuse an empty or unreadable dataset before the run folder exists.
        n_images = len(load_dataset(dataset, options)[0])
        if n_images < batch_size:
            raise DcganError(f"dataset {dataset!r} has {n_images} images, fewer than one batch of {batch_size}; lower --batch-size")
        root = out if out is not None else new_run_dir(dataset)
        # Hidden files (the lock, temporaries of a writer that died) do not make a run.
        if root.exists() and any(not p.name.startswith(".") for p in root.iterdir()):
            if not force:
                raise DcganError(
                    f"{root} already exists; resume it with `dcgan train --resume {root}`, "
                    "pick another --out, or pass --force to replace it"
                )
        with run_lock(root, "train"):
            if force:
                for child in root.iterdir():
                    if child.name != ".lock":
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            create_run(root, model, train_cfg, {"name": dataset, "data": train_cfg.data})
    with run_lock(root, "train"):
        trainer = Trainer(root, epochs=epochs if resume is not None else None, max_steps=max_steps if resume is not None else None)
        c = trainer.model_config
        note(
            f"Training {c.size}x{c.size}x{c.channels} DCGAN on {trainer.cfg.dataset} ({len(trainer.dataset)} images) "
            f"on {trainer.device}, batch {trainer.cfg.batch_size}, {trainer.total_steps} steps -> {root}"
        )
        reporter = RichReporter()
        if tensorboard:
            from dcgan_cli.tensorboard_log import TensorBoardReporter, tensorboard_dir

            reporter = TensorBoardReporter(tensorboard_dir(root), inner=reporter)
            note(f"TensorBoard logs in {tensorboard_dir(root)}; view them with: tensorboard --logdir {tensorboard_dir(root)}")
        result = trainer.run(reporter)
    console.print(f"Done: {result.step} steps, {result.images_per_second:,.0f} img/s. Run folder: {root}")
    console.print(f"Next: dcgan sample -r {root} -n 64 --out grid.png")
    console.print(f"      dcgan report -r {root} --open   (curves, every epoch's samples, results in one page)")


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("train")(train_command)
