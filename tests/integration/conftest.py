"""Fixtures for tests that cross the wire: a running node, DCMTK tools, a file corpus."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from xvactor.config import NodeConfig
from xvactor.testing.dcmtk import require_tool
from xvactor.testing.node import NodeHandle, node_in_thread, test_config

TOOLS = (
    "echoscu",
    "storescu",
    "storescp",
    "findscu",
    "movescu",
    "getscu",
    "dcmqrscp",
    "wlmscpfs",
    "dcmdump",
    "dcmconv",
    "dcmcrle",
    "dcmcjpeg",
)


@pytest.fixture(scope="session", autouse=True)
def _dcmtk_present() -> None:
    """A missing DCMTK fails the run; it is never skipped."""
    for tool in TOOLS:
        require_tool(tool)


@pytest.fixture
def make_node(tmp_path: Path) -> Iterator[Callable[..., NodeHandle]]:
    """Start nodes with changed settings; all are stopped at the end of the test."""
    managers: list[AbstractContextManager[NodeHandle]] = []

    def start(**changes: object) -> NodeHandle:
        config: NodeConfig = test_config(tmp_path / f"node{len(managers)}", **changes)
        manager = node_in_thread(config)
        handle = manager.__enter__()
        managers.append(manager)
        return handle

    yield start
    for manager in reversed(managers):
        manager.__exit__(None, None, None)


@pytest.fixture
def node(make_node: Callable[..., NodeHandle]) -> NodeHandle:
    """A node with the default settings on a free port."""
    return make_node()
