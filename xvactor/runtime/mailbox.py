"""The bounded mailbox behind every :class:`~xvactor.runtime.ActorRef`.

A mailbox is a FIFO of :class:`Envelope` objects with three kinds of waiters, in the manner
of Trio's memory channels:

* *senders* waiting for space hold their envelope; when a slot frees, the oldest sender's
  envelope moves in and that sender is woken, so waiting senders are served in order and a
  ``try_put`` can never overtake them;
* *receivers* (the actor's worker tasks) waiting on an empty mailbox are handed the next
  envelope directly;
* *ask callers* wait on a :class:`Reply`, which is filled at most once.

The mailbox belongs to the ref, not to an actor instance, so queued messages survive a
restart.  A message that crashed its actor is pushed back to the front
(:meth:`Mailbox.push_front`), which may briefly exceed the capacity by the number of
workers: those messages had already been admitted.  :meth:`Mailbox.close` rejects
everything until :meth:`Mailbox.reopen` (a supervisor restarting its children).

Nothing here polls: every wait is on an :class:`anyio.Event` set by the party that changed
the state.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import anyio
import anyio.lowlevel

from xvactor.runtime.errors import ActorDead, MailboxFull
from xvactor.runtime.messages import Message

__all__ = ["Envelope", "Mailbox", "Reply"]

LOGGER = logging.getLogger("xvactor.runtime")


class Reply:
    """The answer slot of one ``ask``: a value or an exception, set at most once.

    Later attempts to set it are ignored, so an actor answering a caller that already gave
    up (timeout, cancellation) is harmless: a stale reply cannot reach a later ``ask``.
    """

    __slots__ = ("_done", "_error", "_value")

    def __init__(self) -> None:
        self._done = anyio.Event()
        self._value: object = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether a value or an exception has been set."""
        return self._done.is_set()

    def succeed(self, value: object) -> None:
        """Set the reply value, unless the slot is already filled."""
        if not self._done.is_set():
            self._value = value
            self._done.set()

    def fail(self, error: BaseException) -> None:
        """Set an exception for the caller, unless the slot is already filled."""
        if not self._done.is_set():
            self._error = error
            self._done.set()

    async def wait(self) -> None:
        """Wait until the slot is filled."""
        await self._done.wait()

    def result(self) -> object:
        """Return the value, or raise the exception, of a filled slot."""
        if self._error is not None:
            raise self._error
        return self._value


@dataclass(eq=False, slots=True)
class Envelope:
    """One queued message.

    Compared by identity (``eq=False``): two equal messages are two deliveries, and poison
    accounting counts the crashes of *this* delivery.

    Attributes
    ----------
    message : Message
        The message itself.
    reply : Reply or None
        The answer slot of an ``ask``; ``None`` for a ``tell``.
    crashes : int
        How many times handling this envelope crashed the actor.
    """

    message: Message
    reply: Reply | None = None
    crashes: int = 0


class _Waiter:
    __slots__ = ("envelope", "error", "event")

    def __init__(self, envelope: Envelope | None) -> None:
        self.event = anyio.Event()
        self.envelope = envelope
        self.error: ActorDead | None = None


class Mailbox:
    """A bounded FIFO of envelopes shared by an actor's successive instances.

    Parameters
    ----------
    owner : str
        The actor's name, used in error messages.
    capacity : int
        Maximum number of queued envelopes, at least 1.
    """

    def __init__(self, owner: str, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox of {owner!r}: capacity must be >= 1, got {capacity}")
        self._owner = owner
        self._capacity = capacity
        self._queue: deque[Envelope] = deque()
        self._senders: deque[_Waiter] = deque()
        self._receivers: deque[_Waiter] = deque()
        self._closed_reason: str | None = None

    @property
    def capacity(self) -> int:
        """Maximum number of queued envelopes."""
        return self._capacity

    @property
    def free(self) -> int:
        """Free slots (0 while senders are waiting)."""
        return max(0, self._capacity - len(self._queue))

    @property
    def queued(self) -> int:
        """Envelopes queued and not yet taken by a worker."""
        return len(self._queue)

    @property
    def senders_waiting(self) -> int:
        """Senders blocked on a full mailbox."""
        return len(self._senders)

    @property
    def closed(self) -> bool:
        """Whether the mailbox rejects new envelopes."""
        return self._closed_reason is not None

    def put_nowait(self, envelope: Envelope) -> None:
        """Queue an envelope without waiting.

        Raises
        ------
        ActorDead
            The mailbox is closed.
        MailboxFull
            No free slot (or other senders are already waiting for one).
        """
        self._check_open()
        if self._receivers:
            self._hand_over(envelope)
        elif self._senders or len(self._queue) >= self._capacity:
            raise MailboxFull(f"mailbox of {self._owner!r} is full ({self._capacity})")
        else:
            self._queue.append(envelope)

    async def put(self, envelope: Envelope) -> None:
        """Queue an envelope, waiting for space (backpressure).

        If the caller is cancelled after its envelope was admitted, the envelope stays
        queued; an ``ask`` caller withdraws it with :meth:`discard`.

        Raises
        ------
        ActorDead
            The mailbox is closed, or was closed while waiting.
        """
        try:
            self.put_nowait(envelope)
        except MailboxFull:
            pass
        else:
            # Yield for fairness without losing the already-queued envelope.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(envelope)
        self._senders.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if not waiter.event.is_set():
                self._senders.remove(waiter)
            raise
        if waiter.error is not None:
            raise waiter.error

    async def get(self) -> Envelope:
        """Take the next envelope, waiting while the mailbox is empty.

        If the caller is cancelled after an envelope was handed to it, the envelope goes
        back to the front, so cancelling an idle worker never loses a message.
        """
        if self._queue:
            envelope = self._queue.popleft()
            self._admit_senders()
            return envelope
        waiter = _Waiter(None)
        self._receivers.append(waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.envelope is not None:
                self.push_front(waiter.envelope)
            else:
                self._receivers.remove(waiter)
            raise
        assert waiter.envelope is not None
        return waiter.envelope

    def push_front(self, envelope: Envelope) -> None:
        """Put an already-admitted envelope back at the front (redelivery).

        On a closed mailbox the envelope is rejected instead: an ``ask`` gets
        :class:`ActorDead`, a ``tell`` is dropped with a warning.
        """
        if self._closed_reason is not None:
            self._reject(envelope, self._closed_reason)
        elif self._receivers:
            self._hand_over(envelope)
        else:
            self._queue.appendleft(envelope)

    def discard(self, envelope: Envelope) -> bool:
        """Withdraw a queued envelope (an ``ask`` whose caller gave up).

        Returns
        -------
        bool
            Whether the envelope was still queued.
        """
        try:
            self._queue.remove(envelope)
        except ValueError:
            return False
        self._admit_senders()
        return True

    def close(self, reason: str) -> None:
        """Reject new envelopes and fail everything queued or waiting for space.

        Queued and waiting ``ask`` callers get :class:`ActorDead`; queued ``tell`` messages
        are dropped (counted in one warning); waiting senders get :class:`ActorDead`.
        """
        self._closed_reason = reason
        queued = list(self._queue)
        self._queue.clear()
        dropped = 0
        for envelope in queued:
            if envelope.reply is None:
                dropped += 1
            else:
                envelope.reply.fail(ActorDead(f"{self._owner}: {reason}"))
        while self._senders:
            waiter = self._senders.popleft()
            waiter.error = ActorDead(f"{self._owner}: {reason}")
            waiter.event.set()
        if dropped:
            LOGGER.warning("%s: %s; dropped %d queued message(s)", self._owner, reason, dropped)

    def reopen(self) -> None:
        """Accept envelopes again (the actor is being started)."""
        self._closed_reason = None

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise ActorDead(f"{self._owner}: {self._closed_reason}")

    def _hand_over(self, envelope: Envelope) -> None:
        waiter = self._receivers.popleft()
        waiter.envelope = envelope
        waiter.event.set()

    def _admit_senders(self) -> None:
        while self._senders and len(self._queue) < self._capacity:
            waiter = self._senders.popleft()
            assert waiter.envelope is not None
            self._queue.append(waiter.envelope)
            waiter.event.set()

    def _reject(self, envelope: Envelope, reason: str) -> None:
        if envelope.reply is not None:
            envelope.reply.fail(ActorDead(f"{self._owner}: {reason}"))
        else:
            LOGGER.warning("%s: %s; dropped %r", self._owner, reason, envelope.message)
