"""C-CANCEL from the client: leaving a ``find`` early, cancelling a ``move`` or ``get`` task.

The peer is a small pynetdicom Q/R SCP that answers one match, then waits (bounded) for
the C-CANCEL and records what it saw, so each test knows the peer got the cancel, answered
Cancel (0xFE00), and that the association was released normally, not aborted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
)

from xvactor.client import Client
from xvactor.client.sync import SyncClient
from xvactor.testing.datasets import make_dataset
from xvactor.testing.net import LOOPBACK, free_port

WAIT_FOR_CANCEL = 10.0


@dataclass
class Peer:
    """What the SCP saw."""

    port: int
    move_port: int = 0
    instance_uid: str = ""
    cancelled: list[str] = field(default_factory=list)
    released: int = 0
    aborted: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dest(self) -> tuple[str, int, str]:
        return (LOOPBACK, self.port, "SLOWQR")


def _wait_for_cancel(event: Any) -> bool:
    deadline = time.monotonic() + WAIT_FOR_CANCEL
    while time.monotonic() < deadline:
        if event.is_cancelled:
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def peer() -> Iterator[Peer]:
    seen = Peer(port=0, move_port=free_port())
    instance = make_dataset()
    seen.instance_uid = str(instance.SOPInstanceUID)

    def on_find(event: Any) -> Iterator[tuple[int, Dataset | None]]:
        with seen.lock:
            seen.requests += 1
        match = Dataset()
        match.QueryRetrieveLevel = "STUDY"
        match.StudyInstanceUID = "1.2.3.4"
        yield 0xFF00, match
        if _wait_for_cancel(event):
            seen.cancelled.append("find")
            yield 0xFE00, None
            return
        yield 0x0000, None

    def on_retrieve(kind: str) -> Any:
        def handler(event: Any) -> Iterator[Any]:
            if kind == "move":
                yield LOOPBACK, seen.move_port
            yield 5  # five sub-operations announced, one sent, then wait for the cancel
            yield 0xFF00, instance
            if _wait_for_cancel(event):
                seen.cancelled.append(kind)
                yield 0xFE00, None
                return
            yield 0x0000, None

        return handler

    def released(event: Any) -> None:
        with seen.lock:
            seen.released += 1

    def aborted(event: Any) -> None:
        with seen.lock:
            seen.aborted += 1

    ae = AE(ae_title="SLOWQR")
    for uid in (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
    ):
        ae.add_supported_context(uid)
    ae.add_requested_context(instance.SOPClassUID)  # the C-MOVE's storage association
    # C-GET: we take the SCU role for the storage SOP class on the requester's association.
    ae.add_supported_context(instance.SOPClassUID, scu_role=True, scp_role=True)
    server = ae.start_server(
        (LOOPBACK, 0),
        block=False,
        evt_handlers=[
            (evt.EVT_C_FIND, on_find),
            (evt.EVT_C_MOVE, on_retrieve("move")),
            (evt.EVT_C_GET, on_retrieve("get")),
            (evt.EVT_RELEASED, released),
            (evt.EVT_ABORTED, aborted),
        ],
    )
    seen.port = server.server_address[1]
    try:
        yield seen
    finally:
        server.shutdown()


def _wait_released(peer: Peer, count: int) -> None:
    deadline = time.monotonic() + 5
    while peer.released < count and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.asyncio
async def test_breaking_out_of_find_sends_c_cancel(peer: Peer) -> None:
    async with Client(ae_title="XVCLIENT") as client:
        async with client.find(peer.dest, {"StudyInstanceUID": ""}) as responses:
            async for match in responses:
                assert match.StudyInstanceUID == "1.2.3.4"
                break
        assert responses.outcome is not None
        assert responses.outcome.status == 0xFE00
        assert responses.outcome.cancelled and responses.outcome.ok
        # The client goes on working: a second C-FIND on a new association.
        async with client.find(peer.dest, {"StudyInstanceUID": ""}) as again:
            async for _ in again:
                break
    assert peer.cancelled == ["find", "find"]
    _wait_released(peer, 2)
    assert (peer.released, peer.aborted) == (2, 0)


@pytest.mark.asyncio
async def test_a_dropped_iterator_cancels_too(peer: Peer) -> None:
    async with Client(ae_title="XVCLIENT") as client:
        async for _ in client.find(peer.dest, {"StudyInstanceUID": ""}):
            break  # no async with: closed when garbage collected, on the next loop turn
        with anyio.fail_after(WAIT_FOR_CANCEL):
            while not peer.cancelled:
                await anyio.sleep(0.01)
    assert peer.cancelled == ["find"]


@pytest.mark.asyncio
@pytest.mark.parametrize("verb", ["move", "get"])
async def test_cancelling_a_retrieve_sends_c_cancel(peer: Peer, verb: str, tmp_path: Any) -> None:
    async with Client(ae_title="XVCLIENT") as client:
        with anyio.move_on_after(0.5) as scope:
            if verb == "move":
                await client.move(
                    peer.dest,
                    {"StudyInstanceUID": "1.2.3.4"},
                    out_dir=tmp_path,
                    port=peer.move_port,
                    bind=LOOPBACK,
                )
            else:
                await client.get(peer.dest, {"StudyInstanceUID": "1.2.3.4"}, out_dir=tmp_path)
        assert scope.cancelled_caught
    assert peer.cancelled == [verb]
    assert [p.name for p in tmp_path.iterdir()] == [f"{peer.instance_uid}.dcm"]
    _wait_released(peer, 1)
    assert (peer.released, peer.aborted) == (1, 0)


def test_sync_facade_find_cancels_on_break(peer: Peer) -> None:
    with SyncClient(ae_title="XVCLIENT") as client:
        for match in client.find(peer.dest, {"StudyInstanceUID": ""}):
            assert match.StudyInstanceUID == "1.2.3.4"
            break
    assert peer.cancelled == ["find"]
    assert peer.requests == 1
