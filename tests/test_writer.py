"""The background writer (training/writer.py), which trainers on a GPU use: order, errors, CPU time.
On the CPU the trainer runs the same jobs inline, which every training test covers."""

import threading

import pytest

from dcgan_cli.core.errors import DcganError
from dcgan_cli.training.writer import BackgroundWriter


def test_jobs_run_on_one_other_thread_in_the_order_given_and_their_cpu_time_is_counted():
    writer, seen = BackgroundWriter(), []
    for i in range(6):
        writer.submit(lambda i=i: seen.append((i, threading.current_thread().name, sum(range(200_000)))))
    writer.flush()
    assert [i for i, _, _ in seen] == list(range(6))
    assert {name for _, name, _ in seen} == {"dcgan-writer"}
    assert writer.cpu_seconds > 0
    writer.close()


def test_a_failed_job_stops_later_ones_and_is_raised_in_the_caller():
    writer, seen = BackgroundWriter(), []

    def fail():
        raise DcganError("disk full")

    with pytest.raises(DcganError, match="disk full"):  # at the next submit or at the flush
        writer.submit(fail)
        writer.submit(seen.append, "after")  # written after a failure would break the files' order
        writer.flush()
    assert seen == []
    writer.close()


def test_inline_runs_at_once_and_counts_no_thread_time():
    writer, seen = BackgroundWriter(enabled=False), []
    writer.submit(lambda: seen.append(threading.current_thread() is threading.main_thread()))
    assert seen == [True] and writer.cpu_seconds == 0
