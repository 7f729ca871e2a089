"""`dcgan train`: train a DCGAN, or resume one; on one process, or data-parallel under torchrun."""

import contextlib
import os
import shutil
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dcgan_cli.commands import DeviceOption, JsonOption, print_json
from dcgan_cli.hookspecs import hookimpl

# Options that say how to start the processes; the workers never see them.
LAUNCH_OPTIONS = ("nproc", "nnodes", "rdzv_endpoint", "rdzv_id", "max_restarts")
# What --precision takes: training/config.py's TRAINING_PRECISIONS (that module imports torch,
# which the command line must not at start-up; tests/test_cli_help.py checks the two agree).
TrainingPrecision = Enum("TrainingPrecision", {name: name for name in ("fp32", "bf16", "fp16")}, type=str)
# Options that change how an existing run trains from here on (given with --resume).
SESSION_OPTIONS = ("precision", "channels_last", "compile", "sync_bn")


def train_command(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="Dataset name (see dcgan datasets).")] = "digits",
    data: Annotated[
        Path | None, typer.Option(metavar="PATH", help="Where the dataset lies on disk, when it needs files.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", metavar="RUN", help="Run folder to create. Default: runs/DATASET-TIME."),
    ] = None,
    resume: Annotated[
        Path | None, typer.Option(metavar="RUN", help="Continue this run from its newest checkpoint.")
    ] = None,
    size: Annotated[int | None, typer.Option(help="Image side: 32, 64 or 128. Default: the dataset's.")] = None,
    channels: Annotated[int | None, typer.Option(help="1 or 3. Default: the dataset's.")] = None,
    epochs: Annotated[
        int | None, typer.Option(help="Epochs in all (on --resume: the new total). [default: 25]")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps in all.")] = None,
    batch_size: Annotated[
        int, typer.Option(help="Global mini-batch size, split over the processes (paper: 128).")
    ] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate (paper: 0.0002).")] = 2e-4,
    beta1: Annotated[float, typer.Option(help="Adam beta1 (paper: 0.5).")] = 0.5,
    nz: Annotated[int, typer.Option(help="Length of z.")] = 100,
    ngf: Annotated[int, typer.Option(help="Generator width.")] = 64,
    ndf: Annotated[int, typer.Option(help="Discriminator width.")] = 64,
    prior: Annotated[str, typer.Option(metavar="normal|uniform", help="Distribution of z.")] = "normal",
    seed: Annotated[int, typer.Option(help="Seed for weights, noise and batch order.")] = 0,
    device: DeviceOption = "auto",
    workers: Annotated[int, typer.Option(help="DataLoader worker processes.")] = 0,
    category: Annotated[
        str | None, typer.Option(metavar="NAME", help="LSUN database to use when --data holds several (e.g. bedroom).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(
            metavar="SPLIT", help="train, valid, test or all, for datasets with splits. Default: the dataset's."
        ),
    ] = None,
    download: Annotated[
        bool,
        typer.Option("--download", help="Fetch the dataset from its publisher first (into --data, default data/NAME)."),
    ] = False,
    checkpoint_every: Annotated[
        int, typer.Option(help="Steps between checkpoints, besides the epoch-end snapshots.")
    ] = 500,
    snapshot_every: Annotated[
        int | None,
        typer.Option(
            metavar="EPOCHS",
            help="Epochs between snapshots (checkpoint, sample grid, generator files, quality score). "
            "[default: 0, auto: every epoch end that keeps them within 2% of the training time, "
            "always the first and last]",
            show_default=False,
        ),
    ] = None,
    log_every: Annotated[int, typer.Option(help="Steps between lines of metrics.jsonl.")] = 10,
    precision: Annotated[
        TrainingPrecision | None,
        typer.Option(
            help="Autocast precision (fp16 with a gradient scaler). bf16 pays on GPUs with bf16 tensor cores "
            "(A100, H100, RTX 30xx on); fp16 on older GPUs; fp32 on CPUs without AMX. [default: fp32]",
            show_default=False,
        ),
    ] = None,
    channels_last: Annotated[
        bool | None,
        typer.Option(
            "--channels-last/--no-channels-last",
            help="NHWC tensors, the layout cuDNN's tensor cores and oneDNN convolve fastest. [default: on]",
            show_default=False,
        ),
    ] = None,
    compile: Annotated[
        bool | None,
        typer.Option(
            "--compile/--no-compile",
            help="torch.compile G and D: fuses BatchNorm and activations on GPUs, after a minute of compiling; "
            "worth it for long GPU runs, not on CPUs. [default: off]",
            show_default=False,
        ),
    ] = None,
    sync_bn: Annotated[
        bool | None,
        typer.Option(
            "--sync-bn/--no-sync-bn",
            help="Several GPU processes: BatchNorm statistics over the global batch instead of each "
            "process's slice. [default: off]",
            show_default=False,
        ),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(help="Processes on this node (data-parallel, started with torchrun); 1 trains in this process."),
    ] = 1,
    nnodes: Annotated[
        str,
        typer.Option(
            metavar="N[:MAX]", help="Nodes in the job (N, or MIN:MAX); with several, run the same command on each."
        ),
    ] = "1",
    rdzv_endpoint: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT", help="Where the nodes meet (torchrun's c10d rendezvous); needed with several nodes."
        ),
    ] = None,
    rdzv_id: Annotated[str, typer.Option(metavar="ID", help="Job id, the same on every node.")] = "dcgan",
    max_restarts: Annotated[
        int,
        typer.Option(
            help="Times torchrun restarts the processes after a failure (they resume from the newest checkpoint)."
        ),
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing run folder given with --out.")] = False,
    tensorboard: Annotated[
        bool,
        typer.Option("--tensorboard", help="Also log scalars and sample grids for TensorBoard into RUN/tensorboard."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Train a DCGAN and write a run folder.

    The paper's way unless told otherwise: Adam with lr 2e-4 and beta1 0.5, batches of 128.
    """
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.training import distributed

    under_torchrun = distributed.torchrun_environment() is not None
    if under_torchrun and (nproc != 1 or nnodes != "1"):
        raise DcganError(
            "under torchrun the processes are torchrun's to start: drop --nproc/--nnodes and use torchrun's --nproc-per-node/--nnodes"
        )
    if tensorboard:  # before anything is written, so a missing package costs nothing
        from dcgan_cli.training.tensorboard_log import require_tensorboard

        require_tensorboard()
    precision = precision.value if precision is not None else None
    given = dict(
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        sync_bn=sync_bn,
        snapshot_every=snapshot_every,
    )
    session = {name: value for name, value in given.items() if value is not None}

    def new_run():
        return _new_run_config(
            dataset,
            data,
            size,
            channels,
            nz,
            ngf,
            ndf,
            prior,
            category,
            split,
            download,
            session,
            dict(
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
            ),
        )

    if not under_torchrun and (nproc != 1 or nnodes != "1"):
        options = distributed.LaunchOptions(nproc, nnodes, rdzv_endpoint, rdzv_id, max_restarts).validate()
        _launch(ctx, options, None if resume is not None else new_run(), out, force)
        return

    context = distributed.init_distributed()
    try:
        _train(context, resume, out, force, new_run, epochs, max_steps, session, tensorboard, as_json)
    except distributed.ErrorOnMain as exc:
        raise typer.Exit(exc.exit_code) from None  # rank 0 has said what went wrong
    except DcganError as exc:
        if context.is_main:
            raise
        raise DcganError(f"process {context.rank}: {exc}", exit_code=exc.exit_code) from None
    finally:
        distributed.shutdown(context)


def _new_run_config(dataset, data, size, channels, nz, ngf, ndf, prior, category, split, download, session, train):
    """(model config, training config) of a new run, checked, with its data downloaded when asked and readable."""
    from dcgan_cli.core.errors import DcganError
    from dcgan_cli.core.model import DCGANConfig
    from dcgan_cli.data.catalog import (
        DataOptions,
        default_download_dir,
        get_spec,
        resolve_options,
    )
    from dcgan_cli.data.loading import load_dataset
    from dcgan_cli.training.config import TrainConfig

    spec = get_spec(dataset)
    if download and data is None and spec.downloads:
        data = default_download_dir(dataset)
    options = resolve_options(
        spec, DataOptions(data=data, size=size, channels=channels, category=category, split=split, download=download)
    )
    model = DCGANConfig(options.size, options.channels, nz, ngf, ndf, prior).validate("options")
    train_cfg = TrainConfig(
        dataset=dataset, data=str(data.resolve()) if data else None, category=category, split=split, **train, **session
    ).validate("options")
    # Download when asked, and refuse an empty or unreadable dataset before the run folder exists.
    n_images = len(load_dataset(dataset, options)[0])
    if n_images < train_cfg.batch_size:
        raise DcganError(
            f"dataset {dataset!r} has {n_images} images, fewer than one batch of {train_cfg.batch_size}; lower --batch-size"
        )
    return model, train_cfg


def _refuse_existing(root: Path, force: bool) -> None:
    from dcgan_cli.core.errors import DcganError

    # Hidden files (the lock, temporaries of a writer that died) do not make a run.
    if root.exists() and any(not p.name.startswith(".") for p in root.iterdir()) and not force:
        raise DcganError(
            f"{root} already exists; resume it with `dcgan train --resume {root}`, "
            "pick another --out, or pass --force to replace it"
        )


def _train(context, resume, out, force, new_run, epochs, max_steps, session, tensorboard=False, as_json=False) -> None:
    from dcgan_cli.core.console import console, note
    from dcgan_cli.core.runs import RunPaths, new_run_dir, resolve_run, run_lock
    from dcgan_cli.training.config import create_run
    from dcgan_cli.training.reporters import RichReporter, describe_session
    from dcgan_cli.training.trainer import Trainer

    with contextlib.ExitStack() as held:

        def open_run() -> str:
            """Rank 0: resolve or create the run folder, and hold its lock for the whole training."""
            restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
            if resume is not None:
                root = resolve_run(resume)
            elif restarted and out is not None and RunPaths(out).config.is_file():
                root = out  # torchrun restarted the job (--max-restarts): continue the run it began
            else:
                model, train_cfg = new_run()
                root = out if out is not None else new_run_dir(train_cfg.dataset)
                _refuse_existing(root, force)
                with run_lock(root, "train"):
                    if force:
                        for child in root.iterdir():
                            if child.name != ".lock":
                                shutil.rmtree(child) if child.is_dir() else child.unlink()
                    create_run(root, model, train_cfg, {"name": train_cfg.dataset, "data": train_cfg.data})
            held.enter_context(run_lock(root, "train"))
            return str(root)

        root = Path(context.run_on_main(open_run))
        resumed = resume is not None
        trainer = Trainer(
            root,
            epochs=epochs if resumed else None,
            max_steps=max_steps if resumed else None,
            overrides=session if resumed else None,
            dist=context,
        )
        c = trainer.model_config
        if context.is_main:
            note(
                f"Training {c.size}x{c.size}x{c.channels} DCGAN on {trainer.cfg.dataset} ({len(trainer.dataset)} images) "
                f"on {trainer.device}, {describe_session(trainer)}; {trainer.total_steps} steps -> {root}"
            )
        reporter = RichReporter()
        if tensorboard and context.is_main:
            from dcgan_cli.training.tensorboard_log import (
                TensorBoardReporter,
            )

            reporter = TensorBoardReporter(RunPaths(root).tensorboard, inner=reporter)
            note(
                f"TensorBoard logs in {RunPaths(root).tensorboard}; view them with: tensorboard --logdir {RunPaths(root).tensorboard}"
            )
        result = trainer.run(reporter)
    if context.is_main and as_json:
        print_json(
            dict(
                run=root,
                steps=result.step,
                steps_run=result.steps_run,
                resumed_from_step=result.resumed_from_step,
                epoch=result.epoch,
                images_per_second=result.images_per_second,
                seconds=result.seconds,
                extras_seconds=result.extras_seconds,
                snapshots=result.snapshots,
                last_metrics=result.last_metrics,
            )
        )
    elif context.is_main:
        session = ""
        if result.resumed_from_step is not None:
            session = f" ({result.steps_run} run now, resumed at step {result.resumed_from_step})"
        taken = f"{result.snapshots} snapshot{'' if result.snapshots == 1 else 's'}"
        extras = f"{taken}, {result.extras_seconds / max(result.seconds, 1e-9):.1%} of the time"
        console.print(
            f"Done: {result.step} steps{session}, {result.images_per_second:,.0f} img/s ({extras}). Run folder: {root}"
        )
        console.print(f"Next: dcgan sample -r {root} -n 64 --out grid.png")
        console.print(f"      dcgan report -r {root} --open   (curves, every epoch's samples, results in one page)")


def _launch(ctx: typer.Context, options, new_run, out, force) -> None:
    """Check what can be checked here, then start the workers under torchrun with the same arguments."""
    import torch

    from dcgan_cli.core.devices import cpu_threads
    from dcgan_cli.core.runs import new_run_dir, read_run_config, resolve_run
    from dcgan_cli.training import distributed

    world = options.nproc * int(options.nnodes) if ":" not in options.nnodes else 1
    replace = {}
    # Refuse here what rank 0 would refuse once the processes have started.
    if new_run is None:
        train = read_run_config(resolve_run(ctx.params["resume"])).get("train", {})
        batch_size, device = train.get("batch_size", 128), train.get("device", "auto")
    else:
        model, train_cfg = new_run
        root = out if out is not None else new_run_dir(train_cfg.dataset)
        _refuse_existing(root, force)
        replace["out"] = str(root)  # every rank must agree on the folder: name it here
        batch_size, device = train_cfg.batch_size, train_cfg.device
        if train_cfg.sync_bn and (device == "cpu" or not torch.cuda.is_available()):
            distributed.check_sync_batchnorm(torch.device("cpu"), world)
    if isinstance(batch_size, int) and batch_size > 0:
        distributed.check_batch_split(batch_size, world)
    on_cpu = device == "cpu" or not torch.cuda.is_available()
    # torchrun gives each process one thread unless told otherwise; on the CPU share the cores out.
    threads = max(1, cpu_threads() // options.nproc) if on_cpu else None
    options = distributed.LaunchOptions(**{**options.__dict__, "omp_threads": threads})
    code = distributed.launch(options, ["train", *worker_arguments(ctx, replace, LAUNCH_OPTIONS)])
    if code:
        raise typer.Exit(code)


def worker_arguments(ctx: typer.Context, replace: dict, drop: tuple[str, ...]) -> list[str]:
    """The command line that gives this command's parameters as the user set them.

    Only parameters given on the command line (or by environment) are passed on, so the
    workers apply the same defaults; ``replace`` sets values, ``drop`` leaves names out.
    """
    args: list[str] = []
    for param in ctx.command.params:
        name = param.name
        source = ctx.get_parameter_source(name)
        given = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
        if name in drop or not (given or name in replace):
            continue
        value = replace.get(name, ctx.params[name])
        if param.param_type_name == "argument":
            args.append(str(value))
        elif getattr(param, "is_flag", False):
            if value:
                args.append(param.opts[0])
            elif param.secondary_opts:
                args.append(param.secondary_opts[0])
        else:
            args += [param.opts[0] if param.opts[0].startswith("--") else param.opts[-1], str(value)]
    return args


@hookimpl
def dcgan_register_commands(app: typer.Typer) -> None:
    app.command("train")(train_command)
