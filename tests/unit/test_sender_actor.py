"""The sender actor against a fake association port: no network, a fake timer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec
import pytest

from xvactor.actors.sender import (
    Enqueue,
    SenderActor,
    SenderInbox,
    SenderSettings,
    SendItem,
    SendNow,
    SendResult,
    Wake,
    enqueue,
    list_failed,
    requeue,
    send_now,
    status,
)
from xvactor.dicom.outcome import LOCAL_TRANSPORT, Attempt, Problem
from xvactor.dicom.scu import AssociationFailed, Peer
from xvactor.runtime import ActorRef, ChildSpec, Limiters, Supervisor
from xvactor.sender.queue import OUTBOX_FILE, DurableOutbox, MemoryOutbox, Outbox

CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"
ELE = "1.2.840.10008.1.2.1"


def item(n: int, sop_class: str = CT, syntax: str = ELE) -> SendItem:
    return SendItem(path=f"/x/{n}.dcm", sop_class_uid=sop_class, sop_instance_uid=f"1.2.{n}",
                    transfer_syntax_uid=syntax)  # fmt: skip


class FakeTimer:
    """Wall clock that moves only on ``advance``; fires due callbacks then."""

    def __init__(self) -> None:
        self.time = 1000.0
        self.alarms: list[tuple[float, Callable[[], None], list[bool]]] = []

    def now(self) -> float:
        return self.time

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Handle:
        cancelled = [False]
        self.alarms.append((self.time + delay, callback, cancelled))
        return _Handle(cancelled)

    def advance(self, seconds: float) -> None:
        self.time += seconds
        due = [a for a in self.alarms if a[0] <= self.time]
        self.alarms = [a for a in self.alarms if a[0] > self.time]
        for _, callback, cancelled in due:
            if not cancelled[0]:
                callback()

    @property
    def pending(self) -> list[float]:
        return sorted(at for at, _, cancelled in self.alarms if not cancelled[0])


@dataclass
class _Handle:
    cancelled: list[bool]

    def cancel(self) -> None:
        self.cancelled[0] = True


@dataclass
class FakeAssociation:
    port: FakePort
    proposed: frozenset[tuple[str, str]]
    established: bool = True

    def send(self, item: SendItem, *, move_originator_ae_title: str = "",
             move_originator_message_id: int = 0) -> Attempt:  # fmt: skip
        assert self.port.open_now == 1, "more than one association at a time"
        self.port.sent.append((item.sop_instance_uid, move_originator_ae_title))
        attempt = self.port.script.pop(0) if self.port.script else Attempt(status=0)
        if attempt.problem is Problem.NO_RESPONSE:
            self.established = False
            self.port.open_now -= 1
        return attempt

    def release(self) -> None:
        if self.established:
            self.established = False
            self.port.open_now -= 1
            self.port.events.append("release")

    def abort(self) -> None:
        self.release()


@dataclass
class FakePort:
    peer: Peer = field(default_factory=lambda: Peer(host="h", port=1, called_ae_title="P"))
    sent: list[tuple[str, str]] = field(default_factory=list)
    script: list[Attempt] = field(default_factory=list)
    refuse: int = 0
    opened: list[list[tuple[str, tuple[str, ...]]]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    open_now: int = 0

    def open(self, contexts: Sequence[tuple[str, Sequence[str]]]) -> FakeAssociation:
        assert self.open_now == 0, "a second association to the same destination"
        if self.refuse:
            self.refuse -= 1
            raise AssociationFailed("connection refused by h:1")
        self.opened.append([(c, tuple(s)) for c, s in contexts])
        self.events.append("open")
        self.open_now += 1
        pairs = frozenset((c, s) for c, syntaxes in contexts for s in syntaxes)
        return FakeAssociation(self, pairs)


@dataclass
class Rig:
    ref: ActorRef[SenderInbox]
    port: FakePort
    timer: FakeTimer

    async def settle(self) -> None:
        """Until the sender has nothing left to do now (its fake I/O runs on threads)."""
        stable, last = 0, None
        with anyio.fail_after(5):
            while stable < 5:
                await anyio.sleep(0.005)
                st = await status(self.ref, timeout=5)
                now = (len(self.port.sent), len(self.port.events), st, len(self.timer.pending))
                stable = stable + 1 if now == last else 0
                last = now


@asynccontextmanager
async def rig(outbox: Callable[[], Outbox] | None = None, **settings: float) -> AsyncIterator[Rig]:
    port, timer = FakePort(), FakeTimer()
    memory = MemoryOutbox("d")
    ref: ActorRef[SenderInbox] = ActorRef("sender:d", mailbox_size=64)
    values = {"idle_release": 5.0, "retry_initial": 1.0, "retry_max": 4.0, "retry_limit": 4}
    values.update(settings)
    sender_settings = SenderSettings(**values)  # type: ignore[arg-type]
    supervisor = Supervisor("t", [ChildSpec(ref=ref, factory=lambda: SenderActor(
        ref, port=port, outbox=outbox or (lambda: memory), settings=sender_settings,
        limiters=Limiters({"associate": 1, "dimse": 1, "outbox": 1}), timer=lambda: timer,
    ))], max_restarts=0)  # fmt: skip  # a crash fails the test instead of being retried
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        try:
            yield Rig(ref, port, timer)
        finally:
            await supervisor.stop()


async def collect(
    ref: ActorRef[SenderInbox], items: Sequence[SendItem], **kw: object
) -> list[SendResult]:
    send, receive = anyio.create_memory_object_stream[SendResult](100)
    await send_now(ref, items, send, **kw)  # type: ignore[arg-type]
    async with receive:
        return [r async for r in receive]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_queued_items_go_in_order_over_one_reused_association(anyio_backend: str) -> None:
    async with rig() as r:
        await enqueue(r.ref, [item(1), item(2)], timeout=5)
        await enqueue(r.ref, [item(3)], timeout=5)
        await r.settle()
        assert [uid for uid, _ in r.port.sent] == ["1.2.1", "1.2.2", "1.2.3"]
        assert r.port.events == ["open"]
        assert (await status(r.ref, timeout=5)).associated


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_idle_association_is_released_after_idle_release(anyio_backend: str) -> None:
    async with rig(idle_release=5.0) as r:
        await enqueue(r.ref, [item(1)], timeout=5)
        await r.settle()
        assert r.timer.pending == [r.timer.time + 5.0]
        r.timer.advance(4.0)
        await r.settle()
        assert r.port.events == ["open"]
        r.timer.advance(1.0)
        await r.settle()
        assert r.port.events == ["open", "release"]
        assert not (await status(r.ref, timeout=5)).associated


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_renegotiates_only_for_a_pair_not_proposed(anyio_backend: str) -> None:
    async with rig() as r:
        await enqueue(r.ref, [item(1, CT)], timeout=5)
        await r.settle()
        await enqueue(r.ref, [item(2, CT, "1.2.840.10008.1.2")], timeout=5)  # proposed fallback
        await r.settle()
        assert r.port.events == ["open"]
        await enqueue(r.ref, [item(3, MR)], timeout=5)
        await r.settle()
        assert r.port.events == ["open", "release", "open"]
        classes = {c for c, _ in r.port.opened[1]}
        assert classes == {CT, MR}  # the renegotiated association keeps what was needed


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_transport_failure_backs_off_then_fails_and_requeues(
    anyio_backend: str,
) -> None:
    async with rig(retry_initial=1.0, retry_max=2.0, retry_limit=3) as r:
        r.port.refuse = 3
        await enqueue(r.ref, [item(1), item(2)], timeout=5)
        await r.settle()
        assert r.timer.pending == [r.timer.time + 1.0]
        r.timer.advance(1.0)
        await r.settle()
        assert r.timer.pending == [r.timer.time + 2.0]
        r.timer.advance(2.0)
        await r.settle()
        failed = await list_failed(r.ref, timeout=5)
        assert [(q.item.sop_instance_uid, q.attempts, q.last_status) for q in failed] == [
            ("1.2.1", 3, LOCAL_TRANSPORT)
        ]
        assert "refused" in failed[0].last_comment
        # The next item went out once the head had failed; then the failed one is re-queued.
        assert [uid for uid, _ in r.port.sent] == ["1.2.2"]
        assert await requeue(r.ref, timeout=5) == 1
        await r.settle()
        assert [uid for uid, _ in r.port.sent] == ["1.2.2", "1.2.1"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_out_of_resources_retries_others_fail_at_once(
    anyio_backend: str,
) -> None:
    async with rig() as r:
        r.port.script = [Attempt(status=0xA700), Attempt(status=0),
                         Attempt(status=0xA900, error_comment="bad")]  # fmt: skip
        await enqueue(r.ref, [item(1), item(2)], timeout=5)
        await r.settle()
        assert [uid for uid, _ in r.port.sent] == ["1.2.1"]
        r.timer.advance(1.0)
        await r.settle()
        assert [uid for uid, _ in r.port.sent] == ["1.2.1", "1.2.1", "1.2.2"]
        failed = await list_failed(r.ref, timeout=5)
        assert [(q.item.sop_instance_uid, q.last_status, q.last_comment) for q in failed] == [
            ("1.2.2", 0xA900, "bad")
        ]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_refused_items_are_never_retried(anyio_backend: str) -> None:
    async with rig() as r:
        r.port.script = [Attempt(problem=Problem.NO_CONTEXT, error_comment="no context")]
        await enqueue(r.ref, [item(1)], timeout=5)
        await r.settle()
        r.timer.advance(100.0)
        await r.settle()
        assert len(r.port.sent) == 1
        assert [q.outcome for q in await list_failed(r.ref, timeout=5)] == ["refused"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_send_now_goes_first_with_the_move_originator(anyio_backend: str) -> None:
    async with rig() as r:
        results = await collect(r.ref, [item(1), item(2)], move_originator_ae_title="MOVER",
                                move_originator_message_id=7)  # fmt: skip
        assert [(x.sop_instance_uid, x.status, x.outcome) for x in results] == [
            ("1.2.1", 0, "success"), ("1.2.2", 0, "success")
        ]  # fmt: skip
        assert r.port.sent == [("1.2.1", "MOVER"), ("1.2.2", "MOVER")]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_send_now_transport_failure_fails_the_rest_of_the_batch(anyio_backend: str) -> None:
    async with rig() as r:
        r.port.script = [Attempt(status=0xB000), Attempt(problem=Problem.NO_RESPONSE)]
        results = await collect(r.ref, [item(1), item(2), item(3)])
        assert [(x.status, x.outcome) for x in results] == [
            (0xB000, "warning"), (LOCAL_TRANSPORT, "retry"), (LOCAL_TRANSPORT, "retry")
        ]  # fmt: skip
        assert len(r.port.sent) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_send_now_stops_when_the_requester_closes_its_end(anyio_backend: str) -> None:
    async with rig() as r:
        send, receive = anyio.create_memory_object_stream[SendResult](0)
        await send_now(r.ref, [item(n) for n in range(5)], send)
        first = await receive.receive()
        await receive.aclose()  # C-CANCEL
        await r.settle()
        assert first.sop_instance_uid == "1.2.0"
        assert len(r.port.sent) <= 2


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_items_left_sending_go_after_restart(tmp_path: Path, anyio_backend: str) -> None:
    path = tmp_path / OUTBOX_FILE
    crashed = DurableOutbox(path, "d")
    first, _ = crashed.add([item(1), item(2)], now=0.0)
    crashed.mark_sending(first, now=0.0)
    async with rig(outbox=lambda: DurableOutbox(path, "d")) as r:
        await r.settle()
        assert [uid for uid, _ in r.port.sent] == ["1.2.1", "1.2.2"]
    crashed.close()


def test_messages_round_trip_msgpack() -> None:
    decoder = msgspec.msgpack.Decoder(SenderInbox)  # type: ignore[arg-type]
    for message in (Enqueue(items=(item(1),)), Wake()):
        assert decoder.decode(msgspec.msgpack.encode(message)) == message
    result = SendResult(sop_instance_uid="1", status=0xA700, error_comment="x", outcome="retry")
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(result), type=SendResult) == result
    assert SendNow(items=(item(1),), results=None).items == (item(1),)
