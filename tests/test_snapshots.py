"""Epoch-end snapshots on a budget (training/snapshots.py): when they are taken, and that a run
whose middle epochs were passed over is as whole as one that took them all."""

import json

import pytest
from PIL import Image

from dcgan_cli.core.errors import ExitCode
from dcgan_cli.core.files import read_safetensors
from dcgan_cli.training.checkpoints import list_checkpoints
from dcgan_cli.training.snapshots import SnapshotSchedule


def test_auto_takes_the_first_then_only_what_the_budget_allows_and_always_the_last():
    s = SnapshotSchedule(budget=0.02, started=0.0)
    assert s.due(1, last=False, now=1.0)  # the session's first epoch end, whatever it costs
    s.record(0.3)
    assert not s.due(2, last=False, now=10.0)  # 0.3 s of 10 s is 3%
    assert s.due(3, last=False, now=15.0)  # 0.3 s of 15 s is 2%
    # CPU time the writer spent on the files counts too: on a busy CPU training pays for it.
    assert not s.due(3, last=False, background_s=0.2, now=15.0)
    assert s.due(4, last=True, background_s=100.0, now=15.1)  # the last epoch end of the session


def test_every_n_epochs_whatever_it_costs():
    s = SnapshotSchedule(every=3, started=0.0)
    assert s.due(1, last=False, now=0.1)
    s.record(50.0)
    assert [e for e in range(2, 10) if s.due(e, last=False, now=0.2)] == [3, 6, 9]
    assert s.due(10, last=True, now=0.2)


def snapshot_steps(root):
    """The steps of the checkpoints, the sample grids' epochs, and the steps of the quality lines."""
    checkpoints = sorted(step for step, _ in list_checkpoints(root))
    epochs = sorted(int(p.stem.split("-")[1]) for p in (root / "samples").glob("epoch-*.png"))
    quality = [json.loads(line)["step"] for line in (root / "quality.jsonl").read_text().splitlines()]
    return checkpoints, epochs, quality


@pytest.mark.parametrize("every, expected_epochs", [(1, [1, 2, 3, 4, 5, 6]), (4, [1, 4, 6])])
def test_snapshot_every_n_epochs_end_to_end(tmp_path, make_run, every, expected_epochs):
    # 1,797 digits at batch 256: 7 steps an epoch; 6 epochs.
    root = make_run(tmp_path / "run", steps=42, batch_size=256, keep_checkpoints=10, snapshot_every=every)
    checkpoints, epochs, _ = snapshot_steps(root)
    assert epochs == expected_epochs
    assert checkpoints == [7 * e for e in expected_epochs]  # each snapshot is a checkpoint and a grid of one step


def test_auto_passes_over_middle_epochs_and_leaves_a_whole_run(tmp_path, make_run, resume_and_check):
    # Epochs of one step of a tiny model: a snapshot (standing statistics, three passes of G, the
    # files) costs far more than 2% of an epoch, so auto takes the first and the last alone.
    root = make_run(tmp_path / "run", steps=12, ngf=8, ndf=8, batch_size=1024, keep_checkpoints=20)
    checkpoints, epochs, quality = snapshot_steps(root)
    assert epochs[0] == 1 and epochs[-1] == 12 and len(epochs) < 12
    assert checkpoints == epochs and quality[0] == 1 and quality[-1] == 12  # one step per epoch
    # What a snapshot leaves agrees: latest.json, the generator files and the newest grid are of step 12.
    latest = json.loads((root / "latest.json").read_text())
    assert latest["step"] == 12
    for name in ("generator", "discriminator"):
        assert json.loads(read_safetensors(root / f"{name}.safetensors")[1]["meta"])["step"] == 12
    assert Image.open(root / "samples" / "epoch-012.png").size[0] > 0
    # A resume starts from the newest snapshot and takes its own first and last.
    resume_and_check(root, at=12, until=15)
    checkpoints, epochs, _ = snapshot_steps(root)
    assert epochs[-2:] == [13, 15] and checkpoints[-2:] == [13, 15]


def test_snapshot_every_is_checked_and_changes_with_a_resume(tmp_path, make_run, cli):
    root = make_run(tmp_path / "run", steps=7, batch_size=256)
    assert json.loads((root / "config.json").read_text())["train"]["snapshot_every"] == 0
    bad = cli(["train", "--resume", root, "--epochs", "2", "--snapshot-every", "-1"])
    assert bad.exit_code == ExitCode.BAD_INPUT and "snapshot_every must be a whole number of epochs" in bad.stderr
    assert bad.exception is None or isinstance(bad.exception, SystemExit)  # one line, no traceback
    assert (
        json.loads((root / "config.json").read_text())["train"]["snapshot_every"] == 0
    )  # a refused resume changes nothing
    ok = cli(["train", "--resume", root, "--epochs", "3", "--snapshot-every", "1", "--json"])
    assert ok.exit_code == 0, ok.output
    assert json.loads((root / "config.json").read_text())["train"]["snapshot_every"] == 1
    assert "snapshots every epoch" in ok.stderr
    assert snapshot_steps(root)[1] == [1, 2, 3]
    # The session says what it took and what that cost: epochs 2 and 3, inside its own time.
    done = json.loads(ok.stdout)
    assert done["snapshots"] == 2 and done["steps_run"] == 14
    assert 0 < done["extras_seconds"] < done["seconds"]
