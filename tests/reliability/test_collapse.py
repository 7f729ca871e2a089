"""Mode collapse: the quality signal, the collapse warning and the best checkpoint kept from pruning."""

import json
from pathlib import Path

import pytest
import torch

import dcgan_cli
from dcgan_cli import plugins
from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.core.networks import load_discriminator, load_generator
from dcgan_cli.core.prior import seeded_z
from dcgan_cli.data.loading import TensorImages, load_digits_images
from dcgan_cli.training.checkpoints import latest_checkpoint, list_checkpoints
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.quality import QualityProbe, QualityRecord, QualityTracker
from dcgan_cli.training.reporters import TrainingReporter
from dcgan_cli.training.trainer import Trainer

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "digits-run"


@pytest.fixture(scope="module")
def digits_and_samples():
    """Real digits and 256 samples of the committed trained digits generator."""
    real = load_digits_images(32, 1).images
    with torch.no_grad():
        samples = load_generator(FIXTURE)(seeded_z(1, 256, 100, "normal"))
    return real, samples


def test_probe_ranks_trained_collapsed_and_noise_samples(digits_and_samples):
    real, samples = digits_and_samples
    probe = QualityProbe.from_images(real[:256])
    held_out, trained = probe.score(real[256:512]), probe.score(samples)
    three_modes = probe.score(samples[:3].repeat(86, 1, 1, 1)[:256])
    one_mode = probe.score(samples[:1].expand(256, -1, -1, -1))
    noise = probe.score(torch.rand(256, 1, 32, 32) * 2 - 1)
    assert 0.9 < held_out["diversity"] < 1.1 and trained["diversity"] > 0.75
    assert held_out["thumb_fd"] < trained["thumb_fd"] < three_modes["thumb_fd"] < one_mode["thumb_fd"]
    assert one_mode["diversity"] == 0 and three_modes["diversity"] < trained["diversity"] / 2
    assert noise["thumb_fd"] > one_mode["thumb_fd"]


def record(epoch, fd, diversity):
    return QualityRecord(step=10 * epoch, epoch=epoch, thumb_fd=fd, diversity=diversity)


def test_tracker_warns_once_per_fall_and_not_when_samples_sharpen():
    tracker = QualityTracker()
    # Early noisy samples are diverse; sharper, better ones less so: no warning, a new best.
    assert tracker.add(record(1, 30.0, 0.9)) == (True, None)
    assert tracker.add(record(2, 5.0, 0.4)) == (True, None)
    assert tracker.add(record(3, 6.0, 0.8)) == (False, None)
    is_best, warning = tracker.add(record(4, 12.0, 0.3))  # worse and under half the peak: collapse
    assert not is_best and "mode collapse likely at epoch 4" in warning and "best epoch so far is 2" in warning
    assert tracker.add(record(5, 14.0, 0.2)) == (False, None)  # still collapsed: said already
    assert tracker.add(record(6, 7.0, 0.85)) == (False, None)  # recovered
    assert "epoch 7" in tracker.add(record(7, 9.0, 0.1))[1]  # a second fall is warned again
    assert tracker.best.epoch == 2
    # The tracker rebuilt from the history (a resume) holds the same state.
    again = QualityTracker([record(e, *v) for e, v in enumerate([(30.0, 0.9), (5.0, 0.4)], start=1)])
    assert again.best.epoch == 2 and again.peak_diversity == 0.9


class DigitSubset:
    """320 real digits: 5 steps of 64 per epoch."""

    @dcgan_cli.hookimpl
    def dcgan_register_datasets(self, register):
        register(
            "digits-320",
            lambda options: TensorImages(load_digits_images(32, 1).images[:320].clone()),
            size=32,
            channels=1,
        )


class CollapseAfter(TrainingReporter):
    """Fault injection: at ``step`` the generator's first layer is zeroed, so every z draws the same image."""

    def __init__(self, trainer, step):
        self.trainer, self.at, self.notes = trainer, step, []

    def step(self, step, epoch, metrics):
        if step == self.at:
            with torch.no_grad():
                self.trainer.netG.blocks[0].conv.weight.zero_()

    def note(self, text):
        self.notes.append(text)


def test_collapse_is_warned_and_the_best_epoch_survives_pruning(tmp_path):
    pm = plugins.get_plugin_manager()
    pm.register(DigitSubset(), name="digit-subset")
    try:
        run = tmp_path / "run"
        config = DCGANConfig.from_dict(json.loads((FIXTURE / "config.json").read_text())["model"])
        create_run(
            run,
            config,
            TrainConfig(
                dataset="digits-320", batch_size=64, epochs=2, keep_checkpoints=1, checkpoint_every=1000, device="cpu"
            ),
        )
        trainer = Trainer(run)
        # Start from the trained fixture, so epoch 1's samples are good ones.
        trainer.netG.load_state_dict(load_generator(FIXTURE).state_dict())
        trainer.netD.load_state_dict(load_discriminator(FIXTURE).state_dict())
        reporter = CollapseAfter(trainer, step=10)  # the last step of epoch 2, the last epoch
        trainer.run(reporter)
    finally:
        pm.unregister(name="digit-subset")

    lines = [json.loads(line) for line in (run / "quality.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert (
        lines[1]["diversity"] < 0.05 < 0.5 < lines[0]["diversity"] and lines[1]["thumb_fd"] > 3 * lines[0]["thumb_fd"]
    )
    warnings = [n for n in reporter.notes if "mode collapse likely" in n]
    assert len(warnings) == 1 and "at epoch 2" in warnings[0] and "best epoch so far is 1 (step 5" in warnings[0]

    best = json.loads((run / "best.json").read_text())
    assert best["epoch"] == 1 and best["checkpoint"] == "checkpoints/step-0000005.safetensors"
    # keep_checkpoints=1 keeps the newest (collapsed) checkpoint and, beside it, the best one.
    assert [step for step, _ in list_checkpoints(run)] == [10, 5]
    assert latest_checkpoint(run)[2]["step"] == 10
    probe = QualityProbe.from_images(load_digits_images(32, 1).images[:256])
    z = seeded_z(3, 256, 100, "normal")
    with torch.no_grad():
        best, newest = (probe.score(load_generator(path)(z)) for path in (run / "generator-best.safetensors", run))
    assert best["diversity"] > 0.5 and newest["diversity"] < 0.05
