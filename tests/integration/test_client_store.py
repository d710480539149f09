"""``Client.echo`` and ``Client.store`` against DCMTK's storescp and our own node.

What the peer received is compared byte for byte (the dataset after the File Meta) with
what the test sent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless

from tests.integration.helpers import dataset_bytes, stored_path
from xvactor.client import Client, NoAssociation, StoreProgress
from xvactor.client.sync import SyncClient
from xvactor.config import Destination, NodeConfig
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP
from xvactor.testing.net import LOOPBACK, free_port
from xvactor.testing.node import NodeHandle

pytestmark = pytest.mark.dcmtk


def _received(scp: StoreSCP, uid: str) -> Path:
    matches = [path for path in scp.received() if path.name.endswith(uid)]
    assert len(matches) == 1, scp.received()
    return matches[0]


@pytest.mark.asyncio
async def test_echo_and_store_paths_and_datasets(tmp_path: Path) -> None:
    files = []
    for index, syntax in enumerate((ExplicitVRLittleEndian, RLELossless)):
        ds = make_dataset(seed=index, bits_allocated=8)
        files.append(write_in_transfer_syntax(ds, syntax, tmp_path / f"f{index}.dcm"))
    in_memory = make_dataset(seed=7)
    del in_memory.file_meta  # a dataset without File Meta is sent Explicit VR Little Endian
    events: list[StoreProgress] = []

    async def progress(event: StoreProgress) -> None:
        events.append(event)

    with StoreSCP(tmp_path / "scp") as scp:
        dest = (LOOPBACK, scp.port, scp.ae_title)
        async with Client(ae_title="XVCLIENT") as client:
            assert await client.echo(dest) == 0
            results = await client.store(dest, [*files, in_memory], on_progress=progress)
        for path, result in zip(files, results[:2], strict=True):
            assert result.ok and result.status == 0 and result.path == str(path)
            assert dataset_bytes(_received(scp, result.sop_instance_uid)) == dataset_bytes(path)
        assert results[2].path is None
        assert results[2].sop_instance_uid == in_memory.SOPInstanceUID
        assert getattr(in_memory, "file_meta", None) is None  # the caller's dataset untouched
        assert results[2].ok
    assert [(e.done, e.total) for e in events] == [(1, 3), (2, 3), (3, 3)]
    assert events[1].bytes_done == sum(p.stat().st_size for p in files)
    assert events[2].bytes_done > events[1].bytes_done
    assert [e.result for e in events] == results


@pytest.mark.asyncio
async def test_store_reports_each_instance(tmp_path: Path) -> None:
    good = make_dataset(seed=1)
    good_path = tmp_path / "good.dcm"
    good.save_as(good_path, enforce_file_format=True)
    garbage = tmp_path / "garbage.dcm"
    garbage.write_bytes(b"not DICOM at all")
    with StoreSCP(tmp_path / "scp") as scp:
        async with Client(ae_title="XVCLIENT") as client:
            results = await client.store(
                (LOOPBACK, scp.port, scp.ae_title), [garbage, good_path, tmp_path / "missing"]
            )
        assert len(scp.received()) == 1
    assert [r.outcome for r in results] == ["refused", "success", "refused"]
    assert results[0].status == 0xC000 and "not a readable DICOM" in results[0].error_comment
    assert [r.path for r in results] == [str(garbage), str(good_path), str(tmp_path / "missing")]
    assert results[1].sop_instance_uid == good.SOPInstanceUID


@pytest.mark.asyncio
async def test_store_to_nobody_is_a_transport_failure(tmp_path: Path) -> None:
    path = tmp_path / "f.dcm"
    make_dataset().save_as(path, enforce_file_format=True)
    async with Client(ae_title="XVCLIENT") as client:
        results = await client.store((LOOPBACK, free_port(), "NOBODY"), [path, path])
        with pytest.raises(NoAssociation, match="connection refused"):
            await client.echo((LOOPBACK, free_port(), "NOBODY"))
    assert [r.outcome for r in results] == ["retry", "retry"]
    assert all(r.status == 0xA700 and "refused" in r.error_comment for r in results)


def test_sync_facade_to_a_configured_destination_of_our_node(
    node: NodeHandle, tmp_path: Path
) -> None:
    config = NodeConfig(
        destinations=(
            Destination(name="archive", ae_title=node.ae_title, host=node.host, port=node.port),
        )
    )
    sent: list[Dataset] = [make_dataset(seed=n) for n in range(3)]
    seen: list[StoreProgress] = []
    with SyncClient(ae_title="XVCLIENT", config=config) as client:
        assert client.echo("archive") == 0
        results = client.store("archive", sent, on_progress=seen.append)
        again = client.store("archive", [sent[0]])  # the same sender, association reused
    assert [r.outcome for r in results + again] == ["success"] * 4
    assert len(seen) == 3
    for ds in sent:
        assert stored_path(node, ds).exists()
