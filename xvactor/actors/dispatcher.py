"""Handing each new connection to the receive worker with the fewest associations.

When every worker accepted on the shared listening sockets, whichever woke first took the
connection: four associations often landed three on one worker and one on the other, and
that worker's GIL then served three while a core sat idle (small instances, four
associations, 14 runs on this VM: median 955 inst/s with such a split against 1,140 with
two and two).  So the node's process accepts, and passes each connection's descriptor
(``SCM_RIGHTS``) over a ``SOCK_SEQPACKET`` channel to the worker that has the fewest
associations open, ties taken in turn.  The worker answers one byte on the same channel
when that connection's association ends (``xvactor.dicom.server``).

One thread, woken only by the kernel: the listening sockets, the workers' channels and a
wake-up pair share one selector.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["ENDED", "Dispatcher", "WorkerChannels", "channel_pair", "decode_peer", "encode_peer"]

LOGGER = logging.getLogger("xvactor.receivers")

ENDED = b"e"
"""A worker's message: one connection handed to it has ended."""

_RECEIVE = 4096


def channel_pair() -> tuple[socket.socket, socket.socket]:
    """``(node's end, worker's end)`` of one listener's channel to one worker."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.set_inheritable(True)
    return ours, theirs


def encode_peer(address: tuple[str, int]) -> bytes:
    """The peer's address, sent along with its connection."""
    return f"{address[0]}\n{address[1]}".encode()


def decode_peer(message: bytes) -> tuple[str, int]:
    """Inverse of :func:`encode_peer`.

    Raises
    ------
    ValueError
        Not an address.
    """
    host, port = message.decode().split("\n")
    return host, int(port)


@dataclass
class WorkerChannels:
    """The node's ends of one worker's channels, one per listener, and what it serves."""

    channels: list[socket.socket]
    open: int = 0
    """Connections handed over whose association has not ended."""
    alive: bool = True


class Dispatcher:
    """Accepts on ``listening`` and hands connections to the least busy worker."""

    def __init__(
        self,
        listening: Sequence[socket.socket],
        workers: Sequence[WorkerChannels],
        *,
        on_failure: Callable[[Exception], None],
    ) -> None:
        """``on_failure`` is called (on the dispatcher's thread) if it stops unexpectedly."""
        self._listening = list(listening)
        self._on_failure = on_failure
        self._workers = list(workers)
        self._next = 0
        """Where the search for the least busy worker starts (ties go in turn)."""
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start dispatching (the listening sockets must be listening)."""
        for index, sock in enumerate(self._listening):
            sock.setblocking(False)
            self._selector.register(sock, selectors.EVENT_READ, ("listen", index))
        for worker in self._workers:
            for channel in worker.channels:
                channel.setblocking(False)
                self._selector.register(channel, selectors.EVENT_READ, ("worker", worker))
        self._selector.register(self._wake_r, selectors.EVENT_READ, ("stop", None))
        self._thread = threading.Thread(target=self._run, name="dispatcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting (blocking until the thread ends); the channels stay open."""
        thread, self._thread = self._thread, None
        if thread is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
            thread.join()
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def open_counts(self) -> list[int]:
        """Connections each worker holds (for tests and logs)."""
        return [worker.open for worker in self._workers]

    def _run(self) -> None:
        try:
            self._dispatch()
        except Exception as exc:  # a bug: nobody would accept any more
            LOGGER.exception("the dispatcher of new connections stopped")
            self._on_failure(exc)

    def _dispatch(self) -> None:
        while True:
            for key, _ in self._selector.select():
                kind, detail = key.data
                if kind == "stop":
                    return
                if kind == "listen":
                    self._accept(self._listening[detail], detail)
                else:
                    self._hear(key.fileobj, detail)  # type: ignore[arg-type]

    def _accept(self, listening: socket.socket, listener: int) -> None:
        try:
            connection, address = listening.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # e.g. EMFILE: the peer is refused, the node goes on
            LOGGER.warning("could not accept a connection: %s", exc)
            return
        with connection:
            self._hand_over(connection, address, listener)

    def _hand_over(
        self, connection: socket.socket, address: tuple[str, int], listener: int
    ) -> None:
        message = encode_peer(address)
        for worker in self._workers:  # associations that ended meanwhile count as ended
            for channel in worker.channels:
                self._hear(channel, worker)
        count = len(self._workers)
        while True:
            # In turn from self._next, so that min() gives ties to the next in turn.
            turn = [(self._next + step) % count for step in range(count)]
            alive = [index for index in turn if self._workers[index].alive]
            if not alive:
                LOGGER.warning("no receive worker to take a connection from %s", address[0])
                return  # closed by the caller: the peer sees the connection end
            chosen = min(alive, key=lambda index: self._workers[index].open)
            worker = self._workers[chosen]
            try:
                socket.send_fds(worker.channels[listener], [message], [connection.fileno()])
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.ENOBUFS):
                    LOGGER.warning("a receive worker is not taking connections: %s", exc)
                self._retire(worker)  # gone, or too far behind to be given more
                continue
            worker.open += 1
            self._next = (chosen + 1) % count
            return

    def _hear(self, channel: socket.socket, worker: WorkerChannels) -> None:
        while worker.alive:
            try:
                message = channel.recv(_RECEIVE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                message = b""
            if not message:  # the worker is gone
                self._retire(worker)
                return
            worker.open = max(0, worker.open - message.count(ENDED))

    def _retire(self, worker: WorkerChannels) -> None:
        """Give ``worker`` nothing more, and stop watching all its channels."""
        worker.alive = False
        for channel in worker.channels:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(channel)
