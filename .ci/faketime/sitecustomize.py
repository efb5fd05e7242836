"""Loaded by every Python process of .ci/run's second pass (the clock moved 400 days ahead), through
PYTHONPATH; never by the product or a normal test run.

That pass keeps the monotonic clock real (FAKETIME_DONT_FAKE_MONOTONIC=1): with a faked monotonic clock,
every lock, Event and Queue timeout in Python 3.11 waits for the real kernel to reach a deadline 400 days
away. But libfaketime 0.9.10 (Debian 12) still rewrites the absolute monotonic deadline that
``time.sleep`` hands to ``clock_nanosleep``, so the kernel rejects it and every ``time.sleep`` raises
``OSError: [Errno 22] Invalid argument`` (https://github.com/wolfcw/libfaketime/issues/426, fixed after
0.9.10). ``select`` takes a relative timeout, which libfaketime leaves alone, so sleeping through it
keeps the same contract: at least ``seconds`` of real time, interruptible by signals.
"""

import select
import time


def _sleep(seconds: float) -> None:
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
