"""Which rank a failed launch blames: the cause, not the ranks torchrun stopped because of it."""

from __future__ import annotations

import signal

from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

from service.launch import EXIT_RUN_ENDED, describe_failure


def failure(rank: int, exitcode: int) -> ProcessFailure:
    """torchrun's own record of an exit (no error file: stamped with the current second)."""
    return ProcessFailure(local_rank=rank, pid=1000 + rank, exitcode=exitcode, error_file="")


def test_a_killed_rank_is_blamed_not_the_rank_torchrun_terminated_after_it() -> None:
    failures = {0: failure(0, -signal.SIGTERM), 1: failure(1, -signal.SIGKILL)}
    failures[0].timestamp = failures[1].timestamp  # noticed in the same second
    rank, line = describe_failure(failures)
    assert rank == 1 and line == "rank 1 was killed by SIGKILL"


def test_rank_zero_ending_its_run_is_an_echo_and_a_crash_is_the_cause() -> None:
    failures = {0: failure(0, EXIT_RUN_ENDED), 1: failure(1, 1)}
    failures[1].timestamp = failures[0].timestamp + 1  # noticed later, still the cause
    assert describe_failure(failures) == (1, "rank 1 exited with code 1")


def test_when_every_rank_was_terminated_the_first_is_named() -> None:
    failures = {1: failure(1, -signal.SIGTERM), 0: failure(0, -signal.SIGTERM)}
    failures[1].timestamp = failures[0].timestamp
    assert describe_failure(failures) == (0, "rank 0 was killed by SIGTERM")
