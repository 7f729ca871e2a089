"""What training writes, off the step's critical path: one background thread, in the order given.

The trainer hands over snapshots (tensors copied at the moment of the call) and the writer
thread serialises and writes them: checkpoint, latest.json, generator files, sample grids,
the loss plot. Writes keep their order, so latest.json never names a checkpoint that is not
on disk, and each write stays atomic (temporary file, fsync, rename): a crash at any moment
leaves the last complete checkpoint, as the synchronous writes did.

The trainer uses the thread when it trains on a GPU, whose host cores are idle. On the CPU it
runs the jobs inline (``enabled=False``): the step already has every core, and a second thread
there made the steps after it 15% slower.

A failed write (a full disk) is raised in the training thread at its next submit, flush or
close, with the writer's own message. At most ``max_pending`` jobs wait: a slow disk makes
the trainer wait rather than hold snapshot after snapshot in memory.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable


class BackgroundWriter:
    """Runs ``submit``-ted jobs one after another on a daemon thread; ``enabled=False`` runs them inline."""

    def __init__(self, *, enabled: bool = True, max_pending: int = 2):
        self.enabled = enabled
        self._jobs: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        # CPU time of the thread's jobs so far: on a busy CPU training pays for it (inline jobs are not counted).
        self.cpu_seconds = 0.0

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if self._error is None:  # after a failure nothing more is written: order matters
                    began = time.thread_time()
                    try:
                        job()
                    finally:
                        self.cpu_seconds += time.thread_time() - began
            except BaseException as exc:  # raised again in the training thread
                self._error = exc
            finally:
                self._jobs.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable, *args, **kwargs) -> None:
        """Run ``fn(*args, **kwargs)`` after the jobs before it; first raise an earlier job's error."""
        self._raise_error()
        if not self.enabled:
            fn(*args, **kwargs)
            return
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="dcgan-writer", daemon=True)
            self._thread.start()
        self._jobs.put(lambda: fn(*args, **kwargs))

    def flush(self) -> None:
        """Wait until every job submitted so far is written; raise the first error."""
        if self._thread is not None:
            self._jobs.join()
        self._raise_error()

    def close(self, *, raise_errors: bool = True) -> None:
        """Flush and stop the thread. ``raise_errors=False`` while another exception is on its way out."""
        try:
            if self._thread is not None:
                self._jobs.join()
                self._jobs.put(None)
                self._thread.join()
                self._thread = None
        finally:
            if raise_errors:
                self._raise_error()
