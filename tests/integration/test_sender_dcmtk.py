"""Senders against DCMTK storescp on 127.0.0.1: order, one association, reuse, idle
release, renegotiation, retries, and a crash (SIGKILL) with the destination down."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from xvactor.actors.sender import SendItem, SendResult, enqueue, list_failed, send_now, status
from xvactor.actors.senders import Senders, sender_limiters
from xvactor.dicom.outcome import LOCAL_TRANSPORT
from xvactor.dicom.prepare import read_file_meta
from xvactor.runtime import Limiters
from xvactor.testing.datasets import make_sized, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP
from xvactor.testing.net import free_port
from xvactor.testing.node import test_config

pytestmark = pytest.mark.dcmtk

ELE, ILE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"


def files(directory: Path, count: int, syntax: str = ELE, **kw: object) -> list[SendItem]:
    directory.mkdir(parents=True, exist_ok=True)
    items = []
    for n in range(count):
        path = write_in_transfer_syntax(make_sized("tiny", **kw), syntax, directory / f"{n}.dcm")
        sop_class, sop_instance, ts = read_file_meta(path)
        items.append(SendItem(path=str(path), sop_class_uid=sop_class,
                              sop_instance_uid=sop_instance, transfer_syntax_uid=ts))  # fmt: skip
    return items


def received_uids(scp: StoreSCP) -> list[str]:
    """SOP Instance UIDs of the stored files, in the order storescp wrote them.

    File timestamps tick coarsely (files written within one tick share them), so ties go
    to the inode number, which ext4 hands out in creation order to one writer.
    """

    def created(path: Path) -> tuple[int, int]:
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_ino

    stored = sorted(scp.received(), key=created)
    return [p.name.split(".", 1)[1] for p in stored]


def store_requests(scp: StoreSCP) -> int:
    return scp.output().count("Received Store Request")


def associations(scp: StoreSCP) -> int:
    # "Acknowledged", not "Received": StoreSCP's readiness probe is a bare TCP connect.
    return scp.output().count("Association Acknowledged")


def senders_for(tmp_path: Path, scp_port: int, **sender: object) -> Senders:
    config = test_config(
        tmp_path / "data",
        destinations=[{"name": "pacs", "ae_title": "STORESCP", "host": "127.0.0.1",
                       "port": scp_port}],
        sender={"idle_release": 0.3, "retry_initial": 0.1, "retry_max": 0.4, **sender},
    )  # fmt: skip
    return Senders(config, Limiters(sender_limiters(config)))


async def wait_queue_empty(senders: Senders, seconds: float = 20.0) -> None:
    with anyio.fail_after(seconds):
        while (await status(senders.by_name("pacs"), timeout=5)).queued:
            await anyio.sleep(0.05)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_order_one_reused_association_idle_release_and_renegotiation(
    tmp_path: Path, anyio_backend: str
) -> None:
    ct = files(tmp_path / "ct", 30)
    implicit = files(tmp_path / "ile", 5, syntax=ILE)
    mr = files(tmp_path / "mr", 3, sop_class_uid=MR)
    with StoreSCP(tmp_path / "out", extra_args=("-v",)) as scp:
        senders = senders_for(tmp_path, scp.port)
        async with anyio.create_task_group() as tg:
            await tg.start(senders.supervisor.run)
            ref = senders.by_name("pacs")
            await enqueue(ref, ct[:10], timeout=10)
            await enqueue(ref, ct[10:] + implicit, timeout=10)
            await wait_queue_empty(senders)
            assert (await status(ref, timeout=5)).associations == 1
            await enqueue(ref, mr, timeout=10)  # a SOP class not negotiated: renegotiate
            await wait_queue_empty(senders)
            with anyio.fail_after(10):  # released once idle
                while (await status(ref, timeout=5)).associated:
                    await anyio.sleep(0.05)
            await senders.supervisor.stop()
        time.sleep(0.2)
        uids = received_uids(scp)
        assert uids == [i.sop_instance_uid for i in ct + implicit + mr]
        assert associations(scp) == 2
        # The implicit VR files needed no renegotiation: ILE was proposed in the fallback
        # context, storescp chose Explicit VR LE there, so they were converted to it.
        implicit_uids = {i.sop_instance_uid for i in implicit}
        for path in scp.received():
            if path.name.split(".", 1)[1] in implicit_uids:
                assert b"1.2.840.10008.1.2.1\x00" in path.read_bytes()[:400]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_send_now_and_retries_against_an_aborting_peer(
    tmp_path: Path, anyio_backend: str
) -> None:
    items = files(tmp_path / "f", 3)
    with StoreSCP(tmp_path / "out", extra_args=("-v", "--abort-during")) as scp:
        senders = senders_for(tmp_path, scp.port, retry_limit=2)
        async with anyio.create_task_group() as tg:
            await tg.start(senders.supervisor.run)
            ref = senders.by_name("pacs")
            send, receive = anyio.create_memory_object_stream[SendResult](10)
            await send_now(ref, items, send)
            async with receive:
                results = [r async for r in receive]
            assert [r.status for r in results] == [LOCAL_TRANSPORT] * 3
            await enqueue(ref, items[:1], timeout=10)
            with anyio.fail_after(20):
                while not await list_failed(ref, timeout=5):
                    await anyio.sleep(0.05)
            (failed,) = await list_failed(ref, timeout=5)
            assert (failed.attempts, failed.last_status, failed.outcome) == (
                2,
                LOCAL_TRANSPORT,
                "retry",
            )
            await senders.supervisor.stop()
        # One association for the batch (it fails the rest), one per queued attempt.
        assert associations(scp) == 3


SERVE = """
import sys, anyio
from xvactor.config import load_config
from xvactor.actors.senders import Senders, sender_limiters
from xvactor.runtime import Limiters
config = load_config(__import__("pathlib").Path(sys.argv[1]))
senders = Senders(config, Limiters(sender_limiters(config)))
async def main():
    async with anyio.create_task_group() as tg:
        await tg.start(senders.supervisor.run)
        print("ready", flush=True)
        await anyio.sleep_forever()
anyio.run(main)
"""

QUEUE = """
import sys, argparse
from xvactor import cli_store
parser = argparse.ArgumentParser(); cli_store.add_parser(parser.add_subparsers())
sys.exit(cli_store.run(parser.parse_args(sys.argv[1:])))
"""


def test_crash_with_the_destination_down_then_every_instance_arrives_once(tmp_path: Path) -> None:
    items = files(tmp_path / "f", 12)
    port = free_port()
    config = tmp_path / "node.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n'
        f'[[destinations]]\nname = "pacs"\nae_title = "STORESCP"\nhost = "127.0.0.1"\nport = {port}\n'  # noqa: E501
        "[sender]\nretry_initial = 0.1\nretry_max = 0.3\nidle_release = 0.5\nretry_limit = 1000\n"
    )
    queued = subprocess.run(
        [sys.executable, "-c", QUEUE, "store", "--to", "pacs", "--queue", "--config",
         str(config), *(i.path for i in items[:6])],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert queued.returncode == 0, queued.stderr
    node = subprocess.Popen([sys.executable, "-c", SERVE, str(config)], stdout=subprocess.PIPE,
                            text=True)  # fmt: skip
    try:
        assert node.stdout is not None and node.stdout.readline().strip() == "ready"
        # Queued while the node runs (rings its doorbell); the destination is down.
        more = subprocess.run(
            [sys.executable, "-c", QUEUE, "store", "--to", "pacs", "--queue", "--config",
             str(config), *(i.path for i in items[6:])],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert more.returncode == 0 and "running node" in more.stdout, more.stdout + more.stderr
        time.sleep(0.5)  # a few failed attempts
    finally:
        node.send_signal(signal.SIGKILL)
        node.wait(timeout=10)
        assert node.stdout is not None
        node.stdout.close()
    with StoreSCP(tmp_path / "out", port=port, extra_args=("-v",)) as scp:
        again = subprocess.Popen([sys.executable, "-c", SERVE, str(config)],
                                 stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while len(received_uids(scp)) < len(items) and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # anything extra would show up now
        finally:
            again.terminate()
            again.wait(timeout=20)
            assert again.stdout is not None
            again.stdout.close()
        assert sorted(received_uids(scp)) == sorted(i.sop_instance_uid for i in items)
        assert store_requests(scp) == len(items)  # each exactly once
