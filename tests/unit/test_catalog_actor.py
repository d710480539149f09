"""The catalog actor: runs the writer for the node and answers lookups through it."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from tests.unit.test_catalog_writer import record
from xvactor.actors.catalog import CatalogActor, CatalogInbox, catalog_writer, count, find
from xvactor.dicom.status import OutOfResources
from xvactor.runtime import ActorRef, ChildSpec, Limiters, Supervisor


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_actor_runs_the_writer_and_answers_lookups(
    tmp_path: Path, anyio_backend: str
) -> None:
    limiters = Limiters({"catalog": 4})
    ref: ActorRef[CatalogInbox] = ActorRef("catalog", mailbox_size=64)
    writer = catalog_writer(tmp_path, capacity=64)
    supervisor = Supervisor(
        "test",
        [ChildSpec(ref=ref, factory=lambda: CatalogActor(writer, limiters, timeout=10))],
    )
    records = [record() for _ in range(5)]
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        for r in records:  # as a receiving thread files them
            await anyio.to_thread.run_sync(lambda r=r: writer.index(r, replace=False, timeout=10))
        assert await count(ref, timeout=5) == 5
        found = await find(ref, records[3].sop_instance_uid, timeout=5)
        assert found.found and found.path == records[3].path
        assert not (await find(ref, "1.2.3.999", timeout=5)).found
        await supervisor.stop()
    assert writer.queued == 0
    with pytest.raises(OutOfResources, match="not running"):  # stopped with the actor
        writer.index(records[0], replace=False, timeout=1)
