"""ActorRef semantics: backpressure, try_tell, ask deadlines and failures, stop."""

from __future__ import annotations

import anyio
import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.runtime.rt_support import (
    ALL_MESSAGES,
    AnyMessage,
    Fail,
    Hold,
    Inbox,
    Note,
    Nothing,
    Ping,
    Pong,
    Probe,
    Quit,
    WideActor,
    child,
    ref_of,
    running,
)
from xvactor.runtime import (
    ActorDead,
    ActorRef,
    AskTimeout,
    MailboxFull,
    Message,
    Supervisor,
    UnexpectedReply,
)


def _one(probe: Probe, **kwargs: object) -> tuple[Supervisor, ActorRef[Inbox]]:
    spec = child("a", probe, **kwargs)  # type: ignore[arg-type]
    return Supervisor("root", [spec]), ref_of(spec)


# msgpack integers are 64-bit.
_INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
_MESSAGES = st.one_of(
    st.builds(Ping, n=_INT64),
    st.builds(Pong, n=_INT64),
    st.builds(Note, text=st.text()),
    st.builds(Hold, key=st.text(), fail_once=st.booleans()),
    st.builds(Fail, reason=st.text(), times=st.integers(min_value=-1, max_value=1 << 40)),
    st.just(Quit()),
    st.just(Nothing()),
)


def test_strategy_covers_every_test_message() -> None:
    assert {Ping, Pong, Note, Hold, Fail, Quit, Nothing} == set(ALL_MESSAGES)


@settings(max_examples=60)
@given(_MESSAGES)
def test_messages_round_trip_msgpack(message: Message) -> None:
    encoded = msgspec.msgpack.encode(message)
    assert msgspec.msgpack.decode(encoded, type=AnyMessage) == message
    assert msgspec.msgpack.decode(encoded, type=type(message)) == message


def test_mailbox_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ActorRef("x", mailbox_size=0)


@pytest.mark.asyncio
async def test_tell_awaits_space_backpressure() -> None:
    probe = Probe()
    sup, ref = _one(probe, mailbox_size=1)
    async with running(sup), anyio.create_task_group() as tg:
        await ref.tell(Hold(key="h"))
        await probe.reached("h")
        await ref.tell(Note(text="1"))  # fills the only slot
        assert ref.mailbox_free == 0
        delivered = anyio.Event()

        async def third() -> None:
            await ref.tell(Note(text="2"))
            delivered.set()

        tg.start_soon(third)
        await anyio.wait_all_tasks_blocked()
        assert not delivered.is_set()
        probe.release("h")
        await delivered.wait()
        assert await ref.ask(Note(text="3"), expect=str, timeout=5) == "3"
    assert probe.of("a:note") == ["a:note:1", "a:note:2", "a:note:3"]


@pytest.mark.asyncio
async def test_try_tell_fails_fast_when_full() -> None:
    probe = Probe()
    sup, ref = _one(probe, mailbox_size=1)
    async with running(sup):
        ref.try_tell(Hold(key="h"))
        await probe.reached("h")
        ref.try_tell(Note(text="1"))
        with pytest.raises(MailboxFull):
            ref.try_tell(Note(text="2"))
        probe.release("h")
        assert await ref.ask(Note(text="3"), expect=str, timeout=5) == "3"
    assert probe.of("a:note") == ["a:note:1", "a:note:3"]


@pytest.mark.asyncio
async def test_messages_told_before_start_are_delivered() -> None:
    probe = Probe()
    sup, ref = _one(probe)
    ref.try_tell(Note(text="early"))
    async with running(sup):
        assert await ref.ask(Ping(n=1), expect=Pong, timeout=5) == Pong(n=1)
    assert probe.of("a:note") == ["a:note:early"]


@pytest.mark.asyncio
async def test_ask_returns_reply_and_checks_its_type() -> None:
    probe = Probe()
    sup, ref = _one(probe)
    async with running(sup):
        assert await ref.ask(Ping(n=7), expect=Pong, timeout=5) == Pong(n=7)
        await ref.ask(Nothing(), expect=type(None), timeout=5)  # a None reply passes the check
        with pytest.raises(UnexpectedReply, match="expected Pong"):
            await ref.ask(Note(text="x"), expect=Pong, timeout=5)
        # UnexpectedReply is the caller's problem: the actor is unaffected.
        assert await ref.ask(Ping(n=8), expect=Pong, timeout=5) == Pong(n=8)
    assert probe.count("a:started") == 1


@pytest.mark.asyncio
async def test_ask_timeout_waiting_for_space() -> None:
    probe = Probe()
    sup, ref = _one(probe, mailbox_size=1)
    async with running(sup):
        await ref.tell(Hold(key="h"))
        await probe.reached("h")
        await ref.tell(Note(text="queued"))
        with pytest.raises(AskTimeout):
            await ref.ask(Note(text="never"), expect=str, timeout=0)
        assert ref.mailbox_free == 0
        probe.release("h")
        assert await ref.ask(Note(text="after"), expect=str, timeout=5) == "after"
    assert probe.of("a:note") == ["a:note:queued", "a:note:after"]


@pytest.mark.asyncio
async def test_ask_timeout_while_queued_withdraws_the_message() -> None:
    probe = Probe()
    sup, ref = _one(probe, mailbox_size=4)
    async with running(sup):
        await ref.tell(Hold(key="h"))
        await probe.reached("h")
        with pytest.raises(AskTimeout):
            await ref.ask(Note(text="withdrawn"), expect=str, timeout=0)
        assert ref.mailbox_free == 4
        probe.release("h")
        assert await ref.ask(Note(text="next"), expect=str, timeout=5) == "next"
    assert probe.of("a:note") == ["a:note:next"]


@pytest.mark.asyncio
async def test_ask_timeout_in_flight_leaves_no_stale_reply() -> None:
    probe = Probe()
    sup, ref = _one(probe)
    async with running(sup):
        # The idle worker takes the message at once; the caller gives up while it is handled.
        with pytest.raises(AskTimeout):
            await ref.ask(Hold(key="slow"), expect=str, timeout=0)
        await probe.reached("slow")
        probe.release("slow")
        assert await ref.ask(Note(text="fresh"), expect=str, timeout=5) == "fresh"
        assert await ref.ask(Ping(n=2), expect=Pong, timeout=5) == Pong(n=2)
    assert probe.count("a:hold:slow") == 1
    assert probe.count("a:started") == 1


@pytest.mark.asyncio
async def test_ask_exception_goes_to_caller_and_actor_keeps_running() -> None:
    probe = Probe()
    sup, ref = _one(probe)
    async with running(sup):
        with pytest.raises(ValueError, match="bad request"):
            await ref.ask(Fail(reason="bad request"), expect=str, timeout=5)
        assert await ref.ask(Ping(n=1), expect=Pong, timeout=5) == Pong(n=1)
    assert probe.count("a:started") == 1
    assert probe.count("a:fail:bad request") == 1


@pytest.mark.asyncio
async def test_cancelled_asker_does_not_corrupt_the_actor() -> None:
    probe = Probe()
    sup, ref = _one(probe)
    async with running(sup):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:

                async def cancel_when_handled() -> None:
                    await probe.reached("h")
                    scope.cancel()

                tg.start_soon(cancel_when_handled)
                await ref.ask(Hold(key="h"), expect=str, timeout=5)
        assert scope.cancelled_caught
        # Queued behind the held message, then cancelled: withdrawn.
        with anyio.CancelScope() as queued_scope:
            queued_scope.cancel()
            await ref.ask(Note(text="cancelled"), expect=str, timeout=5)
        probe.release("h")
        assert await ref.ask(Ping(n=3), expect=Pong, timeout=5) == Pong(n=3)
    assert probe.of("a:note") == []
    assert probe.count("a:started") == 1


@pytest.mark.asyncio
async def test_actor_exit_during_ask_gives_actor_dead() -> None:
    probe = Probe()
    sup, ref = _one(probe)
    async with running(sup):
        with pytest.raises(ActorDead):
            await ref.ask(Quit(), expect=type(None), timeout=5)
        # Permanent child: restarted after its normal exit.
        assert await ref.ask(Ping(n=1), expect=Pong, timeout=5) == Pong(n=1)
    assert probe.count("a:started") == 2


@pytest.mark.asyncio
async def test_stop_fails_pending_asks_and_rejects_messages() -> None:
    probe = Probe()
    sup, ref = _one(probe, mailbox_size=4, shutdown=0.05)
    outcomes: list[BaseException] = []
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)

        async def ask(message: Hold | Note) -> None:
            try:
                await ref.ask(message, expect=str, timeout=5)
            except ActorDead as exc:
                outcomes.append(exc)

        tg.start_soon(ask, Hold(key="never-released"))
        await probe.reached("never-released")
        tg.start_soon(ask, Note(text="queued"))
        await anyio.wait_all_tasks_blocked()
        # The in-flight ask outlives the 0.05 s shutdown and is cancelled.
        await sup.stop()
    assert len(outcomes) == 2
    with pytest.raises(ActorDead):
        await ref.tell(Note(text="late"))
    with pytest.raises(ActorDead):
        ref.try_tell(Note(text="late"))
    with pytest.raises(ActorDead):
        await ref.ask(Ping(), expect=Pong, timeout=5)
    assert probe.of("a:note") == []
    assert probe.log[-1] == "a:stopping"


@pytest.mark.asyncio
async def test_stop_fails_senders_waiting_for_space() -> None:
    probe = Probe()
    sup, ref = _one(probe, mailbox_size=1, shutdown=0.05)
    failed = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)
        await ref.tell(Hold(key="h"))
        await probe.reached("h")
        await ref.tell(Note(text="fills"))

        async def blocked_tell() -> None:
            with pytest.raises(ActorDead):
                await ref.tell(Note(text="waits"))
            failed.set()

        tg.start_soon(blocked_tell)
        await anyio.wait_all_tasks_blocked()
        await sup.stop()
    assert failed.is_set()


@pytest.mark.asyncio
async def test_concurrency_runs_messages_at_once() -> None:
    probe = Probe()
    spec = child("w", probe, actor=WideActor)
    ref = ref_of(spec)
    async with running(Supervisor("root", [spec])), anyio.create_task_group() as tg:

        async def ask_hold() -> None:
            assert await ref.ask(Hold(key="1"), expect=str, timeout=5) == "1"

        tg.start_soon(ask_hold)
        await ref.tell(Hold(key="2"))
        # Both are inside receive() before either is released.
        await probe.reached("1")
        await probe.reached("2")
        probe.release("2")
        probe.release("1")
    assert sorted(probe.of("w:hold")) == ["w:hold:1", "w:hold:2"]


@pytest.mark.asyncio
async def test_sequential_actor_handles_one_message_at_a_time() -> None:
    probe = Probe()
    sup, ref = _one(probe)
    async with running(sup):
        await ref.tell(Hold(key="1"))
        await ref.tell(Hold(key="2"))
        await probe.reached("1")
        await anyio.wait_all_tasks_blocked()
        assert not probe.entered("2").is_set()
        probe.release("1")
        await probe.reached("2")
        probe.release("2")
