"""Non-finite losses stop training with a clear message and keep the last good checkpoint."""

import pytest
import torch

import dcgan_cli
from dcgan_cli import plugins
from dcgan_cli.core.errors import DcganError
from dcgan_cli.core.model import DCGANConfig
from dcgan_cli.data.batches import EpochBatchSampler
from dcgan_cli.data.loading import TensorImages, load_digits_images
from dcgan_cli.training.checkpoints import latest_checkpoint
from dcgan_cli.training.config import TrainConfig, create_run
from dcgan_cli.training.trainer import Trainer


class PoisonedDigits:
    """Digits with one NaN image: the step whose batch holds it diverges."""

    @dcgan_cli.hookimpl
    def dcgan_register_datasets(self, register):
        def factory(options):
            images = load_digits_images(options.size, options.channels).images[:640].clone()
            fourth_batch = list(EpochBatchSampler(640, 64, seed=0, epoch=0))[3]
            images[fourth_batch[0]] = float("nan")  # step 4 diverges
            return TensorImages(images)

        register("poisoned-digits", factory, size=32, channels=1)


@pytest.fixture
def poisoned():
    pm = plugins.get_plugin_manager()
    pm.register(PoisonedDigits(), name="poisoned")
    yield
    pm.unregister(name="poisoned")


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, poisoned):
    run = tmp_path / "run"
    create_run(
        run,
        DCGANConfig(size=32, channels=1, ngf=8, ndf=8),
        TrainConfig(dataset="poisoned-digits", batch_size=64, epochs=1, log_every=1, checkpoint_every=1, device="cpu"),
    )
    with pytest.raises(DcganError, match=r"training diverged at step 4: loss is not finite") as info:
        Trainer(run).run()
    path, tensors, meta = latest_checkpoint(run)
    assert meta["step"] == 3
    assert f"the last good checkpoint {path.name} is kept" in str(info.value)
    assert all(torch.isfinite(t).all() for k, t in tensors.items() if t.is_floating_point())
