"""Run a node in a background event loop, for synchronous tests and scripts.

The node runs inside an anyio blocking portal; ``with node_in_thread(config) as handle``
returns once every listener is bound and stops the node in order on exit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec
from anyio.from_thread import BlockingPortal, start_blocking_portal

from xvactor.actors.catalog import CATALOG_FILE
from xvactor.catalog.sqlite import open_catalog
from xvactor.config import Listener, NodeConfig
from xvactor.node import Node, running_node
from xvactor.storage.pending import materialize_all

__all__ = ["NodeHandle", "node_in_thread", "test_config", "write_pending"]


@dataclass(frozen=True)
class NodeHandle:
    """A running node seen from a synchronous caller."""

    node: Node
    portal: BlockingPortal
    host: str
    port: int

    @property
    def ae_title(self) -> str:
        """The node's AE title."""
        return self.node.config.ae_title

    @property
    def data_dir(self) -> Path:
        """The node's data directory."""
        return self.node.config.data_path

    def write_pending(self) -> int:
        """Write the small instances the catalog still holds at their names, now."""
        return write_pending(self.data_dir)

    def catalog_rows(self, sql: str, *params: object) -> list[tuple[object, ...]]:
        """Read the catalog directly (a separate read-only connection)."""
        uri = f"file:{self.data_dir / CATALOG_FILE}?mode=ro"
        with sqlite3.connect(uri, uri=True) as conn:
            return list(conn.execute(sql, params).fetchall())


def write_pending(data_dir: Path) -> int:
    """Write every file the catalog under ``data_dir`` still holds at its name (as a
    reader of stored files does first, ``xvactor.storage.pending``); returns how many."""
    conn = open_catalog(data_dir / CATALOG_FILE)
    try:
        return materialize_all(conn, data_dir.resolve())
    finally:
        conn.close()


def test_config(data_dir: Path, port: int = 0, **changes: object) -> NodeConfig:
    """A node on 127.0.0.1 (port 0: any free port) with its data in ``data_dir``."""
    base = NodeConfig(
        data_dir=str(data_dir),
        listeners=(Listener(host="127.0.0.1", port=port),),
        min_free_disk_mb=0,
        receive_processes=0,
    )
    # Through msgspec, so that changes are validated and converted ("reject" -> the enum).
    return msgspec.convert({**msgspec.to_builtins(base), **changes}, NodeConfig)


@contextmanager
def node_in_thread(config: NodeConfig) -> Iterator[NodeHandle]:
    """Run ``config``'s node until the block ends."""
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(running_node(config)) as node,
    ):
        host, port = portal.call(node.addresses)[0]
        yield NodeHandle(node=node, portal=portal, host=host, port=port)


test_config.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
