"""Cells: what a supervisor holds for each child, running one incarnation at a time.

A cell starts an incarnation of its child in the supervisor's task group, reports when it
is ready, stops it on request (grace period, then cancellation), and reports an
incarnation that ended on its own (crash or normal exit) through ``on_exit``.

Each incarnation runs inside a *shielded* cancel scope: cancelling the supervisor does not
tear its children down abruptly; the supervisor's own shielded cleanup stops them in
reverse order, each with its shutdown timeout.  Only :meth:`Cell.stop` cancels that scope.

:class:`ActorCell` runs an :class:`~xvactor.runtime.Actor` (workers, failure rules, poison
messages); :class:`SupervisorCell` runs a nested :class:`~xvactor.runtime.Supervisor`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from xvactor.runtime.policy import Restart

if TYPE_CHECKING:
    from xvactor.runtime.supervisor import Supervisor

__all__ = ["Cell", "Exit", "SupervisorCell"]

LOGGER = logging.getLogger("xvactor.runtime")


@dataclass(frozen=True)
class Exit:
    """How an incarnation ended on its own.

    Attributes
    ----------
    error : Exception or None
        The crash, or ``None`` for a normal exit (``ActorExit``, or a nested supervisor
        whose ``run()`` returned without being asked to stop).
    starting : bool
        Whether it ended before becoming ready (a failed start).
    """

    error: Exception | None
    starting: bool = False

    @property
    def abnormal(self) -> bool:
        """Whether the incarnation crashed."""
        return self.error is not None


class Cell(ABC):
    """One supervised child.

    Parameters
    ----------
    name : str
        The child's name.
    restart : Restart
        Its restart type.
    shutdown : float
        Seconds it gets to stop before it is cancelled.
    on_exit : callable
        Called with the cell when an incarnation ends without having been asked to stop;
        the pending :class:`Exit` is then in :attr:`exit`.
    """

    def __init__(
        self, name: str, restart: Restart, shutdown: float, on_exit: Callable[[Cell], None]
    ) -> None:
        self.name = name
        self.restart = restart
        self.shutdown = shutdown
        self.exit: Exit | None = None
        self.dead = False
        self.started_once = False
        self._on_exit = on_exit
        self._running = False
        self._ready = False
        self._stop_requested = False
        self._settled: anyio.Event | None = None
        self._done: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None
        self._ready_waiters: list[anyio.Event] = []

    @property
    def running(self) -> bool:
        """Whether an incarnation is alive (starting, ready or stopping)."""
        return self._running

    @property
    def ready(self) -> bool:
        """Whether the current incarnation finished starting and is still alive."""
        return self._running and self._ready

    def revive(self) -> None:
        """Forget a previous supervisor run: no pending exit, not dead, never started."""
        self.exit = None
        self.dead = False
        self.started_once = False

    def notify_ready(self, event: anyio.Event) -> None:
        """Set ``event`` the next time an incarnation becomes ready."""
        self._ready_waiters.append(event)

    async def start(self, task_group: anyio.abc.TaskGroup) -> bool:
        """Start an incarnation and wait until it is ready or has failed to start.

        Returns
        -------
        bool
            ``True`` if ready.  ``False`` if the start failed; the failure is then
            pending in :attr:`exit` and has been reported through ``on_exit``.
        """
        assert not self._running, f"{self.name} is already running"
        self.exit = None
        self.dead = False
        self._running = True
        self._ready = False
        self._stop_requested = False
        self._settled = anyio.Event()
        self._done = anyio.Event()
        self._prepare()
        task_group.start_soon(self._incarnation, name=f"xvactor:{self.name}")
        await self._settled.wait()
        return self._ready

    async def stop(self, *, final: bool) -> None:
        """Stop the running incarnation, if any, and wait until it has stopped.

        Its work gets :attr:`shutdown` seconds to finish, then it is cancelled.

        Parameters
        ----------
        final : bool
            Stopped for good (``True``: the child's ref rejects messages from now on) or
            for a restart (``False``: queued messages wait for the next incarnation).
        """
        if final:
            self.dead = True
            self._bury()
        if not self._running:
            return
        assert self._done is not None
        self._stop_requested = True
        with anyio.move_on_after(self.shutdown):
            await self._halt()
            await self._done.wait()
        if not self._done.is_set():
            LOGGER.warning("%s did not stop within %s s; cancelling it", self.name, self.shutdown)
            assert self._scope is not None
            self._scope.cancel()
            await self._done.wait()

    def bury(self) -> None:
        """Mark the child as terminated for good (not to be restarted)."""
        self.dead = True
        self._bury()

    def _settle(self, *, ready: bool) -> None:
        """Report the end of the start phase (called once by the incarnation)."""
        assert self._settled is not None
        self._ready = ready
        self._settled.set()
        if ready:
            self.started_once = True
            waiters, self._ready_waiters = self._ready_waiters, []
            for event in waiters:
                event.set()

    async def _incarnation(self) -> None:
        assert self._settled is not None
        assert self._done is not None
        outcome: Exit | None = None
        try:
            with anyio.CancelScope(shield=True) as scope:
                self._scope = scope
                outcome = await self._live()
        finally:
            self._running = False
            self._ready = False
            self._settled.set()
            self._done.set()
        if outcome is not None and not self._stop_requested:
            self.exit = outcome
            self._on_exit(self)

    @abstractmethod
    def _prepare(self) -> None:
        """Get ready for a new incarnation (reopen the mailbox, reset flags)."""

    @abstractmethod
    async def _live(self) -> Exit | None:
        """Run one incarnation; call ``_settle`` once; return ``None`` if stopped."""

    @abstractmethod
    async def _halt(self) -> None:
        """Ask the running incarnation to finish."""

    @abstractmethod
    def _bury(self) -> None:
        """Make the child's ref reject messages."""


class _ReadyStatus:
    """The ``task_status`` handed to a nested supervisor's ``run()``."""

    def __init__(self, cell: SupervisorCell) -> None:
        self._cell = cell
        self.called = False

    def started(self, value: object = None) -> None:
        self.called = True
        self._cell._settle(ready=True)


class SupervisorCell(Cell):
    """A cell running a nested supervisor; its escalation is this child's crash.

    Parameters
    ----------
    supervisor : Supervisor
        The child supervisor.
    restart, shutdown, on_exit
        As for :class:`Cell`.
    """

    def __init__(
        self,
        supervisor: Supervisor,
        restart: Restart,
        shutdown: float,
        on_exit: Callable[[Cell], None],
    ) -> None:
        super().__init__(supervisor.name, restart, shutdown, on_exit)
        self.supervisor = supervisor

    def _prepare(self) -> None:
        pass

    async def _live(self) -> Exit | None:
        status = _ReadyStatus(self)
        if self._stop_requested:
            # Stopped before this task first ran: the supervisor would not see the request.
            self._settle(ready=False)
            return None
        try:
            await self.supervisor.run(task_status=status)
        except Exception as exc:
            if not status.called:
                self._settle(ready=False)
            return Exit(exc, starting=not status.called)
        if not status.called:
            self._settle(ready=False)
        return None if self._stop_requested else Exit(None)

    async def _halt(self) -> None:
        await self.supervisor.stop()

    def _bury(self) -> None:
        pass
