"""Building blocks: the mailbox, the pure supervision policy, and the shipped fakes."""

from __future__ import annotations

import anyio
import pytest

from tests.runtime.rt_support import Fail, Hold, Inbox, Note, Ping, Pong
from xvactor.runtime import (
    ActorDead,
    AskTimeout,
    ChildSpec,
    MailboxFull,
    Message,
    Restart,
    Strategy,
    SupervisorSpec,
    UnexpectedReply,
)
from xvactor.runtime.mailbox import Envelope, Mailbox, Reply
from xvactor.runtime.policy import RestartIntensity, restart_set, should_restart
from xvactor.runtime.ref import ActorRef
from xvactor.runtime.supervisor import Supervisor
from xvactor.testing.fakes import FakeClock, RecordingRef


def _env(text: str) -> Envelope:
    return Envelope(Note(text=text))


@pytest.mark.asyncio
async def test_waiting_senders_are_served_in_order_and_not_overtaken() -> None:
    box = Mailbox("m", 1)
    box.put_nowait(_env("0"))
    async with anyio.create_task_group() as tg:
        for text in "12":
            tg.start_soon(box.put, _env(text))
            await anyio.wait_all_tasks_blocked()
        assert box.senders_waiting == 2
        with pytest.raises(MailboxFull):
            box.put_nowait(_env("overtaker"))
        got = [await box.get() for _ in range(3)]
    assert [e.message for e in got] == [Note(text=t) for t in "012"]
    assert box.free == 1


@pytest.mark.asyncio
async def test_cancelled_receiver_puts_a_handed_over_envelope_back() -> None:
    box = Mailbox("m", 2)
    got: list[Envelope] = []

    async def receive() -> None:
        got.append(await box.get())

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(receive)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()  # the receiver is cancelled but has not resumed yet...
            box.put_nowait(_env("handed"))  # ...when an envelope is handed to it
    assert got == []
    assert box.queued == 1
    assert (await box.get()).message == Note(text="handed")


@pytest.mark.asyncio
async def test_close_fails_asks_drops_tells_and_reopen_accepts() -> None:
    box = Mailbox("m", 1)
    reply = Reply()
    box.put_nowait(Envelope(Ping(), reply))
    box.close("stopping")
    assert reply.done
    with pytest.raises(ActorDead, match="m: stopping"):
        reply.result()
    with pytest.raises(ActorDead):
        box.put_nowait(_env("late"))
    redelivered = Reply()
    box.push_front(Envelope(Ping(), redelivered))
    assert redelivered.done
    box.push_front(_env("dropped"))
    assert box.queued == 0
    box.reopen()
    box.put_nowait(_env("again"))
    assert box.discard(box._queue[0])
    assert not box.discard(_env("unknown"))


def test_reply_is_set_once() -> None:
    async def check() -> None:
        reply = Reply()
        reply.succeed(1)
        reply.succeed(2)
        reply.fail(ValueError())
        assert reply.result() == 1

    anyio.run(check)


@pytest.mark.parametrize(
    ("restart", "abnormal", "expected"),
    [
        (Restart.PERMANENT, True, True),
        (Restart.PERMANENT, False, True),
        (Restart.TRANSIENT, True, True),
        (Restart.TRANSIENT, False, False),
        (Restart.TEMPORARY, True, False),
        (Restart.TEMPORARY, False, False),
    ],
)
def test_should_restart(restart: Restart, abnormal: bool, expected: bool) -> None:
    assert should_restart(restart, abnormal=abnormal) is expected


@pytest.mark.parametrize(
    ("strategy", "index", "expected"),
    [
        (Strategy.ONE_FOR_ONE, 1, [1]),
        (Strategy.ONE_FOR_ALL, 1, [0, 1, 2, 3]),
        (Strategy.REST_FOR_ONE, 1, [1, 2, 3]),
        (Strategy.REST_FOR_ONE, 3, [3]),
    ],
)
def test_restart_set(strategy: Strategy, index: int, expected: list[int]) -> None:
    assert list(restart_set(strategy, index, 4)) == expected


def test_restart_intensity_window() -> None:
    clock = FakeClock(100.0)
    intensity = RestartIntensity(2, 10.0, clock)
    assert not intensity.record()
    clock.advance(4)
    assert not intensity.record()
    clock.advance(6)  # the first restart is now 10 s old: outside the window
    assert not intensity.record()
    clock.advance(1)
    assert intensity.record()  # three within 10 s
    intensity.reset()
    assert not intensity.record()
    assert RestartIntensity(0, 1.0, clock).record()
    with pytest.raises(ValueError, match="max_restarts"):
        RestartIntensity(-1, 1.0, clock)
    with pytest.raises(ValueError, match="max_seconds"):
        RestartIntensity(1, 0, clock)


def test_spec_validation() -> None:
    ref: ActorRef[Inbox] = ActorRef("a", mailbox_size=1)
    with pytest.raises(ValueError, match="shutdown"):
        ChildSpec(ref=ref, factory=lambda: None, shutdown=-1)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="shutdown"):
        SupervisorSpec(Supervisor("s", []), shutdown=float("nan"))
    assert Supervisor("s", [], strategy="rest_for_one").strategy is Strategy.REST_FOR_ONE  # type: ignore[arg-type]


def test_fake_clock() -> None:
    clock = FakeClock(5.0)
    clock.advance(2.5)
    assert clock.now() == 7.5
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


@pytest.mark.asyncio
async def test_recording_ref_records_and_answers_from_its_script() -> None:
    ref: RecordingRef[Inbox] = RecordingRef("catalog", replies={Ping: Pong(n=1)})
    ref.script(Note, lambda message: message.text.upper())
    ref.script(Fail, AskTimeout("scripted"))
    ref.script(Message, "default")
    await ref.tell(Note(text="told"))
    ref.try_tell(Hold(key="k"))
    assert await ref.ask(Ping(), expect=Pong, timeout=1) == Pong(n=1)
    assert await ref.ask(Note(text="x"), expect=str, timeout=1) == "X"
    assert await ref.ask(Hold(key="k"), expect=str, timeout=1) == "default"
    with pytest.raises(AskTimeout):
        await ref.ask(Fail(reason="r"), expect=str, timeout=1)
    with pytest.raises(UnexpectedReply):
        await ref.ask(Ping(), expect=str, timeout=1)
    assert ref.told == [Note(text="told"), Hold(key="k")]
    assert len(ref.asked) == 5
    assert len(ref.messages) == 7


@pytest.mark.asyncio
async def test_recording_ref_full_dead_unscripted_and_waiting() -> None:
    ref: RecordingRef[Inbox] = RecordingRef("r", mailbox_size=4)
    assert ref.mailbox_free == 4
    with pytest.raises(LookupError, match="no scripted reply for Ping"):
        await ref.ask(Ping(), expect=Pong, timeout=1)
    ref.free = 0
    with pytest.raises(MailboxFull):
        ref.try_tell(Ping())
    async with anyio.create_task_group() as tg:

        async def tell_later() -> None:
            await ref.tell(Note(text="later"))

        tg.start_soon(tell_later)
        assert (await ref.wait_for(2))[-1] == Note(text="later")
    ref.dead = True
    with pytest.raises(ActorDead):
        await ref.tell(Ping())
    with pytest.raises(ActorDead):
        await ref.ask(Ping(), expect=Pong, timeout=1)
