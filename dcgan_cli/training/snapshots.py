"""When training takes its epoch-end snapshot: the checkpoint, the sample grid, generator.safetensors
and discriminator.safetensors, and the quality score, all of one step.

A snapshot costs about as much at every epoch end (standing statistics, three passes of G,
the files: about 0.4 s of CPU for the digits model), while an epoch of the bundled digits is
5 s on 2 CPU cores and one of CelebA at 64x64 many minutes. Taken at every epoch end, with
start-up, they made a 50-epoch digits run take 1.14x its bare steps (benchmarks/
train_overhead.py). So by default ("auto") an epoch end takes a snapshot only while
snapshots so far have cost at most ``SNAPSHOT_BUDGET`` of the session's training time: on
long epochs every one, on the digits about one in four. The session's first and last epoch
end, and a stop, always take one. ``every=N`` takes one every N epochs, whatever it costs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

SNAPSHOT_BUDGET = 0.02  # share of the session's training time that auto snapshots may take


@dataclass
class SnapshotSchedule:
    """Decides at each epoch end whether to snapshot; told what each snapshot cost."""

    every: int = 0  # epochs between snapshots; 0: auto, on SNAPSHOT_BUDGET
    budget: float = SNAPSHOT_BUDGET
    started: float = field(default_factory=time.perf_counter)
    spent: float = 0.0  # seconds this session's snapshots took on the training thread
    taken: int = 0

    def due(self, epoch: int, last: bool, background_s: float = 0.0, now: float | None = None) -> bool:
        """Snapshot at the end of ``epoch`` (counted from 1)? ``last``: the session ends here.

        ``background_s``: CPU seconds the background writer has spent on snapshot files, which
        the training thread waits for only when the cores are busy, as they are on a CPU.
        """
        if last or self.taken == 0:
            return True
        if self.every:
            return epoch % self.every == 0
        elapsed = (time.perf_counter() if now is None else now) - self.started
        return self.spent + background_s <= self.budget * elapsed

    def record(self, seconds: float) -> None:
        self.spent += seconds
        self.taken += 1
