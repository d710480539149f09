"""The stable handle through which everything reaches an actor.

An :class:`ActorRef` is created before its actor runs and owns the actor's bounded
mailbox, so actors can be wired to each other's refs at construction time and messages
queued before a start, or during a restart, are delivered to the next instance.

Failure rules (pykka): an exception raised while handling an ``ask`` is re-raised in the
caller and the actor keeps running; one raised while handling a ``tell`` crashes the actor
and its supervisor decides what happens next.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import anyio

from xvactor.runtime.errors import AskTimeout, UnexpectedReply
from xvactor.runtime.mailbox import Envelope, Mailbox, Reply
from xvactor.runtime.messages import Message

__all__ = ["ActorRef", "M", "R"]

M = TypeVar("M", bound=Message)
R = TypeVar("R")


class ActorRef(Generic[M]):
    """A stable handle on an actor that survives its restarts.

    Parameters
    ----------
    name : str
        The actor's name, unique within its supervisor; used in logs and errors.
    mailbox_size : int
        Capacity of the bounded mailbox, at least 1.

    Examples
    --------
    >>> ref: ActorRef[CatalogInbox] = ActorRef("catalog", mailbox_size=64)  # doctest: +SKIP
    >>> await ref.tell(FindInstance(...))  # doctest: +SKIP
    """

    def __init__(self, name: str, *, mailbox_size: int) -> None:
        self.name = name
        # Runtime-internal: the supervisor's actor cell takes messages from here.
        self._mailbox = Mailbox(name, mailbox_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    @property
    def mailbox_size(self) -> int:
        """Capacity of the mailbox."""
        return self._mailbox.capacity

    @property
    def mailbox_free(self) -> int:
        """Free mailbox slots, for load decisions at the network edge."""
        return self._mailbox.free

    async def tell(self, message: M) -> None:
        """Send a message without waiting for it to be handled.

        Waits for mailbox space (backpressure).  If the caller is cancelled after the
        message was admitted, the message stays queued.

        Parameters
        ----------
        message : M
            The message.

        Raises
        ------
        ActorDead
            The actor is stopped for good.
        """
        await self._mailbox.put(Envelope(message))

    def try_tell(self, message: M) -> None:
        """Send a message if there is space right now; never waits.

        Parameters
        ----------
        message : M
            The message.

        Raises
        ------
        MailboxFull
            The mailbox has no free slot.
        ActorDead
            The actor is stopped for good.
        """
        self._mailbox.put_nowait(Envelope(message))

    async def ask(self, message: M, *, expect: type[R], timeout: float) -> R:
        """Send a message and wait for the actor's reply.

        The deadline covers waiting for mailbox space *and* for the reply.  When it
        passes, a message still queued is withdrawn and one being handled is left to
        finish with its reply discarded, so a late reply can never answer a later ask.
        A cancelled caller is treated the same way, and the cancellation propagates.

        Parameters
        ----------
        message : M
            The request.
        expect : type
            The reply's type, checked with :func:`isinstance`; ``type(None)`` for an
            actor that returns nothing.
        timeout : float
            Seconds until :class:`AskTimeout`.

        Returns
        -------
        R
            What ``receive()`` returned.

        Raises
        ------
        AskTimeout
            The deadline passed.
        ActorDead
            The actor is stopped, or stopped or crashed before replying.
        UnexpectedReply
            The reply is not an instance of ``expect``.
        Exception
            Whatever ``receive()`` raised while handling this message.
        """
        reply = Reply()
        envelope = Envelope(message, reply)
        try:
            with anyio.move_on_after(timeout):
                await self._mailbox.put(envelope)
                await reply.wait()
        finally:
            if not reply.done:
                # Timed out or cancelled: withdraw the request if it is still queued.
                self._mailbox.discard(envelope)
        if not reply.done:
            raise AskTimeout(
                f"{self.name} did not reply to {type(message).__name__} within {timeout} s"
            )
        value = reply.result()
        if not isinstance(value, expect):
            raise UnexpectedReply(
                f"{self.name} replied {type(value).__name__} to {type(message).__name__}, "
                f"expected {expect.__name__}"
            )
        return value
