"""The node's dispatcher: each connection to the worker with the fewest associations."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from xvactor.actors.dispatcher import (
    ENDED,
    Dispatcher,
    WorkerChannels,
    channel_pair,
    decode_peer,
    encode_peer,
)


@dataclass
class FakeWorker:
    """The worker's end of its channel (one listener), as a test holds it."""

    end: socket.socket
    held: list[socket.socket]

    def take(self) -> tuple[socket.socket, tuple[str, int]]:
        """The next connection handed over (blocking, bounded)."""
        self.end.settimeout(10)
        message, fds, _, _ = socket.recv_fds(self.end, 512, 2)
        assert len(fds) == 1
        connection = socket.socket(fileno=fds[0])
        self.held.append(connection)
        return connection, decode_peer(message)

    def has_nothing(self) -> bool:
        self.end.setblocking(False)
        try:
            self.end.recv(512)
        except BlockingIOError:
            return True
        finally:
            self.end.setblocking(True)
        return False

    def ended(self) -> None:
        self.end.send(ENDED)


@dataclass
class Setup:
    listening: socket.socket
    dispatcher: Dispatcher
    workers: list[FakeWorker]

    def connect(self) -> socket.socket:
        client = socket.create_connection(self.listening.getsockname()[:2], timeout=10)
        self.clients.append(client)
        return client

    def __post_init__(self) -> None:
        self.clients: list[socket.socket] = []


@pytest.fixture
def setup() -> Iterator[Setup]:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(16)
    channels, workers = [], []
    failures: list[Exception] = []
    for _ in range(2):
        ours, theirs = channel_pair()
        channels.append(WorkerChannels(channels=[ours]))
        workers.append(FakeWorker(end=theirs, held=[]))
    dispatcher = Dispatcher([listening], channels, on_failure=failures.append)
    dispatcher.start()
    made = Setup(listening=listening, dispatcher=dispatcher, workers=workers)
    yield made
    assert failures == []
    dispatcher.stop()
    for sock in [listening, *made.clients, *(c for w in channels for c in w.channels)]:
        sock.close()
    for worker in workers:
        worker.end.close()
        for held in worker.held:
            held.close()


def test_connections_alternate_between_idle_workers(setup: Setup) -> None:
    first, second = setup.workers
    client = setup.connect()
    connection, peer = first.take()
    assert peer == client.getsockname()[:2]
    client.sendall(b"hello")
    assert connection.recv(5) == b"hello"  # the very connection, in the worker's hands
    setup.connect()
    second.take()
    setup.connect()
    first.take()
    setup.connect()
    second.take()
    assert setup.dispatcher.open_counts() == [2, 2]


def test_a_connection_goes_to_the_worker_with_fewest(setup: Setup) -> None:
    first, second = setup.workers
    setup.connect()
    first.take()
    setup.connect()
    second.take()
    setup.connect()
    first.take()  # first holds 2, second 1
    second.ended()
    second.ended()  # clamped: never below zero
    setup.connect()
    second.take()
    setup.connect()
    second.take()  # 2 against 2 now: the tie goes in turn, after the second
    setup.connect()
    first.take()
    assert first.has_nothing() and second.has_nothing()


def test_an_ended_connection_frees_its_worker(setup: Setup) -> None:
    first, second = setup.workers
    for _ in range(2):
        setup.connect()
        first.take()
        setup.connect()
        second.take()
    second.ended()  # the turn is the first's, but the second has fewer now
    setup.connect()
    second.take()


def test_a_worker_that_is_gone_gets_nothing(setup: Setup) -> None:
    first, second = setup.workers
    first.end.close()
    for _ in range(3):
        setup.connect()
        second.take()
    assert setup.dispatcher.open_counts()[1] == 3


def test_with_no_worker_left_the_peer_sees_the_connection_close(setup: Setup) -> None:
    for worker in setup.workers:
        worker.end.close()
    client = setup.connect()
    assert client.recv(1) == b""  # closed by the node, not left waiting


def test_stop_accepts_no_more(setup: Setup) -> None:
    setup.dispatcher.stop()
    setup.connect()  # the kernel's backlog takes it; nobody hands it over
    assert all(worker.has_nothing() for worker in setup.workers)


def test_peer_addresses_round_trip() -> None:
    assert decode_peer(encode_peer(("::1", 104))) == ("::1", 104)
    with pytest.raises(ValueError, match=r"not enough|invalid"):
        decode_peer(b"nonsense")


def test_an_unexpected_failure_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(4)
    ours, theirs = channel_pair()
    reported = threading.Event()
    failures: list[Exception] = []

    def failed(exc: Exception) -> None:
        failures.append(exc)
        reported.set()

    dispatcher = Dispatcher([listening], [WorkerChannels(channels=[ours])], on_failure=failed)

    def broken(*_: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(dispatcher, "_hand_over", broken)
    dispatcher.start()
    with socket.create_connection(listening.getsockname()[:2], timeout=10):
        assert reported.wait(10)
    dispatcher.stop()
    assert [str(exc) for exc in failures] == ["a bug"]
    for sock in (listening, ours, theirs):
        sock.close()


def test_a_worker_gone_from_every_listener_is_no_longer_watched() -> None:
    """All of a dead worker's channels leave the selector (none wakes it in a loop)."""
    listening = [socket.socket(), socket.socket()]
    for sock in listening:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
    pairs = [channel_pair() for _ in listening]
    ours = WorkerChannels(channels=[mine for mine, _ in pairs])
    spare_pairs = [channel_pair() for _ in listening]
    spare = WorkerChannels(channels=[mine for mine, _ in spare_pairs])
    dispatcher = Dispatcher(listening, [ours, spare], on_failure=lambda exc: None)
    dispatcher.start()
    for _, theirs in pairs:
        theirs.close()  # the worker dies: both its channels end
    with socket.create_connection(listening[1].getsockname()[:2], timeout=10):
        spare_end = spare_pairs[1][1]  # the second listener's channel, the spare's end
        spare_end.settimeout(10)
        _, fds, _, _ = socket.recv_fds(spare_end, 512, 2)
        for fd in fds:
            socket.socket(fileno=fd).close()
    assert not ours.alive
    watched = {key.fileobj for key in dispatcher._selector.get_map().values()}
    assert not watched & set(ours.channels)
    dispatcher.stop()
    for sock in [*listening, *ours.channels, *(end for pair in spare_pairs for end in pair)]:
        sock.close()
