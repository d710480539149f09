"""Supervisor: ordered start, reverse stop, strategies, restart types, intensity, nesting."""

from __future__ import annotations

import anyio
import anyio.abc
import pytest

from tests.runtime.rt_support import (
    Escalations,
    Fail,
    Hold,
    Inbox,
    Note,
    Ping,
    Pong,
    Probe,
    Quit,
    child,
    ref_of,
    running,
)
from xvactor.runtime import (
    ActorDead,
    ActorRef,
    ChildSpec,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from xvactor.testing.fakes import FakeClock

pytestmark = pytest.mark.asyncio


def _tree(
    probe: Probe, names: str = "abc", **kwargs: object
) -> tuple[Supervisor, dict[str, ActorRef[Inbox]]]:
    specs = [child(name, probe) for name in names]
    sup = Supervisor("root", specs, clock=FakeClock(), **kwargs)  # type: ignore[arg-type]
    return sup, {spec.name: ref_of(spec) for spec in specs}


async def _crash(probe: Probe, ref: ActorRef[Inbox], reason: str) -> None:
    """Crash the actor once (the redelivered message then succeeds) and wait for it."""
    await ref.tell(Fail(reason=reason, times=1))
    await probe.until(lambda: probe.count(f"{ref.name}:fail:{reason}") == 2)


async def test_children_start_in_order_each_ready_before_the_next() -> None:
    probe = Probe()
    probe.start_gates.add("a")
    sup, _ = _tree(probe, "ab")
    ready = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def start() -> None:
            await tg.start(sup.run)
            ready.set()

        tg.start_soon(start)
        await probe.reached("a:start")
        await anyio.wait_all_tasks_blocked()
        assert probe.log == ["a:starting"]
        assert not ready.is_set()
        probe.release("a:start")
        await ready.wait()
        assert probe.log == ["a:starting", "a:started", "b:starting", "b:started"]
        await sup.stop()


async def test_children_stop_in_reverse_order() -> None:
    probe = Probe()
    sup, _ = _tree(probe)
    async with running(sup):
        pass
    assert probe.of("a:stopping") == ["a:stopping"]
    assert [e for e in probe.log if e.endswith("stopping")] == [
        "c:stopping",
        "b:stopping",
        "a:stopping",
    ]


async def test_in_flight_message_finishes_during_stop() -> None:
    probe = Probe()
    sup, refs = _tree(probe, "ab")
    replies: list[str] = []
    async with anyio.create_task_group() as tg:
        await tg.start(sup.run)

        async def ask() -> None:
            replies.append(await refs["a"].ask(Hold(key="x"), expect=str, timeout=5))

        tg.start_soon(ask)
        await probe.reached("x")
        tg.start_soon(sup.stop)
        await probe.until(lambda: "b:stopping" in probe.log)
        await anyio.wait_all_tasks_blocked()
        assert probe.log[-1] == "b:stopping"  # a waits for its in-flight message
        probe.release("x")
    assert replies == ["x"]
    assert probe.log[-1] == "a:stopping"


async def test_child_ignoring_stop_is_cancelled_after_its_shutdown_timeout() -> None:
    probe = Probe()
    stubborn = child("stubborn", probe, shutdown=0.05)
    polite = child("polite", probe)
    sup = Supervisor("root", [polite, stubborn])
    async with running(sup):
        await ref_of(stubborn).tell(Hold(key="forever"))
        await probe.reached("forever")
    # Cancelled after 0.05 s, cleaned up, and the next child was stopped after it.
    assert [e for e in probe.log if e.endswith("stopping")] == [
        "stubborn:stopping",
        "polite:stopping",
    ]


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    probe = Probe()
    sup, refs = _tree(probe, strategy=Strategy.ONE_FOR_ONE)
    async with running(sup):
        await _crash(probe, refs["b"], "boom")
        assert await refs["b"].ask(Ping(n=1), expect=Pong, timeout=5) == Pong(n=1)
    assert [probe.count(f"{n}:started") for n in "abc"] == [1, 2, 1]


async def test_one_for_all_restarts_every_child() -> None:
    probe = Probe()
    sup, refs = _tree(probe, strategy=Strategy.ONE_FOR_ALL)
    async with running(sup):
        await _crash(probe, refs["b"], "boom")
        await probe.until(lambda: probe.count("c:started") == 2)
        after_crash = probe.log[probe.log.index("b:fail:boom") + 1 :]
        lifecycle = [e for e in after_crash if e.endswith(("stopping", "starting"))]
        # The crashed child is already down; the others stop in reverse, all start in order.
        assert lifecycle == [
            "b:stopping",
            "c:stopping",
            "a:stopping",
            "a:starting",
            "b:starting",
            "c:starting",
        ]
    assert [probe.count(f"{n}:started") for n in "abc"] == [2, 2, 2]


async def test_rest_for_one_restarts_the_child_and_those_started_after_it() -> None:
    probe = Probe()
    sup, refs = _tree(probe, strategy=Strategy.REST_FOR_ONE)
    async with running(sup):
        await _crash(probe, refs["b"], "boom")
        await probe.until(lambda: probe.count("c:started") == 2)
        assert [e for e in probe.log if e.endswith("stopping")] == ["b:stopping", "c:stopping"]
    assert [probe.count(f"{n}:started") for n in "abc"] == [1, 2, 2]


async def test_permanent_child_restarts_after_normal_exit() -> None:
    probe = Probe()
    sup, refs = _tree(probe, "a")
    async with running(sup):
        await refs["a"].tell(Quit())
        assert await refs["a"].ask(Note(text="back"), expect=str, timeout=5) == "back"
    assert probe.count("a:started") == 2


async def test_transient_child_restarts_after_crash_not_after_normal_exit() -> None:
    probe = Probe()
    spec = child("t", probe, restart=Restart.TRANSIENT)
    ref = ref_of(spec)
    async with running(Supervisor("root", [spec], clock=FakeClock())):
        await _crash(probe, ref, "boom")
        assert await ref.ask(Note(text="back"), expect=str, timeout=5) == "back"
        await ref.tell(Quit())
        await probe.until(lambda: probe.count("t:stopping") == 2)
        with pytest.raises(ActorDead):
            await ref.ask(Ping(), expect=Pong, timeout=5)
    assert probe.count("t:started") == 2


async def test_temporary_child_is_never_restarted() -> None:
    probe = Probe()
    temp = child("t", probe, restart=Restart.TEMPORARY)
    other = child("o", probe)
    async with running(Supervisor("root", [other, temp], strategy=Strategy.REST_FOR_ONE)):
        await ref_of(temp).tell(Fail(reason="boom"))
        await probe.until(lambda: "t:stopping" in probe.log)
        await anyio.wait_all_tasks_blocked()
        with pytest.raises(ActorDead):
            await ref_of(temp).tell(Note(text="late"))
        assert await ref_of(other).ask(Note(text="alive"), expect=str, timeout=5) == "alive"
    assert probe.count("t:started") == 1
    assert probe.count("o:started") == 1


async def test_temporary_sibling_is_not_restarted_by_one_for_all() -> None:
    probe = Probe()
    temp = child("t", probe, restart=Restart.TEMPORARY)
    crasher = child("c", probe)
    sup = Supervisor("root", [temp, crasher], strategy=Strategy.ONE_FOR_ALL, clock=FakeClock())
    async with running(sup):
        await _crash(probe, ref_of(crasher), "boom")
        with pytest.raises(ActorDead):
            await ref_of(temp).tell(Note(text="late"))
    assert probe.count("t:started") == 1
    assert probe.count("c:started") == 2


async def test_too_many_restarts_escalate_and_stop_children_in_reverse() -> None:
    probe = Probe()
    sup, refs = _tree(probe, max_restarts=2, max_seconds=5)
    escalations = Escalations(sup)
    async with anyio.create_task_group() as tg:
        await tg.start(escalations.run)
        for n in range(3):
            await refs["b"].tell(Fail(reason=f"r{n}", times=1))
    [escalation] = escalations.raised
    assert isinstance(escalation.__cause__, ValueError)
    assert probe.count("b:started") == 3
    # b is down after its crash; the others are stopped in reverse order.
    assert probe.log[-4:] == ["b:fail:r2", "b:stopping", "c:stopping", "a:stopping"]
    for ref in refs.values():
        with pytest.raises(ActorDead):
            ref.try_tell(Note(text="late"))


async def test_restarts_older_than_the_window_do_not_count() -> None:
    probe = Probe()
    clock = FakeClock()
    spec = child("a", probe)
    ref = ref_of(spec)
    sup = Supervisor("root", [spec], max_restarts=2, max_seconds=5, clock=clock)
    escalations = Escalations(sup)
    async with anyio.create_task_group() as tg:
        await tg.start(escalations.run)
        await _crash(probe, ref, "1")
        await _crash(probe, ref, "2")
        clock.advance(5.5)  # both restarts leave the window
        await _crash(probe, ref, "3")
        await _crash(probe, ref, "4")
        assert await ref.ask(Note(text="still up"), expect=str, timeout=5) == "still up"
        assert not escalations.done.is_set()
        clock.advance(1)
        await ref.tell(Fail(reason="5", times=1))  # the third restart within 5 s
    assert len(escalations.raised) == 1
    assert probe.count("a:started") == 5


def _nested(probe: Probe) -> tuple[ChildSpec, Supervisor, dict[str, ActorRef[Inbox]]]:
    inner_specs = [child("b", probe), child("c", probe)]
    inner = Supervisor("inner", inner_specs, max_restarts=0, clock=FakeClock())
    return child("a", probe), inner, {s.name: ref_of(s) for s in inner_specs}


async def test_escalation_restarts_the_child_supervisor() -> None:
    probe = Probe()
    a, inner, refs = _nested(probe)
    root = Supervisor("root", [a, SupervisorSpec(inner)], clock=FakeClock())
    async with running(root):
        await refs["b"].tell(Fail(reason="boom"))
        await probe.until(lambda: probe.count("c:started") == 2)
        assert await refs["b"].ask(Note(text="back"), expect=str, timeout=5) == "back"
        assert inner.running
    assert [probe.count(f"{n}:started") for n in "abc"] == [1, 2, 2]
    assert probe.log[-3:] == ["c:stopping", "b:stopping", "a:stopping"]


async def test_root_raises_when_escalations_exceed_its_intensity() -> None:
    probe = Probe()
    a, inner, refs = _nested(probe)
    root = Supervisor("root", [a, SupervisorSpec(inner)], max_restarts=1, clock=FakeClock())
    escalations = Escalations(root)
    async with anyio.create_task_group() as tg:
        await tg.start(escalations.run)
        await refs["b"].tell(Fail(reason="one"))
        await probe.until(lambda: probe.count("b:started") == 2)
        await refs["b"].tell(Fail(reason="two"))
    [escalation] = escalations.raised
    assert isinstance(escalation.__cause__, RestartIntensityExceeded)
    assert probe.log[-1] == "a:stopping"
    assert not inner.running


async def test_cancelled_during_start_stops_started_children() -> None:
    probe = Probe()
    probe.start_gates.add("b")
    sup, _ = _tree(probe)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(sup.run)
            await probe.reached("b:start")
            tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await anyio.wait_all_tasks_blocked()
                # b is finishing its start (stop waits for it, up to its shutdown).
                assert "a:stopping" not in probe.log
                probe.release("b:start")
    assert not scope.cancelled_caught  # the task group's own cancellation
    assert probe.log == [
        "a:starting",
        "a:started",
        "b:starting",
        "b:started",
        "b:stopping",
        "a:stopping",
    ]
    assert not sup.running


async def test_cancelled_while_running_stops_children_and_reraises() -> None:
    probe = Probe()
    sup, refs = _tree(probe)
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            scope.cancel()
    assert scope.cancelled_caught
    assert probe.log[-3:] == ["c:stopping", "b:stopping", "a:stopping"]
    with pytest.raises(ActorDead):
        await refs["a"].tell(Note(text="late"))


async def test_cancelled_during_stop_finishes_stopping_then_reraises() -> None:
    probe = Probe()
    sup, refs = _tree(probe, "ab")
    outcome: dict[str, object] = {}
    run_scope = anyio.CancelScope()

    async def run(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        with run_scope:
            await sup.run(task_status=task_status)
        outcome["cancelled"] = run_scope.cancelled_caught

    async def ask() -> None:
        outcome["reply"] = await refs["a"].ask(Hold(key="x"), expect=str, timeout=5)

    async with anyio.create_task_group() as tg:
        await tg.start(run)
        tg.start_soon(ask)
        await probe.reached("x")
        tg.start_soon(sup.stop)
        await probe.until(lambda: "b:stopping" in probe.log)
        run_scope.cancel()
        await anyio.wait_all_tasks_blocked()
        assert "a:stopping" not in probe.log  # the stop is shielded and still in progress
        probe.release("x")
    assert outcome == {"reply": "x", "cancelled": True}
    assert probe.log[-2:] == ["b:stopping", "a:stopping"]


async def test_add_child_starts_it_and_stops_it_first() -> None:
    probe = Probe()
    sup, _ = _tree(probe, "a")
    late = child("late", probe)
    async with running(sup):
        await sup.add_child(late)
        assert probe.log[-1] == "late:started"
        assert await ref_of(late).ask(Ping(n=4), expect=Pong, timeout=5) == Pong(n=4)
        assert sup.children == ("a", "late")
    assert probe.log[-2:] == ["late:stopping", "a:stopping"]


async def test_add_child_before_run_and_duplicate_names() -> None:
    probe = Probe()
    sup, _ = _tree(probe, "a")
    await sup.add_child(child("b", probe))
    with pytest.raises(ValueError, match="duplicate"):
        await sup.add_child(child("b", probe))
    async with running(sup):
        assert probe.log[-1] == "b:started"


async def test_stop_before_run_returns_and_run_is_not_reentrant() -> None:
    probe = Probe()
    sup, _ = _tree(probe, "a")
    await sup.stop()
    async with running(sup):
        with pytest.raises(RuntimeError, match="already running"):
            await sup.run()
    # A stopped supervisor can run again (that is how a parent restarts it).
    async with running(sup):
        pass
    assert probe.count("a:started") == 2


async def test_queued_messages_survive_a_restart_by_a_sibling() -> None:
    probe = Probe()
    sup, refs = _tree(probe, "ab", strategy=Strategy.ONE_FOR_ALL)
    async with running(sup):
        await refs["a"].tell(Hold(key="busy"))
        await probe.reached("busy")
        await refs["a"].tell(Note(text="queued"))
        await refs["b"].tell(Fail(reason="boom", times=1))
        await probe.until(lambda: "a:stopping" not in probe.log and "b:stopping" in probe.log)
        probe.release("busy")  # a's in-flight message finishes within its shutdown
        await probe.until(lambda: "a:note:queued" in probe.log)
    assert probe.count("a:started") == 2
    assert probe.log.index("a:note:queued") > probe.log.index("a:started", 2)
    assert probe.count("a:hold:busy") == 1


async def test_interrupted_tell_is_redelivered_after_the_restart() -> None:
    probe = Probe()
    slow = child("a", probe, shutdown=0.05)
    crasher = child("b", probe)
    sup = Supervisor("root", [slow, crasher], strategy=Strategy.ONE_FOR_ALL, clock=FakeClock())
    async with running(sup):
        await ref_of(slow).tell(Hold(key="long"))
        await probe.reached("long")
        await ref_of(crasher).tell(Fail(reason="boom", times=1))
        # a's message is cancelled after 0.05 s; it is not a crash, and it is not lost.
        await probe.until(lambda: probe.count("a:hold:long") == 2)
        probe.release("long")
        assert await ref_of(slow).ask(Note(text="after"), expect=str, timeout=5) == "after"
    assert probe.count("a:started") == 2


async def test_nested_first_start_failure_fails_the_root_start() -> None:
    probe = Probe()
    probe.start_failures["c"] = 1
    a, inner, _ = _nested(probe)
    root = Supervisor("root", [a, SupervisorSpec(inner)], clock=FakeClock())
    with pytest.raises(RuntimeError, match="c cannot start"):
        await root.run()
    assert probe.log == [
        "a:starting",
        "a:started",
        "b:starting",
        "b:started",
        "c:starting",
        "c:start-failed",
        "b:stopping",
        "a:stopping",
    ]
