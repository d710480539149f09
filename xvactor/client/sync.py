"""A synchronous facade over :class:`xvactor.client.Client` for applications not on asyncio.

The async client runs on an event loop in a background thread (an anyio blocking portal);
each verb here blocks until its coroutine finishes there.

>>> with SyncClient(ae_title="MODALITY") as client:  # doctest: +SKIP
...     client.echo(("pacs.example", 104, "PACS"))
...     for study in client.find("pacs", {"PatientID": "123", "StudyDate": ""}):
...         print(study.StudyDate)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from types import TracebackType
from typing import Self

import anyio.to_thread
from anyio.from_thread import BlockingPortal, start_blocking_portal
from pydicom.dataset import Dataset

from xvactor.client.api import Client, Model
from xvactor.client.destinations import DestinationLike
from xvactor.client.results import GetResult, MoveResult, StoreProgress, StoreResult
from xvactor.client.sinks import InstanceCallback
from xvactor.client.store import StoreInput
from xvactor.config import NodeConfig

__all__ = ["SyncClient"]


def _on_loop(callback: Callable[[Dataset], None] | None) -> InstanceCallback | None:
    """Run a blocking instance callback on a worker thread, off the portal's loop."""
    if callback is None:
        return None

    async def on_instance(ds: Dataset) -> None:
        await anyio.to_thread.run_sync(callback, ds)

    return on_instance


class SyncClient:
    """The verbs of :class:`Client`, blocking: ``with SyncClient(...) as client``.

    Parameters are those of :class:`Client`.
    """

    def __init__(
        self,
        ae_title: str | None = None,
        config: NodeConfig | None = None,
        *,
        find_buffer: int = 64,
        max_associations: int = 8,
    ) -> None:
        self._client = Client(
            ae_title, config, find_buffer=find_buffer, max_associations=max_associations
        )
        self._stack = ExitStack()
        self._portal: BlockingPortal | None = None

    @property
    def client(self) -> Client:
        """The async client underneath."""
        return self._client

    def __enter__(self) -> Self:
        with ExitStack() as stack:
            portal = stack.enter_context(start_blocking_portal())
            manager: AbstractContextManager[Client] = portal.wrap_async_context_manager(
                self._client
            )
            stack.enter_context(manager)
            self._portal = portal
            self._stack = stack.pop_all()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._portal = None
        self._stack.__exit__(exc_type, exc, tb)

    def _running(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError("use the client inside 'with SyncClient(...)'")
        return self._portal

    def echo(self, dest: DestinationLike) -> int:
        """See :meth:`Client.echo`."""
        return self._running().call(self._client.echo, dest)

    def store(
        self,
        dest: DestinationLike,
        items: Sequence[StoreInput],
        *,
        on_progress: Callable[[StoreProgress], None] | None = None,
    ) -> list[StoreResult]:
        """See :meth:`Client.store`; ``on_progress`` runs on a worker thread."""
        portal = self._running()

        async def progress(event: StoreProgress) -> None:
            if on_progress is not None:
                await anyio.to_thread.run_sync(on_progress, event)

        async def run() -> list[StoreResult]:
            return await self._client.store(
                dest, items, on_progress=progress if on_progress is not None else None
            )

        return portal.call(run)

    def find(
        self,
        dest: DestinationLike,
        keys: Dataset | Mapping[str, str],
        *,
        model: Model = "study",
        level: str | None = None,
    ) -> Iterator[Dataset]:
        """See :meth:`Client.find`; leaving the loop early sends a C-CANCEL."""
        portal = self._running()
        responses = portal.call(lambda: self._client.find(dest, keys, model=model, level=level))
        try:
            while True:
                try:
                    match = portal.call(responses.__anext__)
                except StopAsyncIteration:
                    return
                yield match
        finally:
            portal.call(responses.aclose)

    def find_all(
        self,
        dest: DestinationLike,
        keys: Dataset | Mapping[str, str],
        *,
        model: Model = "study",
        level: str | None = None,
    ) -> list[Dataset]:
        """Every match of a C-FIND, as a list."""
        return list(self.find(dest, keys, model=model, level=level))

    def move(
        self,
        dest: DestinationLike,
        keys: Dataset | Mapping[str, str],
        *,
        model: Model = "study",
        level: str | None = None,
        out_dir: str | Path | None = None,
        on_instance: Callable[[Dataset], None] | None = None,
        port: int | None = None,
        bind: str = "0.0.0.0",  # noqa: S104 - as Client.move
        move_destination: str | None = None,
    ) -> MoveResult:
        """See :meth:`Client.move`; ``on_instance`` runs on a worker thread."""

        async def run() -> MoveResult:
            return await self._client.move(
                dest,
                keys,
                model=model,
                level=level,
                out_dir=out_dir,
                on_instance=_on_loop(on_instance),
                port=port,
                bind=bind,
                move_destination=move_destination,
            )

        return self._running().call(run)

    def get(
        self,
        dest: DestinationLike,
        keys: Dataset | Mapping[str, str],
        *,
        model: Model = "study",
        level: str | None = None,
        out_dir: str | Path | None = None,
        on_instance: Callable[[Dataset], None] | None = None,
        sop_classes: list[str] | None = None,
    ) -> GetResult:
        """See :meth:`Client.get`; ``on_instance`` runs on a worker thread."""

        async def run() -> GetResult:
            return await self._client.get(
                dest,
                keys,
                model=model,
                level=level,
                out_dir=out_dir,
                on_instance=_on_loop(on_instance),
                sop_classes=sop_classes,
            )

        return self._running().call(run)
