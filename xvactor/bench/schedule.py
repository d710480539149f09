"""When each request of one association goes out: closed or open loop, never polling.

Closed loop: the next request as soon as the previous one is answered.  Open loop
(``--rate R``): request ``i`` of association ``a`` (of ``n``) is due at
``start + (a + i * n) / R``, so the associations together offer ``R`` requests per second,
evenly interleaved.  The worker sleeps until the due time (one ``sleep`` call, no polling);
a request that is late goes at once, and its latency can be counted from its due time,
which does not hide queueing behind a slow answer (coordinated omission).

Clock and sleep are parameters, so the schedule is tested with a fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["Schedule"]


@dataclass
class Schedule:
    """The due times of one association's requests.

    Parameters
    ----------
    start : float
        Clock time of the run's start (all associations share it).
    count : int or None
        Requests to make; ``None`` for as many as fit before ``deadline``.
    deadline : float or None
        Clock time after which no request starts.
    rate : float or None
        Requests per second of the whole run (open loop); ``None`` for closed loop.
    associations, index : int
        How many associations share ``rate``, and which one this is.
    clock, sleep : callable
        ``time.monotonic`` and ``time.sleep`` by default.
    """

    start: float
    count: int | None = None
    deadline: float | None = None
    rate: float | None = None
    associations: int = 1
    index: int = 0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    def __post_init__(self) -> None:
        if self.count is None and self.deadline is None:
            raise ValueError("a schedule needs a count or a deadline")
        if self.rate is not None and self.rate <= 0:
            raise ValueError("the rate must be positive")

    def due(self, i: int) -> float | None:
        """When request ``i`` is due (open loop), or ``None`` (closed loop)."""
        if self.rate is None:
            return None
        return self.start + (self.index + i * self.associations) / self.rate

    def __iter__(self) -> Iterator[float]:
        """Yield, at the moment each request should start, the time it was due.

        In closed loop the "due" time is the moment of the yield itself.
        """
        i = 0
        while self.count is None or i < self.count:
            due = self.due(i)
            if self.deadline is not None and due is not None and due >= self.deadline:
                return
            now = self.clock()
            if due is not None and due > now:
                self.sleep(due - now)
                now = self.clock()
            if self.deadline is not None and now >= self.deadline:
                return
            yield due if due is not None else now
            i += 1
