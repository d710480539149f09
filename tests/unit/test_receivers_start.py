"""The receivers actor takes back what a failed start began (workers, sockets), even when
the node is told to stop at the same moment."""

from __future__ import annotations

import threading

import anyio
import pytest

from xvactor.actors.receivers import ReceiversActor
from xvactor.config import load_config
from xvactor.runtime import ActorRef, Limiters


@pytest.mark.asyncio
async def test_a_start_that_fails_while_cancelled_is_taken_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = threading.Event(), threading.Event()
    stopped: list[bool] = []

    def start(self: ReceiversActor, bridge: object) -> None:
        entered.set()  # some workers are started on this thread...
        release.wait(10)
        raise RuntimeError("receive worker 1 did not start")  # ...and one fails

    monkeypatch.setattr(ReceiversActor, "_start", start)
    monkeypatch.setattr(ReceiversActor, "_stop", lambda self: stopped.append(True))
    actor = ReceiversActor(
        load_config(), ActorRef("receivers", mailbox_size=1), Limiters({"listener": 1})
    )
    scopes: list[anyio.CancelScope] = []
    failures: list[BaseException] = []

    async def start_actor() -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            try:
                await actor.started()
            except RuntimeError as exc:
                failures.append(exc)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(start_actor)
        await anyio.to_thread.run_sync(entered.wait, 10)
        scopes[0].cancel()  # the node is told to stop meanwhile
        release.set()  # the start thread is not abandoned: it finishes, and fails
    assert [str(f) for f in failures] == ["receive worker 1 did not start"]
    assert stopped == [True]
