"""Data-parallel training on torch.distributed: the process group, DDP, and launching torchrun.

One process per device, started by torchrun (``dcgan train --nproc N`` starts torchrun for
you). Every process holds a whole G and D; DistributedDataParallel averages the gradients
after each backward, so the replicas take identical optimizer steps and stay identical.

Rank 0 alone reads and writes the run folder. What the other ranks need from it (the run
config, the checkpoint to resume from) travels over the process group, so several nodes
need no shared filesystem for the run, only the dataset at the same path on each node.
Control messages go through CPU tensors, which the process group sends with gloo even
where the gradients go with NCCL ("cpu:gloo,cuda:nccl").
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from dcgan_cli.core.errors import DcganError, ExitCode

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
# Collectives wait this long for a rank that does not arrive (a checkpoint write on rank 0
# included) before the job fails rather than hanging for ever.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=30)


class ErrorOnMain(DcganError):
    """The error rank 0 hit and already printed; other ranks exit with its code, silently."""


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job: rank, world size, and how it talks to the others.

    The default is a single process (rank 0 of 1), for which every method is a cheap no-op.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group (a single process)

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that reads and writes the run folder and prints progress."""
        return self.rank == 0

    @property
    def has_nccl(self) -> bool:
        return self.backend is not None and "nccl" in self.backend

    # -- collectives on small CPU tensors (gloo), for control rather than gradients

    def barrier(self) -> None:
        if self.is_distributed:
            dist.all_reduce(torch.zeros(1))

    def broadcast_bytes(self, data: bytes | None) -> bytes:
        """Rank 0's ``data`` on every rank."""
        if not self.is_distributed:
            assert data is not None
            return data
        size = torch.tensor([len(data) if self.is_main else 0], dtype=torch.int64)
        dist.broadcast(size, src=0)
        if size.item() == 0:
            return b""
        if self.is_main:
            buffer = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        else:
            buffer = torch.empty(int(size.item()), dtype=torch.uint8)
        dist.broadcast(buffer, src=0)
        return data if self.is_main else buffer.numpy().tobytes()

    def broadcast_json(self, obj: object = None) -> object:
        """Rank 0's JSON-able ``obj`` on every rank (JSON, not pickle, on the wire)."""
        if not self.is_distributed:
            return obj
        data = json.dumps(obj).encode() if self.is_main else None
        return json.loads(self.broadcast_bytes(data))

    def all_gather_bytes(self, data: bytes) -> list[bytes]:
        """Every rank's ``data`` (all the same length), in rank order."""
        if not self.is_distributed:
            return [data]
        mine = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        dist.all_gather(gathered, mine)
        return [t.numpy().tobytes() for t in gathered]

    def all_reduce_mean_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Average ``tensor`` over the ranks, in place (for metrics: each rank saw a slice)."""
        if self.is_distributed:
            dist.all_reduce(tensor)
            tensor.div_(self.world_size)
        return tensor

    def run_on_main(self, fn):
        """``fn()`` on rank 0 alone; its JSON-able result, or its error, on every rank.

        Rank 0 raises its own error (the CLI prints it once); the others raise ErrorOnMain
        with the same exit code, which the command turns into a silent exit.
        """
        if not self.is_distributed:
            return fn()
        outcome, failure = None, None
        if self.is_main:
            try:
                outcome = {"ok": fn()}
            except DcganError as exc:
                failure, outcome = exc, {"error": str(exc), "exit_code": exc.exit_code}
            except BaseException as exc:
                failure, outcome = exc, {"error": f"rank 0 failed ({type(exc).__name__})", "exit_code": 1}
        outcome = self.broadcast_json(outcome)
        if failure is not None:
            raise failure
        if "error" in outcome:
            raise ErrorOnMain(outcome["error"], exit_code=outcome["exit_code"])
        return outcome["ok"]


SINGLE = DistContext()


def torchrun_environment() -> dict[str, int] | None:
    """RANK, WORLD_SIZE and LOCAL_RANK when this process was started by torchrun, else None."""
    if not all(name in os.environ for name in TORCHRUN_VARIABLES):
        return None
    try:
        return {name: int(os.environ[name]) for name in TORCHRUN_VARIABLES}
    except ValueError:
        raise DcganError(
            "RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; start the job with torchrun "
            "or `dcgan train --nproc N`"
        ) from None


def init_distributed() -> DistContext:
    """Join the job torchrun started (a no-op outside torchrun or with one process).

    Where CUDA is present with a GPU for every process of this node, tensors on CUDA go with
    NCCL and everything on the CPU with gloo; elsewhere all of it goes with gloo. Every
    process of a node decides alike (a group whose ranks disagree would hang). The backend
    is chosen before the run's config is read because that read already needs the process
    group (rank 0 shares the config with the others).
    """
    env = torchrun_environment()
    if env is None or env["WORLD_SIZE"] == 1:
        return SINGLE
    if dist.is_initialized():  # a caller that set the group up itself
        return DistContext(dist.get_rank(), dist.get_world_size(), env["LOCAL_RANK"], dist.get_backend())
    local_rank = env["LOCAL_RANK"]
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", local_rank + 1))
    kwargs = {}
    if torch.cuda.is_available() and local_world <= torch.cuda.device_count() and dist.is_nccl_available():
        torch.cuda.set_device(local_rank)
        backend = "cpu:gloo,cuda:nccl"
        kwargs["device_id"] = torch.device("cuda", local_rank)
    else:
        backend = "gloo"
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, **kwargs)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, backend)


def shutdown(context: DistContext) -> None:
    """Leave the process group (every rank, once training is over)."""
    if context.is_distributed and dist.is_initialized():
        dist.destroy_process_group()


def device_for(context: DistContext, device: torch.device) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` when training on CUDA, the CPU for MPS (one
    GPU, several processes), else ``device``."""
    if context.is_distributed and device.type == "mps":
        from dcgan_cli.core.console import note
        from dcgan_cli.core.devices import processes_device_for

        kind, message = processes_device_for(device.type, context.world_size)
        if context.is_main:
            note(message)
        return torch.device(kind)
    if not context.is_distributed or device.type != "cuda":
        return device
    if not context.has_nccl:
        raise DcganError(
            f"this node runs more processes than it has GPUs ({torch.cuda.device_count()} visible); "
            "start at most one process per GPU (--nproc), or train with --device cpu"
        )
    return torch.device("cuda", context.local_rank)


def check_batch_split(batch_size: int, world_size: int) -> None:
    """The global batch must split into equal slices, one per process."""
    if batch_size % world_size:
        raise DcganError(
            f"the batch of {batch_size} does not split evenly over {world_size} processes; "
            f"pick a --batch-size divisible by {world_size} (it is the global batch)"
        )


def check_sync_batchnorm(device: torch.device, world_size: int) -> None:
    """PyTorch's SyncBatchNorm runs on GPUs only; say so before training starts."""
    if device.type != "cuda" and world_size > 1:
        raise DcganError(
            "--sync-bn needs CUDA devices (PyTorch's SyncBatchNorm runs only on GPUs); "
            "on the CPU drop --sync-bn: each process then normalises its own slice of the batch"
        )


def to_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm for SyncBatchNorm (statistics over the whole global batch), in place."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def to_plain_batchnorm(module: nn.Module) -> nn.Module:
    """Swap every SyncBatchNorm back for BatchNorm2d, in place (for a copy run on one process).

    Parameter and buffer names are the same for both, so state dicts move freely between them.
    """
    for name, child in module.named_children():
        if isinstance(child, nn.SyncBatchNorm):
            plain = nn.BatchNorm2d(
                child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats
            )
            plain.load_state_dict(child.state_dict())
            plain.to(child.weight.device if child.affine else child.running_mean.device)
            plain.train(child.training)
            setattr(module, name, plain)
        else:
            to_plain_batchnorm(child)
    return module


def data_parallel(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` wrapped for DistributedDataParallel.

    Buffers are not broadcast: BatchNorm's running statistics stay per replica (training
    normalises with batch statistics, and the exported generator gets standing statistics
    measured afresh), which saves a broadcast on every forward.
    """
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    # Newer PyTorch renames broadcast_buffers to forward_sync_buffers (both sync once at the start).
    renamed = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    return DistributedDataParallel(
        module,
        device_ids=[device.index] if device.type == "cuda" else None,
        gradient_as_bucket_view=True,
        **{"forward_sync_buffers" if renamed else "broadcast_buffers": False},
    )


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the module itself otherwise)."""
    from torch.nn.parallel import DistributedDataParallel

    return module.module if isinstance(module, DistributedDataParallel) else module


class StopRequest:
    """A request to stop training after the current step, and the signal that made it (0: none yet)."""

    def __init__(self):
        self.signal = 0

    def set(self, signum: int) -> None:
        self.signal = self.signal or int(signum)

    def is_set(self) -> bool:
        return self.signal != 0


class TrainingInterrupted(DcganError):
    """Ctrl-C (exit code 130) or SIGTERM (143) during training, after a checkpoint was written."""

    exit_code = ExitCode.INTERRUPTED

    @classmethod
    def after(cls, signum: int, step: int, checkpoint: Path | None, root: Path) -> TrainingInterrupted:
        how = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
        code = ExitCode.TERMINATED if signum == signal.SIGTERM else ExitCode.INTERRUPTED
        return cls(
            f"{how} at step {step}; checkpoint {checkpoint.name if checkpoint else ''} saved. "
            f"Resume with: dcgan train --resume {root}",
            exit_code=code,
        )


class StopAgreement:
    """Agree across ranks to stop (Ctrl-C, SIGTERM) at the same step.

    Each rank offers the signal it received (0 for none) every step; the ranks all-reduce
    them (the highest wins: SIGTERM over SIGINT) in the background (gloo, CPU) and read the
    result one step later, so asking costs no wait and every rank stops after the same step
    for the same reason, also a rank that received no signal itself.
    """

    def __init__(self, context: DistContext):
        self.context = context
        self.pending: tuple[torch.Tensor, object] | None = None

    def poll(self, local_signal: int) -> int:
        """The signal every rank agreed to stop for, or 0 to go on."""
        if not self.context.is_distributed:
            return local_signal
        agreed = 0
        if self.pending is not None:
            flag, work = self.pending
            work.wait()
            agreed = int(flag.item())
        flag = torch.tensor([local_signal], dtype=torch.int32)
        self.pending = (flag, dist.all_reduce(flag, op=dist.ReduceOp.MAX, async_op=True))
        return agreed

    def close(self) -> None:
        """Wait for the request in flight (every rank polled equally often, so it completes)."""
        if self.pending is not None:
            self.pending[1].wait()
            self.pending = None


# ---------------------------------------------------------------------------- launching


def check_endpoint(endpoint: str) -> str:
    """--rdzv-endpoint: HOST or HOST:PORT (an IPv6 host in brackets), as torchrun takes it."""
    host, colon, port = endpoint.rpartition(":") if not endpoint.endswith("]") else (endpoint, "", "")
    if not colon:
        host, port = endpoint, ""
    ok_host = re.fullmatch(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+", host, re.ASCII) is not None
    ok_port = port == "" or (re.fullmatch(r"[0-9]{1,5}", port) is not None and 1 <= int(port) <= 65535)
    if not (ok_host and ok_port and (not colon or port)):
        raise DcganError(
            f"--rdzv-endpoint {endpoint!r}: give HOST:PORT, e.g. node1:29400 or 10.0.0.1:29400 ([::1]:29400 for IPv6)"
        )
    return endpoint


@dataclass(frozen=True)
class LaunchOptions:
    """How `dcgan train --nproc N` starts torchrun (the options torchrun itself would take)."""

    nproc: int
    nnodes: str = "1"
    rdzv_endpoint: str | None = None
    rdzv_id: str = "dcgan"
    max_restarts: int = 0
    omp_threads: int | None = None  # per process; None: leave OMP_NUM_THREADS as it is

    def validate(self) -> LaunchOptions:
        if self.nproc < 1:
            raise DcganError(f"--nproc must be at least 1, got {self.nproc}")
        # ASCII digits only: torchrun reads the text we pass on, and int() would take "١:٤" too.
        parts = (
            [int(p) for p in self.nnodes.split(":")] if re.fullmatch(r"[0-9]{1,6}(:[0-9]{1,6})?", self.nnodes) else []
        )
        if not 1 <= len(parts) <= 2 or min(parts) < 1 or parts != sorted(parts):
            raise DcganError(
                f"--nnodes must be a number of nodes such as 2, or a range MIN:MAX such as 1:4, got {self.nnodes!r}"
            )
        if max(parts) > 1 and not self.rdzv_endpoint:
            raise DcganError(
                "training on several nodes needs --rdzv-endpoint HOST:PORT, a host and free port every "
                "node can reach (say the first node, port 29400), given alike on every node"
            )
        if self.rdzv_endpoint is not None:
            check_endpoint(self.rdzv_endpoint)
        if self.max_restarts < 0:
            raise DcganError(f"--max-restarts must be 0 or more, got {self.max_restarts}")
        return self

    def torchrun_arguments(self, worker_arguments: list[str]) -> list[str]:
        """torchrun's command line: this launch's options, then ``-m dcgan_cli`` and the worker's."""
        args = [f"--nproc-per-node={self.nproc}", f"--nnodes={self.nnodes}", f"--max-restarts={self.max_restarts}"]
        if self.rdzv_endpoint:
            args += ["--rdzv-backend=c10d", f"--rdzv-endpoint={self.rdzv_endpoint}", f"--rdzv-id={self.rdzv_id}"]
        else:
            args.append("--standalone")  # one node: a local rendezvous on a free port
        return [*args, "-m", "dcgan_cli", *worker_arguments]


def launch(options: LaunchOptions, worker_arguments: list[str]) -> int:
    """Run ``python -m dcgan_cli WORKER_ARGUMENTS`` in ``options.nproc`` processes under torchrun.

    torchrun runs in this process, so its failure report becomes an exit code: the workers
    already printed what went wrong. Returns the exit code for the command: 0, the workers'
    code (2 for a DcganError, 130 for Ctrl-C, 143 for SIGTERM), or 1.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    options.validate()
    if options.omp_threads is not None and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(options.omp_threads)
    # torchrun's own reports (rendezvous, "received death signal", "failed (exitcode: 2)") are
    # for debugging: the workers say what happened. Its modules set their loggers' levels one by one.
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith(("torch.distributed.elastic", "torch.distributed.launcher", "torch.distributed.run"))
    ]
    previous_levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        run(parse_args(options.torchrun_arguments(worker_arguments)))
    except ChildFailedError as exc:
        codes = sorted({f.exitcode for f in exc.failures.values()})
        said = (ExitCode.BAD_INPUT, ExitCode.INTERRUPTED, ExitCode.TERMINATED)
        if codes and all(code in said for code in codes):
            return max(codes)  # every worker said what went wrong: keep its code
        first = codes[0] if codes else "?"
        how = f"was killed by signal {-first}" if isinstance(first, int) and first < 0 else f"exited with code {first}"
        print(f"Error: a training process {how}; see its messages above", file=sys.stderr)
        return 1
    except SignalException as exc:
        return ExitCode.INTERRUPTED if exc.sigval == signal.SIGINT else 128 + int(exc.sigval)
    finally:
        for logger, level in zip(loggers, previous_levels):
            logger.setLevel(level)
    return 0


@contextlib.contextmanager
def graceful_stop(stop: StopRequest, context: DistContext):
    """While training, Ctrl-C (SIGINT) and SIGTERM (a scheduler, `kill`, torchrun passing on
    its own signal) ask ``stop`` to stop after the current step, with a checkpoint.

    Alone, a second Ctrl-C stops at once. Under torchrun the workers sit in their own
    session: torchrun passes on the signal once and kills them if they have not finished
    within its shutdown timeout (30 s), so the first signal only sets the flag.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [signal.SIGINT, signal.SIGTERM]

    def on_signal(signum, frame):
        if stop.is_set() and signum == signal.SIGINT and not context.is_distributed:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        stop.set(signum)

    previous = {s: signal.signal(s, on_signal) for s in signals}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
