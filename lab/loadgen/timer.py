"""Sleeping until an instant with sub-millisecond accuracy, without spinning a core.

The event loop's timers are millisecond-grained (uvloop returns at once from sleeps under
1 ms), so waiting for a due time with them means either being up to a millisecond late or
spinning. On Linux a timerfd armed at an absolute CLOCK_MONOTONIC instant (with the thread's
timer slack at 1 ns) wakes the loop through its normal I/O polling within tens of
microseconds; elsewhere the scheduler falls back to a coarse sleep plus a short spin.
Measured at 2,000 requests/s: the worker's CPU fell from 95-98 % to 25-31 % of a core with p99
0.63-0.74 ms (see benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import sys
import time

CLOCK_MONOTONIC = 1
TFD_TIMER_ABSTIME = 1
PR_SET_TIMERSLACK = 29


class _TimeSpec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("it_interval", _TimeSpec), ("it_value", _TimeSpec)]


def perf_counter_is_monotonic() -> bool:
    """timerfd deadlines are CLOCK_MONOTONIC: the generator's clock must be the same one."""
    return time.get_clock_info("perf_counter").implementation == "clock_gettime(CLOCK_MONOTONIC)"


class TimerFdSleeper:
    """`await until(deadline_ns)`: wake at an absolute perf_counter_ns instant."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        fd = self._libc.timerfd_create(CLOCK_MONOTONIC, os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create failed")
        self.fd = fd
        self._loop = loop
        self._waiter: asyncio.Future[None] | None = None
        loop.add_reader(fd, self._fired)

    def _fired(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            return
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def until(self, deadline_ns: int) -> None:
        spec = _ITimerSpec()
        spec.it_value.tv_sec, spec.it_value.tv_nsec = divmod(max(deadline_ns, 1), 1_000_000_000)
        if self._libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        self._waiter = self._loop.create_future()
        await self._waiter

    def close(self) -> None:
        self._loop.remove_reader(self.fd)
        os.close(self.fd)


def make_sleeper(loop: asyncio.AbstractEventLoop) -> TimerFdSleeper | None:
    """A timerfd sleeper on Linux, None where there is none (the caller falls back)."""
    if not sys.platform.startswith("linux") or not perf_counter_is_monotonic():
        return None
    try:
        return TimerFdSleeper(loop)
    except (OSError, AttributeError):
        return None
