"""The supervisor: ordered start, restarts by strategy, escalation, reverse-order stop.

Erlang/OTP semantics (*OTP Design Principles*, "Supervisor Behaviour"):

* children start in order, each ready (its ``started()`` returned) before the next starts;
  ``run(task_status=...)`` reports ready once all are;
* a terminated child is restarted according to its restart type and the supervisor's
  strategy (:mod:`xvactor.runtime.policy`); the other children of the restart set are
  stopped in reverse order first, then all are started again in order;
* a child that fails its *first* start (before ``run()`` reported ready) fails the
  supervisor's start: the children already started are stopped in reverse order and the
  child's exception is raised out of ``run()`` (OTP: ``failed_to_start_child``).  Later,
  a failed ``started()`` during a restart is a crash like any other and counts toward
  restart intensity;
* more than ``max_restarts`` restarts within ``max_seconds`` (by the injected clock): the
  supervisor stops every child in reverse order and raises
  :class:`~xvactor.runtime.RestartIntensityExceeded` out of ``run()``, which a parent
  supervisor treats as this child crashing;
* on ``stop()`` or cancellation, every child is stopped in reverse order, each with its
  shutdown timeout, in a shielded scope; a cancellation is re-raised afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anyio
import anyio.abc
import anyio.lowlevel

from xvactor.runtime.actor_cell import ActorCell
from xvactor.runtime.cell import Cell, Exit, SupervisorCell
from xvactor.runtime.clock import Clock, MonotonicClock
from xvactor.runtime.errors import ActorDead, RestartIntensityExceeded
from xvactor.runtime.messages import Message
from xvactor.runtime.policy import (
    ChildSpec,
    Restart,
    RestartIntensity,
    Strategy,
    SupervisorSpec,
    restart_set,
    should_restart,
)

__all__ = ["ChildSpec", "Restart", "Strategy", "Supervisor", "SupervisorSpec"]

LOGGER = logging.getLogger("xvactor.runtime")


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


# Crashes are logged on one line at ERROR and with their traceback at DEBUG: a traceback
# is for the developer, never for the user of a node.
def _log_poison(name: str, message: Message, error: BaseException) -> None:
    LOGGER.error(
        "%s: poison message %s crashed the actor twice; dropped (%s)",
        name,
        type(message).__name__,
        _describe(error),
    )
    LOGGER.debug("%s: poison message %r", name, message, exc_info=error)


class Supervisor:
    """Runs child actors and nested supervisors, restarting them when they terminate.

    Parameters
    ----------
    name : str
        Name used in logs and errors (and as a child's name when nested).
    children : sequence of ChildSpec or SupervisorSpec
        In start order; stopped in reverse.
    strategy : Strategy
        Which children restart when one terminates.
    max_restarts, max_seconds
        Restart intensity: more than ``max_restarts`` restarts within ``max_seconds``
        and the supervisor gives up.
    clock : Clock, optional
        Time source for restart intensity; :class:`MonotonicClock` by default.
    on_poison : callable, optional
        Called with ``(actor name, message, exception)`` for a poison message; by default
        it is logged at ERROR on the ``xvactor.runtime`` logger.
    """

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec | SupervisorSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        clock: Clock | None = None,
        on_poison: Callable[[str, Message, BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self.strategy = Strategy(strategy)
        self._intensity = RestartIntensity(max_restarts, max_seconds, clock or MonotonicClock())
        self._on_poison = on_poison or _log_poison
        self._cells: list[Cell] = []
        for child in children:
            self._cells.append(self._make_cell(child))
        self._running = False
        self._stop_requested = False
        self._wake: anyio.Event | None = None
        self._finished: anyio.Event | None = None
        self._start_scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"Supervisor({self.name!r}, strategy={self.strategy.value})"

    @property
    def running(self) -> bool:
        """Whether ``run()`` is in progress."""
        return self._running

    @property
    def children(self) -> tuple[str, ...]:
        """Children's names, in start order."""
        return tuple(cell.name for cell in self._cells)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the children in order, supervise them until stopped, stop them in reverse.

        Parameters
        ----------
        task_status
            Reported ready (``task_status.started()``) once every child is ready, so
            ``await task_group.start(supervisor.run)`` returns a running tree.

        Raises
        ------
        RestartIntensityExceeded
            Too many restarts; every child has been stopped.
        Exception
            What a child's ``started()`` raised during the initial start; the children
            already started have been stopped.

        Notes
        -----
        If ``stop()`` is called before every child is ready, ``run()`` returns without
        reporting ready (so ``TaskGroup.start`` raises ``RuntimeError``).  A stopped
        supervisor may be run again; that is how a parent restarts it.
        """
        if self._running:
            raise RuntimeError(f"supervisor {self.name!r} is already running")
        self._running = True
        self._stop_requested = False
        self._wake = anyio.Event()
        self._finished = anyio.Event()
        self._intensity.reset()
        for cell in self._cells:
            cell.revive()
        failure: Exception | None = None
        try:
            async with anyio.create_task_group() as task_group:
                try:
                    failure = await self._supervise(task_group, task_status)
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._stop_all()
            # A cancellation that arrived during the shielded stop is re-raised here.
            await anyio.lowlevel.checkpoint_if_cancelled()
        finally:
            self._running = False
            self._finished.set()
        if failure is not None:
            raise failure

    async def stop(self) -> None:
        """Request an orderly stop and wait until ``run()`` has stopped every child."""
        if not self._running:
            return
        assert self._wake is not None
        assert self._finished is not None
        self._stop_requested = True
        self._wake.set()
        if self._start_scope is not None:
            self._start_scope.cancel()
        await self._finished.wait()

    async def add_child(self, child: ChildSpec | SupervisorSpec) -> None:
        """Add a child after the others; if running, start it and wait until it is ready.

        Parameters
        ----------
        child : ChildSpec or SupervisorSpec
            The new child (its name must be unique among this supervisor's children).

        Raises
        ------
        ActorDead
            The supervisor stopped before the child became ready.
        """
        cell = self._make_cell(child)
        self._cells.append(cell)
        if not self._running:
            return
        assert self._wake is not None
        assert self._finished is not None
        ready = anyio.Event()
        cell.notify_ready(ready)
        self._wake.set()
        finished = self._finished
        async with anyio.create_task_group() as task_group:

            async def first(event: anyio.Event) -> None:
                await event.wait()
                task_group.cancel_scope.cancel()

            task_group.start_soon(first, ready)
            task_group.start_soon(first, finished)
        if not ready.is_set():
            raise ActorDead(f"supervisor {self.name!r} stopped before {cell.name!r} was ready")

    def _make_cell(self, child: ChildSpec | SupervisorSpec) -> Cell:
        if child.name in (cell.name for cell in self._cells):
            raise ValueError(f"supervisor {self.name!r}: duplicate child name {child.name!r}")
        if isinstance(child, ChildSpec):
            return ActorCell(child, self._child_exited, self._on_poison)
        return SupervisorCell(child.supervisor, child.restart, child.shutdown, self._child_exited)

    def _child_exited(self, cell: Cell) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _supervise(
        self, task_group: anyio.abc.TaskGroup, task_status: anyio.abc.TaskStatus[None]
    ) -> Exception | None:
        """Supervise until stopped; return the exception ``run()`` must raise, if any."""
        reported_ready = False
        while not self._stop_requested:
            self._wake = anyio.Event()
            for cell in list(self._cells):
                outcome, cell.exit = cell.exit, None
                if outcome is None:
                    continue
                first_start = outcome.starting and not cell.started_once
                if first_start and not reported_ready and outcome.error is not None:
                    # OTP: a child failing its first start fails the supervisor's start.
                    # Raised, not logged: the caller reports it.
                    LOGGER.debug(
                        "%s: child %s failed to start: %s",
                        self.name,
                        cell.name,
                        _describe(outcome.error),
                    )
                    return outcome.error
                escalation = await self._handle_exit(cell, outcome)
                if escalation is not None:
                    return escalation
            if not await self._converge(task_group):
                continue
            if not reported_ready:
                reported_ready = True
                task_status.started()
            await self._wake.wait()
        return None

    async def _converge(self, task_group: anyio.abc.TaskGroup) -> bool:
        """Start, in order, every child that should run and does not; False if one failed."""
        for cell in self._cells:
            if cell.dead or cell.running:
                continue
            if cell.exit is not None or self._stop_requested:
                return False
            ready = False
            with anyio.CancelScope() as self._start_scope:
                ready = await cell.start(task_group)
            self._start_scope = None
            if not ready:
                return False
        return True

    async def _handle_exit(self, cell: Cell, outcome: Exit) -> RestartIntensityExceeded | None:
        if outcome.error is not None:
            LOGGER.error("%s: child %s crashed: %s", self.name, cell.name, _describe(outcome.error))
            LOGGER.debug("%s: child %s crashed", self.name, cell.name, exc_info=outcome.error)
        else:
            LOGGER.info("%s: child %s exited", self.name, cell.name)
        if not should_restart(cell.restart, abnormal=outcome.abnormal):
            cell.bury()
            return None
        if self._intensity.record():
            last = "exited" if outcome.error is None else f"crashed: {_describe(outcome.error)}"
            escalation = RestartIntensityExceeded(
                f"supervisor {self.name!r}: more than {self._intensity.max_restarts} "
                f"restarts within {self._intensity.max_seconds} s; last, {cell.name!r} {last}"
            )
            escalation.__cause__ = outcome.error
            LOGGER.debug("%s", escalation)  # raised: the parent or the caller reports it
            return escalation
        index = self._cells.index(cell)
        siblings = [self._cells[i] for i in restart_set(self.strategy, index, len(self._cells))]
        for sibling in reversed(siblings):
            if sibling is cell or sibling.dead:
                continue
            await sibling.stop(final=False)
            sibling.exit = None
            if sibling.restart is Restart.TEMPORARY:
                # OTP: a temporary child is never restarted, not even with its siblings.
                sibling.bury()
        LOGGER.info("%s: restarting %s", self.name, ", ".join(c.name for c in siblings))
        return None

    async def _stop_all(self) -> None:
        for cell in reversed(self._cells):
            await cell.stop(final=True)
