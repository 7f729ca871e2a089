"""--precision (autocast, gradient scaler), --channels-last and --compile."""

import json

import pytest
import torch

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.model import DCGANConfig, build_models
from dcgan_cli.training.checkpoints import latest_checkpoint
from dcgan_cli.training.config import TrainConfig
from dcgan_cli.training.step import gan_step, make_optimizers


def tiny_step_setup(memory_format=torch.channels_last):
    netG, netD = build_models(DCGANConfig(size=32, channels=1, ngf=8, ndf=8), seed=0)
    netG.to(memory_format=memory_format)
    netD.to(memory_format=memory_format)
    optG, optD = make_optimizers(netG, netD, TrainConfig())
    real = (torch.rand(16, 1, 32, 32) * 2 - 1).contiguous(memory_format=memory_format)
    return netG, netD, optG, optD, real, torch.randn(16, 100)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_the_convolutions_in_low_precision_and_keeps_fp32_weights(dtype):
    netG, netD, optG, optD, real, z = tiny_step_setup()
    seen = set()
    for conv in (netG.blocks[1].conv, netD.blocks[1].conv):
        conv.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
    before = [p.detach().clone() for p in (*netG.parameters(), *netD.parameters())]
    # A modest first scale: the default 2**16 overflows on the first step and skips it (by design).
    scaler = torch.amp.GradScaler("cpu", init_scale=128.0) if dtype == torch.float16 else None
    losses = gan_step(netG, netD, optG, optD, real, z, autocast_dtype=dtype, scaler=scaler)
    assert seen == {dtype}
    assert all(torch.isfinite(x) for x in losses) and all(x.dtype == torch.float32 for x in losses)
    after = list(netG.parameters()) + list(netD.parameters())
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in after)
    assert sum(not torch.equal(a, b) for a, b in zip(before, after)) == len(after)  # both networks learned


def test_fp16_resume_is_exact_and_carries_the_gradient_scaler(tmp_path, make_run, resume_and_check):
    straight = make_run(tmp_path / "straight", steps=4, ngf=8, ndf=8, batch_size=32, precision="fp16")
    split = make_run(tmp_path / "split", steps=2, ngf=8, ndf=8, batch_size=32, precision="fp16")
    resume_and_check(split, at=2, until=4)  # a resumption, not a fresh start landing on the same weights

    (_, a, meta_a), (_, b, meta_b) = latest_checkpoint(straight), latest_checkpoint(split)
    assert meta_a["precision"] == meta_b["precision"] == "fp16"
    # The scaler has moved from its initial state (the first step overflows at 2**16 and backs
    # off), and the resumed run carried it on: same scaler, bitwise-identical weights.
    assert (meta_b["scaler"]["scale"], meta_b["scaler"]["_growth_tracker"]) != (2.0**16, 0)
    assert meta_a["scaler"] == meta_b["scaler"]
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_switches_precision_and_layout(trained_run, cli):
    result = cli(["train", "--resume", trained_run, "--max-steps", "30", "--precision", "bf16", "--no-channels-last"])
    assert result.exit_code == 0, result.output
    assert "lr 0.0002; bf16; " in result.stderr  # no ", channels-last" after the precision
    train = json.loads((trained_run / "config.json").read_text())["train"]
    assert train["precision"] == "bf16" and train["channels_last"] is False
    _, tensors, meta = latest_checkpoint(trained_run)
    assert meta["step"] == 30 and meta["precision"] == "bf16"
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if k.startswith("G."))


def test_compiled_training_matches_eager_training_closely(tmp_path, make_run):
    eager = make_run(tmp_path / "eager", steps=2, ngf=8, ndf=8, batch_size=32)
    compiled = make_run(tmp_path / "compiled", steps=2, ngf=8, ndf=8, batch_size=32, compile=True)
    (_, a, _), (_, b, _) = latest_checkpoint(eager), latest_checkpoint(compiled)
    for key in a:
        if key.startswith(("G.", "D.")) and a[key].is_floating_point():
            torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4)


def test_bad_precision_is_one_clear_line(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(["train", "digits", "--precision", "fp8", "--out", "runs/x"])
    assert result.exit_code == ExitCode.USAGE  # a choice the parser refuses, naming the choices
    assert "'fp8' is not one of 'fp32', 'bf16', 'fp16'" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "runs" / "x").exists()
