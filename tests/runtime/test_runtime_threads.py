"""Thread bridges: limiters, run_blocking, and LoopBridge used from real foreign threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from tests.runtime.rt_support import (
    Fail,
    Hold,
    Inbox,
    Note,
    Ping,
    Pong,
    Probe,
    TestActor,
    running,
)
from xvactor.runtime import (
    ActorDead,
    ActorRef,
    AskTimeout,
    ChildSpec,
    Limiters,
    LoopBridge,
    Supervisor,
    UnexpectedReply,
    run_blocking,
)


class ForeignThread:
    """A plain ``threading.Thread`` running ``target`` and keeping its outcome."""

    def __init__(self, target: Callable[[], object]) -> None:
        self.result: object = None
        self.error: BaseException | None = None
        self.finished = threading.Event()
        self._target = target
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            self.result = self._target()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished.set()

    async def join(self) -> object:
        """Wait (on a worker thread, not by polling) for the thread; re-raise its error."""
        await anyio.to_thread.run_sync(self._thread.join)
        if self.error is not None:
            raise self.error
        return self.result


class AnnouncingRef(ActorRef[Inbox]):
    """Sets ``asking`` when an ask enters the event loop."""

    def __init__(self, name: str, *, mailbox_size: int) -> None:
        super().__init__(name, mailbox_size=mailbox_size)
        self.asking = anyio.Event()

    async def ask(self, message: Inbox, *, expect: type[Any], timeout: float) -> Any:
        self.asking.set()
        return await super().ask(message, expect=expect, timeout=timeout)


def _actor(probe: Probe, ref: ActorRef[Inbox]) -> Supervisor:
    spec = ChildSpec(ref=ref, factory=lambda: TestActor(ref.name, probe))
    return Supervisor("root", [spec])


def test_limiters_by_kind() -> None:
    limiters = Limiters({"disk": 2, "associate": 1})
    assert limiters["disk"].total_tokens == 2
    assert set(limiters) == {"disk", "associate"}
    assert len(limiters) == 2
    with pytest.raises(KeyError, match=r"'store'.*configured: associate, disk"):
        limiters["store"]
    with pytest.raises(ValueError, match="capacity"):
        Limiters({"disk": 0})


@pytest.mark.asyncio
async def test_run_blocking_uses_a_thread_and_the_kind_limiter() -> None:
    limiters = Limiters({"disk": 1})
    loop_thread = threading.get_ident()
    entered, release = threading.Event(), threading.Event()

    def first() -> int:
        entered.set()
        release.wait()
        return threading.get_ident()

    results: list[int] = []

    async def job(func: Callable[[], int]) -> None:
        results.append(await run_blocking(limiters, "disk", func))

    async with anyio.create_task_group() as tg:
        tg.start_soon(job, first)
        await anyio.to_thread.run_sync(entered.wait)
        tg.start_soon(job, threading.get_ident)
        await anyio.wait_all_tasks_blocked()
        # The second job waits for the only "disk" token.
        assert limiters["disk"].statistics().tasks_waiting == 1
        release.set()
    assert len(results) == 2
    assert loop_thread not in results
    with pytest.raises(KeyError):
        await run_blocking(limiters, "store", int)


@pytest.mark.asyncio
async def test_run_blocking_propagates_exceptions() -> None:
    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await run_blocking(Limiters({"disk": 1}), "disk", broken)


@pytest.mark.asyncio
async def test_cancelled_run_blocking_waits_for_its_thread() -> None:
    limiters = Limiters({"disk": 1})
    entered, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow() -> None:
        entered.set()
        release.wait()
        finished.set()

    cancelled_returned = anyio.Event()
    async with anyio.create_task_group() as tg:

        async def caller() -> None:
            with anyio.CancelScope() as scope:
                tg.start_soon(cancel_when_entered, scope)
                await run_blocking(limiters, "disk", slow)
            cancelled_returned.set()

        async def cancel_when_entered(scope: anyio.CancelScope) -> None:
            await anyio.to_thread.run_sync(entered.wait)
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert not cancelled_returned.is_set()  # still waiting for the thread
            release.set()

        tg.start_soon(caller)
    assert finished.is_set()
    assert cancelled_returned.is_set()


@pytest.mark.asyncio
async def test_bridge_ask_from_a_foreign_thread() -> None:
    probe = Probe()
    ref: ActorRef[Inbox] = ActorRef("a", mailbox_size=4)
    async with running(_actor(probe, ref)):
        bridge = LoopBridge()
        thread = ForeignThread(lambda: bridge.ask(ref, Ping(n=5), expect=Pong, timeout=5))
        assert await thread.join() == Pong(n=5)
        told = ForeignThread(lambda: bridge.tell(ref, Note(text="from thread")))
        await told.join()
        assert await ref.ask(Note(text="sync"), expect=str, timeout=5) == "sync"
    assert probe.of("a:note") == ["a:note:from thread", "a:note:sync"]


@pytest.mark.asyncio
async def test_bridge_ask_errors_reach_the_thread() -> None:
    probe = Probe()
    ref: ActorRef[Inbox] = ActorRef("a", mailbox_size=4)
    async with running(_actor(probe, ref)):
        bridge = LoopBridge()
        failing = ForeignThread(lambda: bridge.ask(ref, Fail(reason="bad"), expect=str, timeout=5))
        with pytest.raises(ValueError, match="bad"):
            await failing.join()
        wrong = ForeignThread(lambda: bridge.ask(ref, Ping(), expect=str, timeout=5))
        with pytest.raises(UnexpectedReply):
            await wrong.join()
        await ref.tell(Hold(key="h"))
        await probe.reached("h")
        late = ForeignThread(lambda: bridge.ask(ref, Ping(), expect=Pong, timeout=0))
        with pytest.raises(AskTimeout):
            await late.join()
        probe.release("h")
    dead = ForeignThread(lambda: bridge.ask(ref, Ping(), expect=Pong, timeout=5))
    with pytest.raises(ActorDead):
        await dead.join()


@pytest.mark.asyncio
async def test_full_mailbox_blocks_the_calling_thread_until_space_frees() -> None:
    probe = Probe()
    ref = AnnouncingRef("a", mailbox_size=1)
    async with running(_actor(probe, ref)):
        bridge = LoopBridge()
        await ref.tell(Hold(key="h"))
        await probe.reached("h")
        await ref.tell(Note(text="fills the mailbox"))
        thread = ForeignThread(lambda: bridge.ask(ref, Note(text="thread"), expect=str, timeout=30))
        await ref.asking.wait()
        await anyio.wait_all_tasks_blocked()
        assert not thread.finished.is_set()
        assert ref.mailbox_free == 0
        probe.release("h")
        assert await thread.join() == "thread"
    assert probe.of("a:note") == ["a:note:fills the mailbox", "a:note:thread"]


@pytest.mark.asyncio
async def test_bridge_refuses_the_event_loop_thread() -> None:
    bridge = LoopBridge()

    async def one() -> int:
        return 1

    with pytest.raises(RuntimeError, match="deadlock"):
        bridge.call(one)
    assert await ForeignThread(lambda: bridge.call(one)).join() == 1


def test_bridge_raises_actor_dead_once_the_loop_is_gone() -> None:
    async def make() -> LoopBridge:
        return LoopBridge()

    bridge = anyio.run(make)

    async def one() -> int:
        return 1

    outcome: list[BaseException] = []

    def call() -> None:
        try:
            bridge.call(one)
        except ActorDead as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    thread.join()
    assert len(outcome) == 1
    assert "event loop stopped" in str(outcome[0])
