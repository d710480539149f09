"""The receivers actor: binds the listen addresses and runs receive worker processes.

pynetdicom does all its work under one process's GIL, so a single process cannot use a
second core however many associations arrive.  With ``receive_processes = N`` the node's
own process binds every listen address, starts N workers (``python -m xvactor.worker``)
and accepts: each new connection goes to the worker with the fewest associations
(``xvactor.actors.dispatcher``).  Each worker runs the in-process receive tree (catalog,
storage, listener) against the shared data directory and catalog.

The actor is ready once every worker reports ready.  A worker that exits while the node
is running is this actor's crash: its supervisor restarts it, which restarts the workers.
On stop, workers get SIGTERM, drain their in-flight C-STOREs and exit; a worker still
running after the shutdown timeout is killed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
from typing import assert_never

import anyio
import msgspec

from xvactor.actors.dispatcher import Dispatcher, WorkerChannels, channel_pair
from xvactor.actors.listener import GetAddresses, ListenerAddresses
from xvactor.actors.storage import SPOOL_DIR
from xvactor.config import NodeConfig
from xvactor.dicom import tls
from xvactor.runtime import Actor, ActorRef, Limiters, LoopBridge, Message, run_blocking

__all__ = [
    "WORKER_CONFIG_ENV",
    "DispatcherFailed",
    "ReceiversActor",
    "ReceiversInbox",
    "WorkerExited",
]

LOGGER = logging.getLogger("xvactor.receivers")

WORKER_CONFIG_ENV = "XVACTOR_WORKER_CONFIG"
_START_TIMEOUT = 60.0
_BACKLOG = 128


def _bind(host: str, port: int) -> socket.socket:
    """A bound, not yet listening, inheritable TCP socket."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class WorkerExited(Message, frozen=True, tag=True, kw_only=True):
    """Event: a receive worker process ended."""

    pid: int
    returncode: int


class DispatcherFailed(Message, frozen=True, tag=True, kw_only=True):
    """Event: the thread handing connections to the workers stopped unexpectedly."""

    reason: str


ReceiversInbox = GetAddresses | WorkerExited | DispatcherFailed


class WorkerCrashed(RuntimeError):
    """A receive worker exited while the node was running."""


class ReceiversActor(Actor[ReceiversInbox]):
    """Owns the listening sockets and the receive worker processes."""

    def __init__(
        self, config: NodeConfig, this: ActorRef[ReceiversInbox], limiters: Limiters
    ) -> None:
        self._config = config
        self._this = this
        self._limiters = limiters
        self._sockets: list[socket.socket] = []
        self._workers: list[subprocess.Popen[bytes]] = []
        self._channels: list[WorkerChannels] = []
        self._dispatcher: Dispatcher | None = None
        self._stopping = False

    async def started(self) -> None:
        """Bind, start every worker and wait until each one serves."""
        bridge = LoopBridge()
        try:
            await run_blocking(self._limiters, "listener", self._start, bridge)
        except BaseException:
            # Shielded: a start that fails while the node is being stopped must still
            # take back the workers and sockets it began (stopping() follows only a
            # start that succeeded).
            with anyio.CancelScope(shield=True):
                await run_blocking(self._limiters, "listener", self._stop)
            raise

    async def stopping(self) -> None:
        """Drain and stop the workers, then close the listening sockets."""
        await run_blocking(self._limiters, "listener", self._stop)

    async def receive(self, message: ReceiversInbox) -> object:
        """Dispatch one message."""
        match message:
            case GetAddresses():
                return ListenerAddresses(
                    addresses=tuple(sock.getsockname()[:2] for sock in self._sockets)
                )
            case WorkerExited(pid=pid, returncode=code):
                if not self._stopping and any(w.pid == pid for w in self._workers):
                    raise WorkerCrashed(f"receive worker {pid} exited with status {code}")
                return None
            case DispatcherFailed(reason=reason):
                if not self._stopping:
                    raise WorkerCrashed(f"connections are no longer dispatched: {reason}")
                return None
            case _:
                assert_never(message)

    # --- blocking parts, on a worker thread ------------------------------------------------

    def _start(self, bridge: LoopBridge) -> None:
        config = self._config
        spool = config.data_path.resolve() / SPOOL_DIR
        if spool.exists():
            shutil.rmtree(spool)  # unacknowledged leftovers of an earlier run
        spool.mkdir(parents=True)
        for listener in config.listeners:
            if listener.tls is not None:
                tls.server_context(listener.tls)  # a bad file fails here, in one line
            self._sockets.append(_bind(listener.host, listener.port))
        count = config.receive_processes
        # Workers share max_associations exactly through lock files (xvactor.dicom.slots).
        env = {**os.environ, WORKER_CONFIG_ENV: msgspec.json.encode(config).decode()}
        addresses = [sock.getsockname()[:2] for sock in self._sockets]
        for index in range(count):
            pairs = [channel_pair() for _ in self._sockets]
            self._channels.append(WorkerChannels(channels=[ours for ours, _ in pairs]))
            theirs = [their_end for _, their_end in pairs]
            try:
                self._workers.append(self._spawn(index, theirs, addresses, env))
            finally:
                for their_end in theirs:
                    their_end.close()
        for worker in self._workers:
            threading.Thread(
                target=self._watch, args=(worker, bridge), name=f"watch-{worker.pid}", daemon=True
            ).start()
        # Only now accept connections: a peer that connects while workers start is refused
        # and retries, rather than waiting in the backlog of a node that is not ready.
        for sock in self._sockets:
            sock.listen(_BACKLOG)

        def failed(exc: Exception) -> None:
            with contextlib.suppress(Exception):  # the node may be gone already
                bridge.tell(self._this, DispatcherFailed(reason=repr(exc)))

        self._dispatcher = Dispatcher(self._sockets, self._channels, on_failure=failed)
        self._dispatcher.start()

    def _spawn(
        self,
        index: int,
        channels: list[socket.socket],
        addresses: list[tuple[str, int]],
        env: dict[str, str],
    ) -> subprocess.Popen[bytes]:
        ready_r, ready_w = os.pipe()
        fds = [channel.fileno() for channel in channels]
        try:
            worker = subprocess.Popen(
                [
                    sys.executable, "-m", "xvactor.worker",
                    "--index", str(index),
                    "--ready-fd", str(ready_w),
                    "--channels", ",".join(map(str, fds)),
                    "--addresses", msgspec.json.encode(addresses).decode(),
                ],
                pass_fds=[*fds, ready_w],
                env=env,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            os.close(ready_w)
        try:
            readable, _, _ = select.select([ready_r], [], [], _START_TIMEOUT)
            ready = bool(readable) and os.read(ready_r, 16).startswith(b"ready")
        finally:
            os.close(ready_r)
        if not ready:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.wait(timeout=5)
            if worker.poll() is None:
                worker.kill()
                worker.wait()
            code = worker.returncode
            raise RuntimeError(f"receive worker {index} failed to start (exit status {code})")
        return worker

    def _watch(self, worker: subprocess.Popen[bytes], bridge: LoopBridge) -> None:
        code = worker.wait()
        if self._stopping:
            return
        LOGGER.error("receive worker %d exited with status %d", worker.pid, code)
        with contextlib.suppress(Exception):  # the node may be gone already
            bridge.tell(self._this, WorkerExited(pid=worker.pid, returncode=code))

    def _stop(self) -> None:
        self._stopping = True
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            dispatcher.stop()  # accept no more; what was handed over drains below
        for worker in self._workers:
            if worker.poll() is None:
                worker.send_signal(signal.SIGTERM)
        grace = self._config.timeouts.shutdown + 5.0
        for worker in self._workers:
            try:
                worker.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                LOGGER.warning("receive worker %d did not stop in %.0f s: kill", worker.pid, grace)
                worker.kill()
                worker.wait()
        self._workers.clear()
        for worker_channels in self._channels:
            for channel in worker_channels.channels:
                channel.close()
        self._channels.clear()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
