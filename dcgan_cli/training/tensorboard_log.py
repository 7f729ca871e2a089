"""TensorBoard logging for training (``dcgan train --tensorboard``): scalars and sample grids.

The ``tensorboard`` package is optional; ``require_tensorboard()`` says how to install it.
Event files go to RUN/tensorboard/; ``tensorboard --logdir RUN/tensorboard`` shows them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from dcgan_cli.core.errors import DcganError
from dcgan_cli.training.reporters import TrainingReporter

INSTALL_HINT = "pip install tensorboard  (or: pip install 'dcgan-cli[tensorboard]')"

# metrics.jsonl key -> TensorBoard tag; the part before "/" groups the charts.
SCALAR_TAGS = {
    "loss_d": "loss/D",
    "loss_g": "loss/G",
    "d_x": "D_output/real_D(x)",
    "d_g_z": "D_output/fake_D(G(z))",
    "d_g_z_after": "D_output/fake_after_D_step",
    "images_per_s": "speed/images_per_s",
}


def require_tensorboard() -> None:
    """Raise a DcganError saying how to install TensorBoard when it is missing."""
    try:
        importlib.import_module("tensorboard")
        importlib.import_module("torch.utils.tensorboard")
    except ImportError as exc:
        raise DcganError(
            f"--tensorboard needs the tensorboard package, which is not installed ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None


class TensorBoardReporter(TrainingReporter):
    """Writes each logged metrics line as scalars and each epoch's sample grid as an image,
    and passes every call on to ``inner`` (the progress bar, say)."""

    def __init__(self, log_dir: Path | str, inner: TrainingReporter | None = None):
        require_tensorboard()
        self.log_dir = Path(log_dir)
        self.inner = inner or TrainingReporter()
        self.writer = None

    def start(self, *, total_steps, done_steps, steps_per_epoch, batch_size):
        from torch.utils.tensorboard import SummaryWriter

        # On resume, purge_step hides events a crashed run wrote after the checkpoint we resume from.
        self.writer = SummaryWriter(str(self.log_dir), purge_step=done_steps or None)
        self.inner.start(
            total_steps=total_steps, done_steps=done_steps, steps_per_epoch=steps_per_epoch, batch_size=batch_size
        )

    def step(self, step, epoch, metrics):
        if metrics and self.writer is not None:
            for key, tag in SCALAR_TAGS.items():
                if key in metrics:
                    self.writer.add_scalar(tag, metrics[key], global_step=step)
        self.inner.step(step, epoch, metrics)

    def samples(self, step, epoch, path):
        if self.writer is not None:
            import numpy as np
            from PIL import Image

            with Image.open(path) as image:
                array = np.asarray(image.convert("RGB"))
            self.writer.add_image("samples", array, global_step=step, dataformats="HWC")
            self.writer.flush()
        self.inner.samples(step, epoch, path)

    def note(self, text):
        self.inner.note(text)

    def finish(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.inner.finish()
