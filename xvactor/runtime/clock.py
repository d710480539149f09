"""The clock the supervisors use to measure restart intensity.

Restart intensity ("more than N restarts in T seconds") is a decision over timestamps, so it
takes an injectable clock: production uses :class:`MonotonicClock`, tests use
:class:`xvactor.testing.fakes.FakeClock` and advance time explicitly instead of sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "MonotonicClock"]


class Clock(Protocol):
    """A source of monotonic time in seconds."""

    def now(self) -> float:
        """Return the current time in seconds; never goes backwards.

        Returns
        -------
        float
            Seconds since an arbitrary, fixed origin.
        """
        ...


class MonotonicClock:
    """The real clock: :func:`time.monotonic`."""

    def now(self) -> float:
        """Return :func:`time.monotonic`.

        Returns
        -------
        float
            Monotonic seconds.
        """
        return time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"
