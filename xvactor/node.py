"""The Data Manager node: builds the supervision tree from a configuration and runs it.

Trees (``rest_for_one``: a crash restarts the crashed child and everything started after
it, because later children hold refs into earlier ones).  Receiving in the node's own
process (``receive_processes = 0``), and in each receive worker process::

    root
     ├─ catalog    (runs the catalog writer thread: group commit of files and rows)
     ├─ storage    (de-identifies instances, then files them)
     ├─ resolver   (C-FIND matches, C-MOVE/C-GET selections)
     ├─ senders    (one_for_one: one sender per destination, durable outbox)
     └─ listener   (pynetdicom servers; starts last, stops first)

A C-STORE is filed on its association's thread (``xvactor.storage.filing``) through the
catalog writer, which the catalog actor starts before, and stops after, the listener.

The node's process when receiving in N worker processes (``xvactor.worker``)::

    root
     ├─ catalog
     ├─ senders    (delivers the durable outbox; workers' senders keep memory queues)
     └─ receivers  (binds the listen addresses, runs and watches the workers)
"""

from __future__ import annotations

import functools
import logging
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec

from xvactor.actors.catalog import CATALOG_FILE, CatalogActor, CatalogInbox, catalog_writer
from xvactor.actors.listener import ListenerActor, ListenerInbox, addresses
from xvactor.actors.mover import DestinationRouter
from xvactor.actors.receivers import ReceiversActor, ReceiversInbox
from xvactor.actors.resolver import ResolverActor, ResolverInbox
from xvactor.actors.senders import Senders, sender_limiters
from xvactor.actors.storage import SPOOL_DIR, StorageActor, StorageInbox, StorageSettings
from xvactor.config import DuplicatePolicy, NodeConfig, QueueKind
from xvactor.dicom.server import Channel
from xvactor.runtime import (
    ActorRef,
    ChildSpec,
    Limiters,
    Strategy,
    Supervisor,
    SupervisorSpec,
)
from xvactor.storage import orphans
from xvactor.storage.filing import STUDIES_DIR, Filing

__all__ = [
    "RECEIVE_SWITCH_INTERVAL",
    "Node",
    "WorkerRole",
    "build_node",
    "run_node",
    "running_node",
    "tune_receiving_process",
]

LOGGER = logging.getLogger("xvactor.node")

RECEIVE_SWITCH_INTERVAL = 0.001
"""Seconds a Python thread may hold the GIL while another asks for it, in a receiving
process (CPython's default is 0.005).  An association's thread back from the disk or the
socket otherwise waits up to 5 ms for another association's thread running Python: with
four CT associations on two workers, 1 ms received 6-8% more instances per second (medians
of four alternating runs each), with one association no difference beyond noise."""


def tune_receiving_process() -> None:
    """Settings for a process that runs a node (``xvactor serve``, a receive worker).

    Not applied by the library on its own: an application embedding xvactor keeps its own.
    """
    sys.setswitchinterval(RECEIVE_SWITCH_INTERVAL)


SENDERS_SHUTDOWN = 60.0
"""Seconds the senders get to finish the C-STORE in flight and release their associations."""


@dataclass(frozen=True)
class WorkerRole:
    """This process is receive worker ``index``, serving the connections the node's
    process hands it on inherited ``channels`` (one per listener)."""

    index: int
    channels: tuple[Channel, ...]


@dataclass(frozen=True)
class Node:
    """Handles on a running node (for embedders and tests)."""

    config: NodeConfig
    supervisor: Supervisor
    catalog: ActorRef[CatalogInbox]
    front: ActorRef[Any]
    """The listener, or the receivers actor when workers receive."""

    async def addresses(self) -> list[tuple[str, int]]:
        """Bound listen addresses (useful when a port 0 was configured)."""
        return await addresses(self.front)


def build_node(config: NodeConfig, *, role: WorkerRole | None = None) -> Node:
    """Wire the actors of a node; nothing runs until the supervisor does."""
    if role is None and config.receive_processes > 0:
        return _build_receiving_in_workers(config)
    data_dir = config.data_path.resolve()
    spool_dir = data_dir / SPOOL_DIR / (f"w{role.index}" if role is not None else "main")
    limiters = Limiters(
        {
            "catalog": 16,
            "disk": max(4, config.max_associations),
            "listener": 2,
            "query": 4,
            **sender_limiters(config),
        }
    )
    catalog: ActorRef[CatalogInbox] = ActorRef("catalog", mailbox_size=config.mailboxes.catalog)
    storage: ActorRef[StorageInbox] = ActorRef("storage", mailbox_size=config.mailboxes.storage)
    resolver: ActorRef[ResolverInbox] = ActorRef("resolver", mailbox_size=64)
    listener: ActorRef[ListenerInbox] = ActorRef("listener", mailbox_size=16)
    # A receive worker sends only C-MOVE sub-operations (SendNow); the durable outbox is
    # delivered by the node's main process alone, so no row is sent twice.
    senders = Senders(_memory_queues(config) if role is not None else config, limiters)
    router = DestinationRouter(config, senders.by_name)
    settings = StorageSettings(
        data_dir=data_dir,
        spool_dir=spool_dir,
        implementation_class_uid=config.implementation_class_uid,
        implementation_version_name=config.implementation_version_name,
        duplicate_policy=config.duplicate_policy,
        min_free_bytes=config.min_free_disk_mb * 1024 * 1024,
        catalog_timeout=config.timeouts.store,
        deidentification=config.anonymize or any(c.anonymize for c in config.clients),
        inline_max_bytes=config.inline_max_kb * 1024,
    )
    writer = catalog_writer(
        data_dir,
        capacity=config.mailboxes.catalog,
        overwrites=config.duplicate_policy is DuplicatePolicy.OVERWRITE,
    )
    filing = Filing(settings, writer)
    root = Supervisor(
        "root",
        [
            ChildSpec(
                ref=catalog,
                factory=lambda: CatalogActor(writer, limiters, timeout=config.timeouts.store),
            ),
            ChildSpec(ref=storage, factory=lambda: StorageActor(filing, limiters)),
            ChildSpec(
                ref=resolver, factory=lambda: ResolverActor(data_dir, config.query, limiters)
            ),
            SupervisorSpec(senders.supervisor, shutdown=SENDERS_SHUTDOWN),
            ChildSpec(
                ref=listener,
                factory=lambda: ListenerActor(
                    config,
                    storage,
                    limiters,
                    filing=filing,
                    spool_dir=spool_dir,
                    channels=role.channels if role is not None else (),
                    resolver=resolver,
                    router=router,
                ),
                shutdown=config.timeouts.shutdown + 5.0,
            ),
        ],
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=3,
        max_seconds=10.0,
    )
    return Node(config, root, catalog, listener)


def _memory_queues(config: NodeConfig) -> NodeConfig:
    sender = msgspec.structs.replace(config.sender, queue=QueueKind.MEMORY)
    return msgspec.structs.replace(config, sender=sender)


def _build_receiving_in_workers(config: NodeConfig) -> Node:
    data_dir = config.data_path.resolve()
    limiters = Limiters({"catalog": 16, "listener": 2, **sender_limiters(config)})
    senders = Senders(config, limiters)
    catalog: ActorRef[CatalogInbox] = ActorRef("catalog", mailbox_size=config.mailboxes.catalog)
    writer = catalog_writer(
        data_dir,
        capacity=config.mailboxes.catalog,
        overwrites=config.duplicate_policy is DuplicatePolicy.OVERWRITE,
    )
    receivers: ActorRef[ReceiversInbox] = ActorRef("receivers", mailbox_size=16)
    root = Supervisor(
        "root",
        [
            ChildSpec(
                ref=catalog,
                factory=lambda: CatalogActor(writer, limiters, timeout=config.timeouts.store),
            ),
            SupervisorSpec(senders.supervisor, shutdown=SENDERS_SHUTDOWN),
            ChildSpec(
                ref=receivers,
                factory=lambda: ReceiversActor(config, receivers, limiters),
                shutdown=config.timeouts.shutdown + 15.0,
            ),
        ],
        strategy=Strategy.REST_FOR_ONE,
        max_restarts=3,
        max_seconds=30.0,
    )
    return Node(config, root, catalog, receivers)


@asynccontextmanager
async def running_node(
    config: NodeConfig, *, role: WorkerRole | None = None
) -> AsyncIterator[Node]:
    """Run a node for the duration of the block (ready on entry, stopped in order on exit).

    The node's own process (not a receive worker) also sweeps the files an interrupted
    run left without a catalog row, in the background (``xvactor.storage.orphans``).
    """
    started_ns = time.time_ns()
    config.data_path.mkdir(parents=True, exist_ok=True)
    node = build_node(config, role=role)
    sweeping = anyio.CancelScope()
    async with anyio.create_task_group() as tg:
        await tg.start(node.supervisor.run)
        if role is None:
            tg.start_soon(_sweep_orphans, config, started_ns, sweeping)
        try:
            yield node
        finally:
            sweeping.cancel()
            with anyio.CancelScope(shield=True):
                await node.supervisor.stop()


async def _sweep_orphans(config: NodeConfig, started_ns: int, scope: anyio.CancelScope) -> None:
    """Set aside the instance files left before ``started_ns`` that no row refers to."""
    data = config.data_path.resolve()
    sweep = functools.partial(
        orphans.sweep, data, data / CATALOG_FILE, STUDIES_DIR, started_ns=started_ns
    )
    with scope:
        try:
            await anyio.to_thread.run_sync(sweep, abandon_on_cancel=True)
        except (OSError, sqlite3.Error) as exc:
            LOGGER.warning("could not look for files without a catalog row: %s", exc)


async def run_node(config: NodeConfig) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully (drain, flush, exit)."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with running_node(config) as node:
            bound = ", ".join(f"{host}:{port}" for host, port in await node.addresses())
            LOGGER.info("%s listening on %s, data in %s", config.ae_title, bound, config.data_path)
            async for signum in signals:
                LOGGER.info("%s received, stopping", signal.Signals(signum).name)
                break
    LOGGER.info("stopped")
