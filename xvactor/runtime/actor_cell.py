"""The cell that runs an actor: worker tasks, failure rules and poison messages.

One incarnation is ``factory()`` -> ``started()`` -> ``concurrency`` worker tasks pulling
from the ref's mailbox -> shielded ``stopping()``.  The rules applied per message:

* ask, ``receive()`` raises: the exception goes to the caller; the actor keeps running;
* tell, ``receive()`` raises: the actor crashes.  The message goes back to the front of the
  mailbox, so the restarted instance sees it first; if it crashes that instance too, it is
  *poison*: reported through ``on_poison`` and not delivered again (Thespian's rule), so
  one bad message never wedges a queue.  Crashes are counted on the mailbox entry, not by
  message equality;
* ``ActorExit``: normal termination; an ask being handled gets ``ActorDead``;
* a message interrupted by cancellation (a sibling worker crashed, or the shutdown timeout
  expired): an ask gets ``ActorDead``, a tell goes back to the front of the mailbox (or is
  dropped with a warning if the actor is being stopped for good).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel

from xvactor.runtime.actor import Actor, ActorExit
from xvactor.runtime.cell import Cell, Exit
from xvactor.runtime.errors import ActorDead
from xvactor.runtime.mailbox import Envelope
from xvactor.runtime.messages import Message
from xvactor.runtime.policy import ChildSpec

__all__ = ["ActorCell", "PoisonHandler"]

LOGGER = logging.getLogger("xvactor.runtime")

PoisonHandler = Callable[[str, Message, BaseException], None]


class ActorCell(Cell):
    """A supervised actor.

    Parameters
    ----------
    spec : ChildSpec
        The child: ref, factory, restart type, shutdown timeout.
    on_exit : callable
        See :class:`~xvactor.runtime.cell.Cell`.
    on_poison : callable
        Called with ``(actor name, message, exception)`` for a message that crashed two
        successive instances.
    """

    def __init__(
        self, spec: ChildSpec, on_exit: Callable[[Cell], None], on_poison: PoisonHandler
    ) -> None:
        super().__init__(spec.name, spec.restart, spec.shutdown, on_exit)
        self._factory = spec.factory
        # The mailbox belongs to the ref and outlives every incarnation.
        self._mailbox = spec.ref._mailbox
        self._on_poison = on_poison
        self._draining = False
        self._idle: set[anyio.CancelScope] = set()
        self._workers: anyio.CancelScope | None = None
        self._failure: Exit | None = None

    def _prepare(self) -> None:
        self._mailbox.reopen()
        self._draining = False
        self._idle.clear()
        self._workers = None
        self._failure = None

    def _bury(self) -> None:
        self._mailbox.close("actor is stopped")

    async def _halt(self) -> None:
        # Idle workers leave now; busy ones finish their message first.
        self._draining = True
        for scope in list(self._idle):
            scope.cancel()

    async def _live(self) -> Exit | None:
        if self._stop_requested:
            self._settle(ready=False)
            return None
        try:
            actor = self._factory()
            _check_actor(actor)
            await actor.started()
        except ActorExit:
            self._settle(ready=False)
            return Exit(None, starting=True)
        except Exception as exc:
            self._settle(ready=False)
            return Exit(exc, starting=True)
        self._settle(ready=True)
        try:
            if not self._draining:
                await self._serve(actor)
        finally:
            await self._cleanup(actor)
        return self._failure

    async def _serve(self, actor: Actor[Any]) -> None:
        async with anyio.create_task_group() as workers:
            self._workers = workers.cancel_scope
            for index in range(actor.concurrency):
                workers.start_soon(self._work, actor, name=f"xvactor:{self.name}#{index}")
        self._workers = None

    async def _cleanup(self, actor: Actor[Any]) -> None:
        with anyio.CancelScope(shield=True) as scope:
            scope.deadline = anyio.current_time() + self.shutdown
            try:
                await actor.stopping()
            except Exception:
                LOGGER.exception("%s: stopping() failed", self.name)
        if scope.cancelled_caught:
            LOGGER.warning("%s: stopping() cancelled after %s s", self.name, self.shutdown)

    async def _work(self, actor: Actor[Any]) -> None:
        while True:
            await anyio.lowlevel.checkpoint()
            if self._draining:
                return
            envelope = await self._next()
            if envelope is None:
                return
            await self._handle(actor, envelope)

    async def _next(self) -> Envelope | None:
        with anyio.CancelScope() as idle:
            self._idle.add(idle)
            try:
                return await self._mailbox.get()
            finally:
                self._idle.discard(idle)
        return None

    async def _handle(self, actor: Actor[Any], envelope: Envelope) -> None:
        reply = envelope.reply
        try:
            result = await actor.receive(envelope.message)
        except ActorExit:
            if reply is not None:
                reply.fail(ActorDead(f"{self.name} exited before replying"))
            self._terminate(Exit(None))
        except Exception as exc:
            if reply is not None:
                reply.fail(exc)
            else:
                self._crashed(envelope, exc)
        except BaseException:
            self._interrupted(envelope)
            raise
        else:
            if reply is not None:
                reply.succeed(result)

    def _crashed(self, envelope: Envelope, exc: Exception) -> None:
        envelope.crashes += 1
        if envelope.crashes >= 2:
            self._poison(envelope.message, exc)
        else:
            self._mailbox.push_front(envelope)
        self._terminate(Exit(exc))

    def _interrupted(self, envelope: Envelope) -> None:
        if envelope.reply is not None:
            envelope.reply.fail(ActorDead(f"{self.name} stopped before replying"))
        else:
            self._mailbox.push_front(envelope)

    def _terminate(self, outcome: Exit) -> None:
        if self._failure is None:
            self._failure = outcome
        if self._workers is not None:
            self._workers.cancel()

    def _poison(self, message: Message, exc: Exception) -> None:
        try:
            self._on_poison(self.name, message, exc)
        except Exception:
            LOGGER.exception("%s: on_poison handler failed", self.name)


def _check_actor(actor: object) -> None:
    if not isinstance(actor, Actor):
        raise TypeError(f"factory returned {type(actor).__name__}, not an Actor")
    if actor.concurrency < 1:
        raise ValueError(f"{type(actor).__name__}.concurrency must be >= 1")
