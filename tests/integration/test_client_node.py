"""The client API against our own Data Manager: store, find, move and get round trip."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from xvactor.client.api import Client
from xvactor.testing.datasets import make_dataset
from xvactor.testing.net import free_port
from xvactor.testing.node import NodeHandle


@pytest.mark.asyncio
async def test_store_find_move_get_against_our_node(
    make_node: Callable[..., NodeHandle], tmp_path: Path
) -> None:
    move_port = free_port()
    node = make_node(
        clients=[{"name": "all", "allow": ["echo", "store", "query", "retrieve"]}],
        destinations=[{"name": "me", "ae_title": "CLIENT", "host": "127.0.0.1", "port": move_port}],
    )
    dest = (node.host, node.port, node.ae_title)
    study = generate_uid()
    datasets = [
        make_dataset(study_uid=study, patient_name="Müller^Jürgen", rows=8, columns=8)
        for _ in range(3)
    ]
    uids = {str(ds.SOPInstanceUID) for ds in datasets}
    async with Client(ae_title="CLIENT") as client:
        assert await client.echo(dest) == 0
        stored = await client.store(dest, datasets)
        assert all(result.ok for result in stored), stored
        studies = [
            match
            async for match in client.find(dest, {"PatientName": "Müller*", "StudyInstanceUID": ""})
        ]
        assert [str(m.StudyInstanceUID) for m in studies] == [study]
        assert str(studies[0].PatientName) == "Müller^Jürgen"
        moved = await client.move(
            dest, {"StudyInstanceUID": study}, level="STUDY", port=move_port,
            bind="127.0.0.1", out_dir=tmp_path / "moved",
        )  # fmt: skip
        assert moved.ok and moved.completed == 3, moved
        got = await client.get(dest, {"StudyInstanceUID": study}, level="STUDY",
                               out_dir=tmp_path / "got")  # fmt: skip
        assert got.ok and got.completed == 3, got
    for directory in ("moved", "got"):
        received = {str(dcmread(p).SOPInstanceUID) for p in (tmp_path / directory).iterdir()}
        assert received == uids
