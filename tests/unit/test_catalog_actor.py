"""The catalog actor and its writer: concurrent index requests share one commit."""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest
from pydicom.uid import ExplicitVRLittleEndian

import xvactor.catalog.writer as writer_module
from xvactor.actors.catalog import CatalogActor, CatalogInbox, catalog_writer, count, find, index
from xvactor.catalog.sqlite import write_batch
from xvactor.dicom.records import InstanceRecord, record_from_header
from xvactor.runtime import ActorRef, ChildSpec, Limiters, Supervisor
from xvactor.testing.datasets import make_dataset


def record() -> InstanceRecord:
    ds = make_dataset()
    return record_from_header(
        ds,
        affected_sop_class_uid=ds.SOPClassUID,
        affected_sop_instance_uid=ds.SOPInstanceUID,
        transfer_syntax_uid=ExplicitVRLittleEndian,
        path=f"studies/{ds.SOPInstanceUID}.dcm",
        size=1,
        dataset_offset=0,
        calling_ae_title="A",
        received_at=0.0,
        header=b"",
    )


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_concurrent_index_requests_share_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, anyio_backend: str
) -> None:
    batches: list[int] = []
    first_commit_entered = threading.Event()
    release_first_commit = threading.Event()

    def recording_write_batch(conn, batch, **hooks):  # type: ignore[no-untyped-def]
        batches.append(len(batch))
        if len(batches) == 1:
            first_commit_entered.set()
            release_first_commit.wait(timeout=10)
        return write_batch(conn, batch, **hooks)

    monkeypatch.setattr(writer_module, "write_batch", recording_write_batch)
    limiters = Limiters({"catalog": 32})
    ref: ActorRef[CatalogInbox] = ActorRef("catalog", mailbox_size=64)
    writer = catalog_writer(tmp_path, capacity=64)
    supervisor = Supervisor(
        "test",
        [ChildSpec(ref=ref, factory=lambda: CatalogActor(writer, limiters, timeout=10))],
    )
    records = [record() for _ in range(20)]
    replies: list[bool] = []

    async def one(r: InstanceRecord) -> None:
        reply = await index(ref, r, replace=False, timeout=10)
        replies.append(reply.written)

    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        async with anyio.create_task_group() as senders:
            senders.start_soon(one, records[0])
            await anyio.to_thread.run_sync(first_commit_entered.wait)
            # While the first commit is on disk, 19 more arrive: they form the next batch.
            for r in records[1:]:
                senders.start_soon(one, r)
            with anyio.fail_after(10):
                while writer.queued < 19:  # they reach the writer through worker threads
                    await anyio.sleep(0.005)
            release_first_commit.set()
        assert await count(ref, timeout=5) == 20
        found = await find(ref, records[5].sop_instance_uid, timeout=5)
        assert found.path == records[5].path
        await supervisor.stop()

    assert replies == [True] * 20
    assert batches == [1, 19]
