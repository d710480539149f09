"""Fixtures for tests that cross the wire: a running node, DCMTK tools, a file corpus."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from xvactor.config import NodeConfig
from xvactor.testing.dcmtk import require_tool
from xvactor.testing.node import NodeHandle, node_in_thread, test_config

SUPERVISOR_LOGGER = "xvactor.runtime"  # the supervisors log crashes here

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


@pytest.fixture(autouse=True)
def _no_actor_crashed(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """A supervisor restarting a crashed actor hides the bug from the test: fail instead.

    Crashes are logged at ERROR, which reaches ``caplog`` at any level setting.
    """
    yield
    crashes = [
        r.getMessage()
        for phase in ("setup", "call")
        for r in caplog.get_records(phase)
        if r.name == SUPERVISOR_LOGGER and "crashed" in r.getMessage()
    ]
    assert not crashes, crashes
