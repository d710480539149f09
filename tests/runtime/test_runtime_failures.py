"""Crashes: the tell failure rule, redelivery, poison messages, failed starts."""

from __future__ import annotations

import logging

import anyio
import pytest

from tests.runtime.rt_support import (
    Escalations,
    Fail,
    Hold,
    Inbox,
    Note,
    Probe,
    WideActor,
    child,
    ref_of,
    running,
)
from xvactor.runtime import (
    ActorDead,
    ActorRef,
    Message,
    Supervisor,
)
from xvactor.testing.fakes import FakeClock

pytestmark = pytest.mark.asyncio

Poisoned = list[tuple[str, Message, BaseException]]


def _one(
    probe: Probe, poisoned: Poisoned | None = None, *, max_restarts: int = 3, wide: bool = False
) -> tuple[Supervisor, ActorRef[Inbox]]:
    spec = child("a", probe, actor=WideActor) if wide else child("a", probe)
    sup = Supervisor(
        "root",
        [spec],
        max_restarts=max_restarts,
        clock=FakeClock(),
        on_poison=None
        if poisoned is None
        else lambda name, message, exc: poisoned.append((name, message, exc)),
    )
    return sup, ref_of(spec)


async def test_tell_crash_restarts_and_redelivers_once() -> None:
    probe, poisoned = Probe(), Poisoned()
    sup, ref = _one(probe, poisoned)
    async with running(sup):
        await ref.tell(Fail(reason="flaky", times=1))
        # The restarted instance handles the same message first; now it succeeds.
        assert await ref.ask(Note(text="after"), expect=str, timeout=5) == "after"
    assert probe.log == [
        "a:starting",
        "a:started",
        "a:fail:flaky",
        "a:stopping",
        "a:starting",
        "a:started",
        "a:fail:flaky",
        "a:note:after",
        "a:stopping",
    ]
    assert poisoned == []


async def test_message_crashing_twice_is_poison_and_the_queue_continues() -> None:
    probe, poisoned = Probe(), Poisoned()
    sup, ref = _one(probe, poisoned)
    async with running(sup):
        bad = Fail(reason="corrupt")
        await ref.tell(bad)
        await ref.tell(Note(text="next"))
        assert await ref.ask(Note(text="sync"), expect=str, timeout=5) == "sync"
    assert probe.count("a:fail:corrupt") == 2
    assert probe.count("a:started") == 3
    assert probe.of("a:note") == ["a:note:next", "a:note:sync"]
    [(name, message, error)] = poisoned
    assert name == "a"
    assert message is bad
    assert isinstance(error, ValueError)


async def test_poison_is_counted_per_delivery_not_by_equality() -> None:
    probe, poisoned = Probe(), Poisoned()
    sup, ref = _one(probe, poisoned, max_restarts=10)
    async with running(sup):
        first, second = Fail(reason="same"), Fail(reason="same")
        assert first == second
        await ref.tell(first)
        await ref.tell(second)
        assert await ref.ask(Note(text="sync"), expect=str, timeout=5) == "sync"
    # Each delivery crashes the actor twice before it is declared poison.
    assert probe.count("a:fail:same") == 4
    assert [message for _, message, _ in poisoned] == [first, second]
    assert poisoned[0][1] is first
    assert poisoned[1][1] is second


async def test_default_poison_handler_logs_an_error(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe()
    sup, ref = _one(probe)
    with caplog.at_level(logging.ERROR, logger="xvactor.runtime"):
        async with running(sup):
            await ref.tell(Fail(reason="corrupt"))
            assert await ref.ask(Note(text="sync"), expect=str, timeout=5) == "sync"
    poison = [r for r in caplog.records if "poison" in r.getMessage()]
    assert len(poison) == 1
    assert poison[0].name == "xvactor.runtime"
    assert "Fail" in poison[0].getMessage()


async def test_crash_in_started_during_a_restart_counts_as_a_crash() -> None:
    probe = Probe()
    sup, ref = _one(probe, max_restarts=3)
    async with running(sup):
        probe.start_failures["a"] = 2
        await ref.tell(Fail(reason="flaky", times=1))
        # One crash, two failed restarts, then a good one: three restarts, within limits.
        assert await ref.ask(Note(text="up"), expect=str, timeout=5) == "up"
    assert probe.count("a:start-failed") == 2
    assert probe.count("a:started") == 2
    # stopping() runs only for instances that started.
    assert probe.count("a:stopping") == 2


async def test_failed_restarts_exhaust_restart_intensity() -> None:
    probe = Probe()
    sup, ref = _one(probe, max_restarts=3)
    escalations = Escalations(sup)
    async with anyio.create_task_group() as tg:
        await tg.start(escalations.run)
        probe.start_failures["a"] = 100
        await ref.tell(Fail(reason="boom"))
    [escalation] = escalations.raised
    assert isinstance(escalation.__cause__, RuntimeError)
    assert "cannot start" in str(escalation)
    # Restarts 1-3 fail to start; a fourth restart would be one too many.
    assert probe.count("a:start-failed") == 3
    with pytest.raises(ActorDead):
        await ref.tell(Note(text="late"))


async def test_failed_first_start_stops_started_children_and_raises() -> None:
    probe = Probe()
    probe.start_failures["b"] = 1
    specs = [child(name, probe) for name in "abc"]
    sup = Supervisor("root", specs, clock=FakeClock())
    with pytest.raises(RuntimeError, match="b cannot start"):
        await sup.run()
    assert probe.log == ["a:starting", "a:started", "b:starting", "b:start-failed", "a:stopping"]
    for spec in specs:
        with pytest.raises(ActorDead):
            ref_of(spec).try_tell(Note(text="late"))


async def test_crash_fails_in_flight_asks_and_keeps_queued_ones() -> None:
    probe, poisoned = Probe(), Poisoned()
    sup, ref = _one(probe, poisoned, wide=True)
    outcomes: dict[str, object] = {}
    answered = {"in-flight": anyio.Event(), "queued": anyio.Event()}

    async def ask(key: str, message: Hold | Note) -> None:
        try:
            outcomes[key] = await ref.ask(message, expect=str, timeout=5)
        except ActorDead as exc:
            outcomes[key] = exc
        answered[key].set()

    async with running(sup), anyio.create_task_group() as tg:
        tg.start_soon(ask, "in-flight", Hold(key="h"))
        await probe.reached("h")
        await ref.tell(Hold(key="t", fail_once=True))
        await probe.reached("t")
        tg.start_soon(ask, "queued", Note(text="queued"))
        await anyio.wait_all_tasks_blocked()
        assert outcomes == {}
        probe.release("t")  # the tell crashes the actor while "h" is being handled
        await answered["in-flight"].wait()
        assert isinstance(outcomes["in-flight"], ActorDead)
        await answered["queued"].wait()
    assert outcomes["queued"] == "queued"
    assert probe.count("a:started") == 2
    assert probe.count("a:hold:t") == 2  # redelivered to the new instance
    assert poisoned == []
