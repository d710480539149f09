"""Test actors, messages and helpers shared by the runtime tests.

Everything is sequenced with :class:`anyio.Event` (``Probe.reached`` / ``Probe.release``)
and ``anyio.wait_all_tasks_blocked()``; nothing sleeps.
"""

from __future__ import annotations

import typing
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import ClassVar

import anyio
import anyio.abc

from xvactor.runtime import (
    Actor,
    ActorExit,
    ActorRef,
    ChildSpec,
    Message,
    Restart,
    RestartIntensityExceeded,
    Supervisor,
)


class Ping(Message, frozen=True, tag=True, kw_only=True):
    n: int = 0


class Pong(Message, frozen=True, tag=True, kw_only=True):
    n: int


class Note(Message, frozen=True, tag=True, kw_only=True):
    """Logged as ``<actor>:note:<text>``; replies the text."""

    text: str


class Hold(Message, frozen=True, tag=True, kw_only=True):
    """Signals ``reached(key)``, waits for ``release(key)``, replies the key.

    With ``fail_once``, the first delivery raises ValueError after the release.
    """

    key: str
    fail_once: bool = False


class Fail(Message, frozen=True, tag=True, kw_only=True):
    """Raises ValueError(reason); with ``times`` set, only for the first ``times`` calls."""

    reason: str
    times: int = -1


class Quit(Message, frozen=True, tag=True, kw_only=True):
    """Raises ActorExit."""


class Nothing(Message, frozen=True, tag=True, kw_only=True):
    """Replies None."""


Inbox = Ping | Note | Hold | Fail | Quit | Nothing
AnyMessage = Ping | Pong | Note | Hold | Fail | Quit | Nothing
ALL_MESSAGES: tuple[type[Message], ...] = (Ping, Pong, Note, Hold, Fail, Quit, Nothing)


class Probe:
    """Shared observation point: an event log, gates, counters."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.start_failures: dict[str, int] = {}
        self.start_gates: set[str] = set()
        self.failures: dict[tuple[str, str], int] = {}
        self._entered: dict[str, anyio.Event] = {}
        self._gates: dict[str, anyio.Event] = {}
        self._changed: anyio.Event | None = None

    def record(self, entry: str) -> None:
        self.log.append(entry)
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, re-checking on every new log entry."""
        while not condition():
            if self._changed is None:
                self._changed = anyio.Event()
            await self._changed.wait()

    def entered(self, key: str) -> anyio.Event:
        return self._entered.setdefault(key, anyio.Event())

    def gate(self, key: str) -> anyio.Event:
        return self._gates.setdefault(key, anyio.Event())

    async def reached(self, key: str) -> None:
        await self.entered(key).wait()

    def release(self, key: str) -> None:
        self.gate(key).set()

    def count(self, entry: str) -> int:
        return self.log.count(entry)

    def of(self, prefix: str) -> list[str]:
        return [e for e in self.log if e.startswith(prefix)]


class TestActor(Actor[Inbox]):
    __test__ = False

    def __init__(self, name: str, probe: Probe) -> None:
        self.name = name
        self.probe = probe

    async def started(self) -> None:
        self.probe.record(f"{self.name}:starting")
        if self.name in self.probe.start_gates:
            self.probe.entered(f"{self.name}:start").set()
            await self.probe.gate(f"{self.name}:start").wait()
        left = self.probe.start_failures.get(self.name, 0)
        if left:
            self.probe.start_failures[self.name] = left - 1
            self.probe.record(f"{self.name}:start-failed")
            raise RuntimeError(f"{self.name} cannot start")
        self.probe.record(f"{self.name}:started")

    async def stopping(self) -> None:
        self.probe.record(f"{self.name}:stopping")

    async def receive(self, message: Inbox) -> object:
        match message:
            case Ping(n=n):
                return Pong(n=n)
            case Note(text=text):
                self.probe.record(f"{self.name}:note:{text}")
                return text
            case Hold(key=key, fail_once=fail_once):
                self.probe.record(f"{self.name}:hold:{key}")
                self.probe.entered(key).set()
                await self.probe.gate(key).wait()
                if fail_once and not self.probe.failures.get((self.name, key)):
                    self.probe.failures[self.name, key] = 1
                    raise ValueError(f"hold {key} failed")
                return key
            case Fail(reason=reason, times=times):
                self.probe.record(f"{self.name}:fail:{reason}")
                done = self.probe.failures.get((self.name, reason), 0)
                if times < 0 or done < times:
                    self.probe.failures[self.name, reason] = done + 1
                    raise ValueError(reason)
                return reason
            case Quit():
                self.probe.record(f"{self.name}:quit")
                raise ActorExit
            case Nothing():
                return None
            case _:
                typing.assert_never(message)


class WideActor(TestActor):
    """Handles two messages at once."""

    concurrency: ClassVar[int] = 2


def child(
    name: str,
    probe: Probe,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: float = 5.0,
    mailbox_size: int = 8,
    actor: Callable[[str, Probe], TestActor] = TestActor,
) -> ChildSpec:
    ref: ActorRef[Inbox] = ActorRef(name, mailbox_size=mailbox_size)
    return ChildSpec(
        ref=ref, factory=lambda: actor(name, probe), restart=restart, shutdown=shutdown
    )


def ref_of(spec: ChildSpec) -> ActorRef[Inbox]:
    ref: ActorRef[Inbox] = spec.ref
    return ref


@asynccontextmanager
async def running(supervisor: Supervisor) -> AsyncIterator[Supervisor]:
    """Run a supervisor (ready on entry) and stop it on exit."""
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        try:
            yield supervisor
        finally:
            with anyio.CancelScope(shield=True):
                await supervisor.stop()


class Escalations:
    """Runs a supervisor as a task and keeps the escalation it raises (not grouped)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor
        self.raised: list[RestartIntensityExceeded] = []
        self.done = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await self.supervisor.run(task_status=task_status)
        except RestartIntensityExceeded as exc:
            self.raised.append(exc)
        finally:
            self.done.set()
