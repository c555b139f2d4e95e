"""A signal that arrives while a result is being committed waits for the commit to finish."""

from __future__ import annotations

import os
import signal

import pytest

from lab.stack.stack import Terminated, signals_deferred


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_during_a_commit_is_raised_after_it(signum: int, raised: type[BaseException]) -> None:
    steps: list[str] = []
    handler = signal.getsignal(signum)
    with pytest.raises(raised), signals_deferred():
        steps.append("trial.json")
        os.kill(os.getpid(), signum)
        steps.append("trials.parquet")
        steps.append("status.json")
    assert steps == ["trial.json", "trials.parquet", "status.json"]
    assert signal.getsignal(signum) == handler  # the previous handler is back


def test_no_signal_no_exception() -> None:
    with signals_deferred():
        value = 1
    assert value == 1
