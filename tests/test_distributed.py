"""Data-parallel training: a real torchrun with two CPU processes (gloo), then a resume on one."""

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.files import read_safetensors
from dcgan_cli.core.model import DCGANConfig, Discriminator, Generator
from dcgan_cli.data.batches import EpochBatchSampler, make_loader
from dcgan_cli.data.catalog import DataOptions
from dcgan_cli.data.loading import load_dataset
from dcgan_cli.training.checkpoints import latest_checkpoint
from dcgan_cli.training.step import step_noise

# Loaded by every Python process of the job through PYTHONPATH: each torchrun worker logs
# what it opens for writing, renames, creates and removes, one file per RANK.
AUDIT_HOOK = textwrap.dedent(
    """
    import os, sys
    _rank = os.environ.get("RANK")
    if _rank is not None:
        _log = open(os.path.join({audit_dir!r}, "rank-" + _rank + ".log"), "a", buffering=1)
        _log.write("started " + str(os.getpid()) + "\\n")
        _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

        def _audit(event, args):
            if event == "open":
                path, mode, flags = args
                writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
                if writes and isinstance(path, (str, bytes, os.PathLike)):
                    _log.write("open " + os.path.abspath(os.fsdecode(path)) + "\\n")
            elif event in ("os.rename", "os.remove", "os.mkdir", "os.rmdir", "shutil.rmtree"):
                for path in args[:2] if event == "os.rename" else args[:1]:  # rename: from and to
                    _log.write(event + " " + os.path.abspath(os.fsdecode(path)) + "\\n")

        sys.addaudithook(_audit)

        # What the trainer actually feeds each rank: every gan_step call's images and z, saved.
        import dcgan_cli.training.trainer as _trainer
        from safetensors.torch import save_file as _save_file

        _gan_step, _calls = _trainer.gan_step, [0]

        def _recording_gan_step(netG, netD, optG, optD, real, z, **options):
            _calls[0] += 1
            name = "rank-" + _rank + "-step-" + str(_calls[0]) + ".safetensors"
            tensors = {{"real": real.detach().cpu().contiguous(), "z": z.detach().cpu().contiguous()}}
            _save_file(tensors, os.path.join({feed_dir!r}, name))
            return _gan_step(netG, netD, optG, optD, real, z, **options)

        _trainer.gan_step = _recording_gan_step
    """
)


def parameter_sha256(tensors: dict, config: DCGANConfig) -> str:
    """sha256 of G's then D's parameters as stored in a checkpoint (not BatchNorm's running statistics)."""
    h = hashlib.sha256()
    for prefix, net in (("G", Generator(config)), ("D", Discriminator(config))):
        for name, _ in net.named_parameters():
            h.update(tensors[f"{prefix}.{name}"].float().contiguous().numpy().tobytes())
    return h.hexdigest()


def written_paths(log: Path, under: Path) -> list[str]:
    lines = log.read_text().splitlines()
    return [line for line in lines if not line.startswith("started") and str(under) in line.split(" ", 1)[1]]


def test_torchrun_two_processes_then_resume_on_one(tmp_path, cli, monkeypatch):
    site, audit, feed = tmp_path / "site", tmp_path / "audit", tmp_path / "feed"
    for folder in (site, audit, feed):
        folder.mkdir()
    (site / "sitecustomize.py").write_text(AUDIT_HOOK.format(audit_dir=str(audit), feed_dir=str(feed)))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "DCGAN_QUIET": "1",
    }
    env.pop("RANK", None)
    run = [
        sys.executable, "-m", "dcgan_cli", "train", "digits", "--ngf", "8", "--ndf", "8", "--batch-size", "64",
        "--max-steps", "4", "--log-every", "2", "--checkpoint-every", "2", "--device", "cpu", "--out", "runs/ddp",
        "--nproc", "2",
    ]  # fmt: skip
    done = subprocess.run(run, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 processes (DDP over gloo): batch 64 = 2 x 32, lr 0.0002" in done.stderr
    assert done.stdout.count("Done: 4 steps") == 1  # rank 0 alone reports

    root = (tmp_path / "runs" / "ddp").resolve()
    path, tensors, meta = latest_checkpoint(root)
    assert meta["step"] == 4 and meta["world_size"] == 2 and meta["per_rank_batch"] == 32
    # Both replicas hold the same weights, and they are the weights that were saved.
    config = DCGANConfig.from_dict(json.loads((root / "config.json").read_text())["model"])
    assert meta["replica_sha256"] == [parameter_sha256(tensors, config)] * 2

    # Only rank 0 wrote into the run folder; rank 1 ran (its log started) and wrote nothing there.
    rank0, rank1 = audit / "rank-0.log", audit / "rank-1.log"
    assert rank1.read_text().startswith("started")
    assert written_paths(rank1, root) == []
    wrote = written_paths(rank0, root)
    for name in (
        "checkpoints/step-0000002.safetensors",
        "checkpoints/step-0000004.safetensors",
        "metrics.jsonl",
        "generator.safetensors",
        "losses.png",
    ):
        assert any(line.endswith(str(root / name)) for line in wrote), name
    steps = [json.loads(line)["step"] for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4]  # one line per logged step: one writer

    # Each step, the two ranks trained on different halves of the global batch and of its z,
    # which together are exactly the batch one process would have taken.
    assert sorted(p.name for p in feed.iterdir()) == [
        f"rank-{r}-step-{s}.safetensors" for r in (0, 1) for s in range(1, 5)
    ]
    for step, (images, z) in enumerate(global_batches(steps=4, batch_size=64, seed=0)):
        fed = [read_safetensors(feed / f"rank-{r}-step-{step + 1}.safetensors")[0] for r in (0, 1)]
        assert [f["real"].shape[0] for f in fed] == [32, 32]
        assert not torch.equal(fed[0]["real"], fed[1]["real"]) and not torch.equal(fed[0]["z"], fed[1]["z"])
        assert torch.equal(torch.cat([f["real"] for f in fed]), images), f"step {step + 1}"
        assert torch.equal(torch.cat([f["z"] for f in fed]), z), f"step {step + 1}"

    # Resume the 2-process run on one process (this one): it continues from step 4.
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "--resume", "runs/ddp", "--max-steps", "6"])
    assert result.exit_code == 0, result.output
    assert "written by 2 processes, continued by 1" in result.stderr
    _, resumed, meta = latest_checkpoint(root)
    assert meta["step"] == 6 and meta["world_size"] == 1 and meta["per_rank_batch"] == 64
    assert resumed["optG.0.step"].item() == 6  # Adam's state came along from the 2-process checkpoint
    assert not torch.equal(resumed["G.blocks.0.conv.weight"], tensors["G.blocks.0.conv.weight"])
    assert [json.loads(line)["step"] for line in (root / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6]


def global_batches(steps: int, batch_size: int, seed: int):
    """(images, z) of the first ``steps`` global batches of a digits run, as one process takes them."""
    dataset, _ = load_dataset("digits", DataOptions(size=32, channels=1))
    loader = make_loader(dataset, EpochBatchSampler(len(dataset), batch_size, seed, epoch=0))
    for step, batch in zip(range(steps), loader):
        yield batch.images, step_noise(seed, step, batch_size, 100, "normal")


def test_rank_slices_make_up_the_global_batch():
    whole = list(EpochBatchSampler(100, 12, seed=3, epoch=1, start=2))
    assert len(whole) == 6 and all(len(b) == 12 for b in whole)
    for world in (2, 3, 4):
        slices = [list(EpochBatchSampler(100, 12, 3, 1, 2, rank=r, world_size=world)) for r in range(world)]
        for b, batch in enumerate(whole):
            assert sum((s[b] for s in slices), []) == batch
            seen = [set(s[b]) for s in slices]
            assert all(len(a) == 12 // world for a in seen)
            assert len(set().union(*seen)) == 12  # disjoint: no image is in two ranks' slices
    with pytest.raises(ValueError):
        EpochBatchSampler(100, 12, 3, 1, rank=0, world_size=5)


def test_each_rank_draws_its_slice_of_the_global_z():
    whole = step_noise(seed=7, step=11, batch_size=8, nz=5, prior="normal")
    parts = [step_noise(7, 11, 8, 5, "normal", rank=r, world_size=4) for r in range(4)]
    assert all(p.shape == (2, 5) for p in parts)
    assert torch.equal(torch.cat(parts), whole)
    assert not torch.equal(whole, step_noise(7, 12, 8, 5, "normal"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nproc", "2", "--batch-size", "63"], "does not split evenly over 2 processes"),
        (["--nproc", "2", "--sync-bn"], "--sync-bn needs CUDA devices"),
        (["--nproc", "2", "--nnodes", "2"], "--rdzv-endpoint HOST:PORT"),
        (["--nproc", "0"], "--nproc must be at least 1"),
        (["--nproc", "2", "--nnodes", "x"], "--nnodes must be"),
    ],
)
def test_launch_refuses_bad_options_before_starting(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "digits", "--device", "cpu", "--out", "runs/x", *args])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "runs" / "x").exists()


def test_nproc_under_torchrun_is_refused(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    result = cli(["train", "digits", "--nproc", "2"])
    assert result.exit_code == ExitCode.BAD_INPUT and "torchrun's --nproc-per-node" in result.stderr


def test_resume_with_a_process_count_that_does_not_split_the_batch_is_refused(trained_run, cli):
    result = cli(["train", "--resume", trained_run, "--nproc", "3"])  # its batch is 64
    assert (
        result.exit_code == ExitCode.BAD_INPUT
        and "the batch of 64 does not split evenly over 3 processes" in result.stderr
    )


def test_sync_batchnorm_models_save_plain_batchnorm_generators():
    from dcgan_cli.core.model import build_models
    from dcgan_cli.training.distributed import to_plain_batchnorm, to_sync_batchnorm
    from dcgan_cli.training.step import standing_generator

    plain, _ = build_models(DCGANConfig(size=32, channels=1, ngf=8, ndf=8), seed=0)
    synced = to_sync_batchnorm(build_models(DCGANConfig(size=32, channels=1, ngf=8, ndf=8), seed=0)[0])
    assert sum(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules()) == 3
    assert synced.state_dict().keys() == plain.state_dict().keys()  # checkpoints load either way
    # The standing generator (rank 0 alone measures it) must not try to sync with other ranks.
    standing = standing_generator(synced, seed=1, batches=2, batch_size=16)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in standing.modules())
    z = torch.randn(4, 100)
    with torch.no_grad():
        assert torch.equal(standing(z), standing_generator(plain, seed=1, batches=2, batch_size=16)(z))
    back = to_plain_batchnorm(synced)
    assert all(type(m) is not torch.nn.SyncBatchNorm for m in back.modules())


def test_workers_get_the_arguments_the_user_gave():
    import typer

    from dcgan_cli.cli import build_app
    from dcgan_cli.commands.train import LAUNCH_OPTIONS, worker_arguments

    command = typer.main.get_command(build_app()).commands["train"]
    given = [
        "fake",
        "-o",
        "runs/x",
        "--no-channels-last",
        "--compile",
        "--precision",
        "bf16",
        "--batch-size",
        "32",
        "--nproc",
        "2",
        "--nnodes",
        "1",
    ]
    ctx = command.make_context("train", list(given))
    args = worker_arguments(ctx, {"out": "runs/y"}, LAUNCH_OPTIONS)
    assert "--nproc" not in args and "--nnodes" not in args and "--lr" not in args  # defaults stay defaults
    again = command.make_context("train", list(args)).params
    # Typer hands a path option over as str or Path depending on its version: compare like with like.
    expected = {**ctx.params, "out": type(ctx.params["out"])("runs/y"), "nproc": 1, "nnodes": "1"}
    assert again == expected
