"""Wall-clock alarms for the senders, so that nothing polls.

A sender sleeps until its next retry is due or its idle association is to be released;
it asks a :class:`Timer` to call it back then.  Times are wall-clock seconds
(``time.time()``) because retry times are stored in the outbox and outlive the process.
Callbacks always run on the event loop's thread.  Tests use a fake that moves only when
told to.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.from_thread
import anyio.lowlevel

__all__ = ["ThreadTimer", "Timer", "TimerHandle"]


class TimerHandle(Protocol):
    """A scheduled callback."""

    def cancel(self) -> None:
        """Do not call it (harmless if it already ran)."""
        ...


class Timer(Protocol):
    """A wall clock that can call back later."""

    def now(self) -> float:
        """Wall-clock seconds (``time.time()`` for the real timer)."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback`` on the event loop's thread after ``delay`` seconds."""
        ...


class ThreadTimer:
    """The real timer: a :class:`threading.Timer` per alarm that enters the event loop.

    Create it on the event loop (it captures the loop's token).  A callback due after the
    loop has finished is dropped.
    """

    def __init__(self) -> None:
        self._token = anyio.lowlevel.current_token()

    def now(self) -> float:
        """``time.time()``."""
        return time.time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Start a daemon timer thread that runs ``callback`` on the loop."""
        token = self._token

        def fire() -> None:
            # RunFinishedError/RuntimeError: the loop is gone, nobody to wake.
            with contextlib.suppress(anyio.RunFinishedError, RuntimeError):
                anyio.from_thread.run_sync(callback, token=token)

        alarm = threading.Timer(max(0.0, delay), fire)
        alarm.daemon = True
        alarm.name = "xvactor-sender-timer"
        alarm.start()
        return alarm
