"""The bridge between actors and blocking libraries (which run on threads).

Outbound, an actor runs a blocking call on a worker thread with :func:`run_blocking`, under
the :class:`anyio.CapacityLimiter` of that kind of job (so, say, slow associations cannot
starve disk writes).  Unlike :func:`asyncio.to_thread`, a cancelled caller waits for the
thread to finish: a cancelled operation never leaves half-done work running unobserved.

Inbound, a foreign thread (an association thread of the network library) enters the event
loop through a :class:`LoopBridge` and blocks until an actor replies.  Blocking that thread
on a full mailbox is the point: backpressure reaches the peer through TCP.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TypeVar, TypeVarTuple, Unpack

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from xvactor.runtime.errors import ActorDead
from xvactor.runtime.ref import ActorRef, M

__all__ = ["Limiters", "LoopBridge", "run_blocking"]

T = TypeVar("T")
R = TypeVar("R")
PosArgsT = TypeVarTuple("PosArgsT")


class Limiters(Mapping[str, anyio.CapacityLimiter]):
    """One thread limiter per kind of blocking job.

    Parameters
    ----------
    capacities : mapping of str to int
        Threads allowed at once per job kind, e.g. ``{"associate": 8, "disk": 4}``.

    Examples
    --------
    >>> limiters = Limiters({"disk": 4})
    >>> limiters["disk"].total_tokens
    4
    """

    def __init__(self, capacities: Mapping[str, int]) -> None:
        limiters: dict[str, anyio.CapacityLimiter] = {}
        for kind, capacity in capacities.items():
            if capacity < 1:
                raise ValueError(f"thread limiter {kind!r}: capacity must be >= 1, got {capacity}")
            limiters[kind] = anyio.CapacityLimiter(capacity)
        self._limiters = limiters

    def __getitem__(self, kind: str) -> anyio.CapacityLimiter:
        try:
            return self._limiters[kind]
        except KeyError:
            known = ", ".join(sorted(self._limiters)) or "none"
            raise KeyError(
                f"no thread limiter for job kind {kind!r} (configured: {known})"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._limiters)

    def __len__(self) -> int:
        return len(self._limiters)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k!r}: {v.total_tokens}" for k, v in self._limiters.items())
        return f"Limiters({{{sizes}}})"


async def run_blocking(
    limiters: Limiters,
    kind: str,
    func: Callable[[Unpack[PosArgsT]], T],
    *args: *PosArgsT,
) -> T:
    """Run a blocking call on a worker thread under the limiter for ``kind``.

    A cancelled caller waits for the thread to return (the call is not abandoned), then
    the cancellation propagates.

    Parameters
    ----------
    limiters : Limiters
        The limiters.
    kind : str
        The job kind, e.g. ``"disk"``.
    func : callable
        The blocking function.
    *args
        Its positional arguments.

    Returns
    -------
    T
        What ``func`` returned (its exception propagates).

    Raises
    ------
    KeyError
        ``kind`` has no limiter.
    """
    return await anyio.to_thread.run_sync(func, *args, limiter=limiters[kind])


class LoopBridge:
    """A way back into the event loop from foreign threads.

    Create it on the event loop (it captures the loop's token); call :meth:`call`,
    :meth:`ask` and :meth:`tell` from any other thread.  Once the loop has finished they
    raise :class:`ActorDead`; stop the threads' sources (the association server) before
    the loop ends, since a call made while the loop is winding down may never be served.
    """

    def __init__(self) -> None:
        self.token = anyio.lowlevel.current_token()
        self._loop_thread = threading.get_ident()

    def call(self, func: Callable[[Unpack[PosArgsT]], Awaitable[T]], *args: *PosArgsT) -> T:
        """Run ``await func(*args)`` on the event loop and block until it finishes.

        Parameters
        ----------
        func : callable
            A coroutine function.
        *args
            Its positional arguments.

        Returns
        -------
        T
            The coroutine's result (its exception propagates unchanged).

        Raises
        ------
        ActorDead
            The event loop has stopped, or cancelled the call while shutting down.
        RuntimeError
            Called from the event loop's own thread (it would deadlock).
        """
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("LoopBridge.call() from the event loop thread would deadlock")

        async def boxed() -> list[T] | Exception:
            # Keeps func's own exceptions apart from the bridge's (a one-item list is a value).
            try:
                return [await func(*args)]
            except Exception as exc:
                return exc

        try:
            outcome = anyio.from_thread.run(boxed, token=self.token)
        except (anyio.RunFinishedError, concurrent.futures.CancelledError) as exc:
            raise ActorDead("event loop stopped") from exc
        if isinstance(outcome, Exception):
            raise outcome
        return outcome[0]

    def ask(self, ref: ActorRef[M], message: M, *, expect: type[R], timeout: float) -> R:
        """Block the calling thread on ``ref.ask(...)``.

        A full mailbox blocks this thread until space frees (within ``timeout``).  See
        :meth:`ActorRef.ask` for the exceptions.
        """

        async def ask() -> R:
            return await ref.ask(message, expect=expect, timeout=timeout)

        return self.call(ask)

    def tell(self, ref: ActorRef[M], message: M) -> None:
        """Block the calling thread on ``ref.tell(message)`` (waits for mailbox space)."""

        async def tell() -> None:
            await ref.tell(message)

        self.call(tell)
