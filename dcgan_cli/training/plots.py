"""losses.png: the loss curves of a run, drawn from metrics.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from dcgan_cli.core.files import (
    atomic_output,
)

PLOT_EVERY_S = 60.0  # the trainer redraws losses.png at most this often, and at the end of a session


def write_loss_plot(metrics_path: Path, out: Path) -> None:
    """losses.png: G and D losses, and D(x) against D(G(z)), over the steps."""
    # A Figure of its own, not pyplot's global state: the trainer draws it on its writer thread.
    from matplotlib.figure import Figure

    rows = []
    if metrics_path.exists():
        for line in metrics_path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a crash
    if not rows:
        return
    steps = [r["step"] for r in rows]
    fig = Figure(figsize=(8, 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.plot(steps, [r["loss_d"] for r in rows], label="D loss")
    ax1.plot(steps, [r["loss_g"] for r in rows], label="G loss")
    ax1.set_ylabel("loss")
    ax1.legend()
    ax2.plot(steps, [r["d_x"] for r in rows], label="D(x)")
    ax2.plot(steps, [r["d_g_z"] for r in rows], label="D(G(z))")
    ax2.set_ylabel("probability real")
    ax2.set_xlabel("step")
    ax2.set_ylim(0, 1)
    ax2.legend()
    fig.tight_layout()
    with atomic_output(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
