"""The actor base class.

An actor owns its state and is reached only through its :class:`ActorRef`.  A supervisor
builds a fresh instance with the child's factory for every (re)start, so state never
leaks from a crashed instance into its successor.

Lifecycle of one instance::

    factory() -> started() -> receive(m) ... -> stopping()

``stopping()`` runs shielded from cancellation both on an orderly stop and after a crash
(before the restart); it does not run if ``started()`` itself failed, because the instance
never became ready (as Erlang's ``terminate`` after a failed ``init``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Generic

from xvactor.runtime.ref import ActorRef, M

__all__ = ["Actor", "ActorExit", "ActorRef"]


class ActorExit(Exception):
    """Raised by ``receive()`` to terminate the actor normally.

    A ``transient`` child that exits this way is not restarted; a ``permanent`` one is.
    An ``ask`` being handled when the actor exits gets :class:`ActorDead`.
    """


class Actor(ABC, Generic[M]):
    """Base class of every actor; subclass it and implement :meth:`receive`.

    Attributes
    ----------
    concurrency : int
        How many messages this actor may handle at once: that many worker tasks pull from
        the one mailbox.  The default, 1, is strictly sequential.  An actor that sets more
        is responsible for the consistency of its own state.
    """

    concurrency: ClassVar[int] = 1

    async def started(self) -> None:
        """Prepare the instance; the actor counts as ready only once this returns.

        An exception here is a failed start, which its supervisor counts as a crash.
        """

    @abstractmethod
    async def receive(self, message: M) -> object:
        """Handle one message.

        Parameters
        ----------
        message : M
            The message.

        Returns
        -------
        object
            The reply to an ``ask``; ignored for a ``tell``.

        Raises
        ------
        ActorExit
            To terminate normally.
        Exception
            For an ``ask``: re-raised in the caller, the actor keeps running.  For a
            ``tell``: the actor crashes and its supervisor applies its strategy.
        """

    async def stopping(self) -> None:
        """Release what the instance holds.

        Runs shielded from cancellation (bounded by the child's shutdown timeout), on an
        orderly stop and after a crash, before any restart.  Exceptions are logged.
        """
