"""Exceptions raised by the actor runtime.

Every runtime failure a caller can observe is an :class:`ActorError`, so the network edge
can map them to a status at one boundary.  Exceptions raised by an actor's ``receive()``
while handling an ``ask`` are *not* wrapped: the caller gets the actor's own exception.
"""

from __future__ import annotations

__all__ = [
    "ActorDead",
    "ActorError",
    "AskTimeout",
    "MailboxFull",
    "RestartIntensityExceeded",
    "UnexpectedReply",
]


class ActorError(Exception):
    """Base of every exception raised by the actor runtime itself."""


class ActorDead(ActorError):
    """The target actor is stopped, or stopped (or crashed) before it replied.

    Raised by ``tell``/``try_tell``/``ask`` once an actor is stopped for good, and
    delivered to every pending ``ask`` when its actor stops or crashes.
    """


class MailboxFull(ActorError):
    """``try_tell`` found the mailbox full; the message was not delivered."""


class AskTimeout(ActorError, TimeoutError):
    """An ``ask`` deadline passed while waiting for mailbox space or for the reply.

    A message that was still queued is withdrawn; one already being handled finishes and
    its reply is discarded.
    """


class RestartIntensityExceeded(ActorError):
    """A supervisor saw more than ``max_restarts`` restarts within ``max_seconds``.

    The supervisor stopped all its children and raised this out of ``run()``; a parent
    supervisor treats it as its child crashing (escalation, as in Erlang/OTP).
    """


class UnexpectedReply(ActorError, TypeError):
    """An ``ask(expect=T)`` got a reply that is not an instance of ``T``."""
