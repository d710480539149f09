"""Supervision policy: child specifications and the pure "decide" step of a supervisor.

The vocabulary is Erlang/OTP's, used literally (*OTP Design Principles*, "Supervisor
Behaviour"):

* a restart **strategy** says which children restart when one terminates:
  ``one_for_one`` (that child), ``one_for_all`` (every child), ``rest_for_one`` (that child
  and every child started after it);
* a child's **restart type** says whether it is restarted at all: ``permanent`` always,
  ``transient`` only after an abnormal exit, ``temporary`` never;
* **restart intensity**: more than ``max_restarts`` restarts within ``max_seconds`` and the
  supervisor gives up, stops its children and escalates to its parent.

Everything here is free of I/O; :mod:`xvactor.runtime.supervisor` does the starting and
stopping.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xvactor.runtime.actor import Actor
from xvactor.runtime.clock import Clock
from xvactor.runtime.ref import ActorRef

if TYPE_CHECKING:
    from xvactor.runtime.supervisor import Supervisor

__all__ = [
    "ChildSpec",
    "Restart",
    "RestartIntensity",
    "Strategy",
    "SupervisorSpec",
    "restart_set",
    "should_restart",
]


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them terminates."""

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.StrEnum):
    """Whether a terminated child is restarted."""

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


@dataclass(frozen=True)
class ChildSpec:
    """An actor supervised as a child.

    Attributes
    ----------
    ref : ActorRef
        The actor's stable handle; its mailbox outlives restarts.
    factory : callable
        Builds a fresh actor instance; called for every (re)start.
    restart : Restart
        The child's restart type.
    shutdown : float
        Seconds an in-flight message gets to finish on stop before it is cancelled; the
        shielded ``stopping()`` then gets as long again.
    """

    ref: ActorRef[Any]
    factory: Callable[[], Actor[Any]]
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0

    def __post_init__(self) -> None:
        _check_shutdown(self.ref.name, self.shutdown)

    @property
    def name(self) -> str:
        """The child's name (its ref's)."""
        return self.ref.name


@dataclass(frozen=True)
class SupervisorSpec:
    """A nested supervisor supervised as a child.

    Attributes
    ----------
    supervisor : Supervisor
        The child supervisor; its ``run()`` is called again on every restart.
    restart : Restart
        The child's restart type.
    shutdown : float
        Seconds the child supervisor gets to stop its own children before it is cancelled.
    """

    supervisor: Supervisor
    restart: Restart = Restart.PERMANENT
    shutdown: float = 30.0

    def __post_init__(self) -> None:
        _check_shutdown(self.supervisor.name, self.shutdown)

    @property
    def name(self) -> str:
        """The child's name (its supervisor's)."""
        return self.supervisor.name


def _check_shutdown(name: str, shutdown: float) -> None:
    if not shutdown >= 0:
        raise ValueError(f"child {name!r}: shutdown must be >= 0 seconds, got {shutdown}")


def should_restart(restart: Restart, *, abnormal: bool) -> bool:
    """Decide whether a terminated child is restarted.

    Parameters
    ----------
    restart : Restart
        The child's restart type.
    abnormal : bool
        Whether it terminated with an exception other than ``ActorExit``.

    Returns
    -------
    bool
        ``permanent``: always; ``transient``: only if abnormal; ``temporary``: never.
    """
    match restart:
        case Restart.PERMANENT:
            return True
        case Restart.TRANSIENT:
            return abnormal
        case Restart.TEMPORARY:
            return False


def restart_set(strategy: Strategy, index: int, count: int) -> range:
    """Return the indexes of the children to restart when child ``index`` terminated.

    Parameters
    ----------
    strategy : Strategy
        The supervisor's restart strategy.
    index : int
        Position of the terminated child in start order.
    count : int
        Number of children.

    Returns
    -------
    range
        In start order; the supervisor stops them in reverse.
    """
    match strategy:
        case Strategy.ONE_FOR_ONE:
            return range(index, index + 1)
        case Strategy.ONE_FOR_ALL:
            return range(count)
        case Strategy.REST_FOR_ONE:
            return range(index, count)


class RestartIntensity:
    """A sliding window of restart times.

    Parameters
    ----------
    max_restarts : int
        Restarts tolerated within the window (>= 0).
    max_seconds : float
        Width of the window in seconds (> 0).
    clock : Clock
        Source of time.
    """

    def __init__(self, max_restarts: int, max_seconds: float, clock: Clock) -> None:
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        if not max_seconds > 0:
            raise ValueError(f"max_seconds must be > 0, got {max_seconds}")
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        self._clock = clock
        # Only the latest max_restarts + 1 restarts can matter.
        self._times: deque[float] = deque(maxlen=max_restarts + 1)

    def record(self) -> bool:
        """Record a restart now.

        Returns
        -------
        bool
            ``True`` if this restart makes more than ``max_restarts`` within the window,
            meaning the supervisor must give up instead.
        """
        now = self._clock.now()
        self._times.append(now)
        while self._times and now - self._times[0] >= self.max_seconds:
            self._times.popleft()
        return len(self._times) > self.max_restarts

    def reset(self) -> None:
        """Forget every restart (a fresh supervisor run)."""
        self._times.clear()
