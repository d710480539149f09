"""Fakes of the actor runtime, shipped for tests and for embedders.

* :class:`FakeClock`: a :class:`~xvactor.runtime.Clock` that moves only when told to, for
  restart-intensity tests without sleeping;
* :class:`RecordingRef`: an :class:`~xvactor.runtime.ActorRef` with no actor behind it; it
  records what it is told and asked and answers asks from a script, so an actor can be
  tested against fake neighbours.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import anyio
import anyio.lowlevel

from xvactor.runtime.errors import ActorDead, MailboxFull, UnexpectedReply
from xvactor.runtime.messages import Message
from xvactor.runtime.ref import ActorRef, M

__all__ = ["FakeClock", "RecordingRef"]

R = TypeVar("R")


class FakeClock:
    """A manual clock.

    Parameters
    ----------
    start : float
        The initial reading, in seconds.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        """Return the current reading."""
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward.

        Parameters
        ----------
        seconds : float
            How far, >= 0 (a monotonic clock never goes back).
        """
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward; got {seconds}")
        self._now += seconds

    def __repr__(self) -> str:
        return f"FakeClock({self._now})"


class RecordingRef(ActorRef[M]):
    """A ref that records messages and answers asks from a script.

    Parameters
    ----------
    name : str
        The name reported in errors.
    mailbox_size : int
        The reported capacity; :attr:`free` starts there.
    replies : mapping, optional
        Initial script, as for :meth:`script`.

    Attributes
    ----------
    told : list
        Messages passed to ``tell``/``try_tell``, in order.
    asked : list
        Messages passed to ``ask``, in order.
    messages : list
        Both, in order.
    free : int
        What :attr:`mailbox_free` reports; at 0 or below, ``try_tell`` raises
        :class:`MailboxFull`.
    dead : bool
        When true, every method raises :class:`ActorDead`.

    Examples
    --------
    >>> catalog: RecordingRef[CatalogInbox] = RecordingRef("catalog")  # doctest: +SKIP
    >>> catalog.script(FindInstance, InstanceFound(...))  # doctest: +SKIP
    """

    def __init__(
        self,
        name: str = "recording",
        *,
        mailbox_size: int = 16,
        replies: Mapping[type[Message], object] | None = None,
    ) -> None:
        super().__init__(name, mailbox_size=mailbox_size)
        self.told: list[M] = []
        self.asked: list[M] = []
        self.messages: list[M] = []
        self.free = mailbox_size
        self.dead = False
        self._script: dict[type[Message], object] = dict(replies or {})
        self._changed: anyio.Event | None = None

    @property
    def mailbox_free(self) -> int:
        """The scripted :attr:`free`."""
        return max(0, self.free)

    def script(self, message_type: type[Message], reply: object) -> None:
        """Set the answer to asks of ``message_type`` (or of its subclasses).

        Parameters
        ----------
        message_type : type
            Matched along the asked message's MRO, so ``Message`` sets a default.
        reply : object
            A value returned as is, an exception instance raised, or a function called
            with the message that returns the value (or raises).
        """
        self._script[message_type] = reply

    async def tell(self, message: M) -> None:
        """Record a told message (never waits for space)."""
        self._check_alive()
        self._record(message, self.told)
        # Like ActorRef.tell: a recorded message stays recorded even if the caller is cancelled.
        await anyio.lowlevel.cancel_shielded_checkpoint()

    def try_tell(self, message: M) -> None:
        """Record a told message, or raise :class:`MailboxFull` if :attr:`free` <= 0."""
        self._check_alive()
        if self.free <= 0:
            raise MailboxFull(f"mailbox of {self.name!r} is full (scripted)")
        self._record(message, self.told)

    async def ask(self, message: M, *, expect: type[R], timeout: float) -> R:
        """Record an asked message and answer from the script.

        Raises
        ------
        LookupError
            Nothing is scripted for this message type.
        """
        self._check_alive()
        self._record(message, self.asked)
        await anyio.lowlevel.checkpoint()
        reply = self._answer(message)
        if not isinstance(reply, expect):
            raise UnexpectedReply(
                f"{self.name} replied {type(reply).__name__} to {type(message).__name__}, "
                f"expected {expect.__name__}"
            )
        return reply

    async def wait_for(self, count: int) -> list[M]:
        """Wait until at least ``count`` messages were recorded; return them all."""
        while len(self.messages) < count:
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()
        return list(self.messages)

    def _answer(self, message: M) -> object:
        for cls in type(message).__mro__:
            if cls in self._script:
                reply = self._script[cls]
                break
        else:
            raise LookupError(f"{self.name}: no scripted reply for {type(message).__name__}")
        if isinstance(reply, BaseException):
            raise reply
        if callable(reply) and not isinstance(reply, type):
            handler: Callable[[Any], object] = reply
            return handler(message)
        return reply

    def _check_alive(self) -> None:
        if self.dead:
            raise ActorDead(f"{self.name}: actor is stopped (scripted)")

    def _record(self, message: M, kind: list[M]) -> None:
        kind.append(message)
        self.messages.append(message)
        if self._changed is not None:
            self._changed.set()
            self._changed = None
