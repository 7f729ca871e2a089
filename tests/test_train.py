import json
import re
import shutil

import torch
from PIL import Image

from dcgan_cli.core.files import read_safetensors
from dcgan_cli.core.networks import load_generator
from dcgan_cli.training.checkpoints import latest_checkpoint, list_checkpoints


def final_state(root):
    _, tensors, meta = latest_checkpoint(root)
    return tensors, meta


def assert_bitwise_equal(a, b):
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs"


def test_resume_is_bitwise_identical_to_an_uninterrupted_run(tmp_path, make_run, resume_and_check):
    # 1,797 digits at batch 128: 14 steps an epoch. Two epochs straight...
    straight = make_run(tmp_path / "straight", steps=28, batch_size=128)
    # ...against one epoch, a stop, a resume for the second.
    split = make_run(tmp_path / "split", steps=14, batch_size=128)
    assert [s for s, _ in list_checkpoints(split)][0] == 14
    resume_and_check(split, at=14, until=28)  # began at step 14 and ran 14 steps, not 28
    assert latest_checkpoint(straight)[2]["resumed_from_step"] is None

    a, meta_a = final_state(straight)
    b, meta_b = final_state(split)
    assert meta_a["step"] == meta_b["step"] == 28
    assert any(k.startswith("optG.") for k in a) and any(k.startswith("optD.") for k in a)
    assert_bitwise_equal(a, b)  # G, D, both Adam states, RNG state
    assert_bitwise_equal(
        read_safetensors(straight / "generator.safetensors")[0], read_safetensors(split / "generator.safetensors")[0]
    )


def test_resume_mid_epoch_from_a_step_checkpoint(tmp_path, make_run, resume_and_check):
    straight = make_run(tmp_path / "straight", steps=20, batch_size=128)
    split = make_run(tmp_path / "split", steps=18, batch_size=128, checkpoint_every=5)
    # Pretend the process died after step 15: drop the newer checkpoint written at the stop.
    for step, path in list_checkpoints(split):
        if step > 15:
            path.unlink()
    resume_and_check(split, at=15, until=20)
    assert_bitwise_equal(final_state(straight)[0], final_state(split)[0])
    # metrics.jsonl keeps one line per logged step, without the lines of the lost steps twice.
    steps = [json.loads(line)["step"] for line in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))


def test_run_folder_contents(trained_run):
    root = trained_run
    config = json.loads((root / "config.json").read_text())
    assert config["model"] == {"size": 32, "channels": 1, "nz": 100, "ngf": 16, "ndf": 16, "prior": "normal"}
    assert config["train"]["lr"] == 2e-4 and config["train"]["beta1"] == 0.5
    assert {"dcgan-cli", "torch", "python"} <= set(config["versions"])
    latest = json.loads((root / "latest.json").read_text())
    assert (root / latest["checkpoint"]).is_file() and latest["step"] == 28
    # 1,797 digits at batch 64: 28 steps is one epoch -> one sample grid of 8x8 tiles of 32px.
    grid = Image.open(root / "samples" / "epoch-001.png")
    assert grid.size == (8 * 34 + 2, 8 * 34 + 2)
    rows = [json.loads(line) for line in (root / "metrics.jsonl").read_text().splitlines()]
    assert rows and {"step", "epoch", "loss_d", "loss_g", "d_x", "d_g_z"} <= set(rows[0])
    assert 0 <= rows[-1]["d_x"] <= 1
    assert Image.open(root / "losses.png").size[0] > 100
    assert not list(root.rglob(".*.tmp-*")), "no temporary files are left behind"


def test_generator_file_loads_anywhere(trained_run, tmp_path):
    netG = load_generator(trained_run)
    assert not netG.training
    alone = tmp_path / "elsewhere" / "generator.safetensors"
    alone.parent.mkdir()
    shutil.copy(trained_run / "generator.safetensors", alone)
    netG2 = load_generator(alone)  # no config.json beside it: the file carries its model arguments
    z = torch.randn(5, 100)
    with torch.no_grad():
        assert torch.equal(netG(z), netG2(z))


def test_cli_train_then_sample_on_the_newest_run(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = cli(
        [
            "train",
            "fake",
            "--size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "64",
            "--ngf",
            "8",
            "--ndf",
            "8",
            "--device",
            "cpu",
            "--out",
            "runs/smoke",
        ]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs/smoke/generator.safetensors").is_file()
    result = cli(["sample", "-n", "4", "--out", "grid.png"])
    assert result.exit_code == 0, result.output
    assert "Using run runs/smoke" in result.stderr
    assert Image.open(tmp_path / "grid.png").size == (2 * 34 + 2, 2 * 34 + 2)
    # --resume with more epochs continues the same run.
    result = cli(["train", "--resume", "runs/smoke", "--epochs", "2"])
    assert result.exit_code == 0, result.output
    assert "Resuming from step-0000008.safetensors (step 8, epoch 2)" in result.stderr
    assert "Done: 16 steps (8 run now, resumed at step 8)" in result.stdout
    assert re.search(r"img/s \(1 snapshot, \d+\.\d% of\s+the time\)", result.stdout)  # the session's one epoch end
    assert latest_checkpoint(tmp_path / "runs/smoke")[2]["step"] == 16
