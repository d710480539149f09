"""``Client.store``: paths and datasets to a destination through the node's sender actors.

The client runs its own :class:`~xvactor.actors.senders.Senders` (in-memory queues, no
doorbell), so a store from the API goes over exactly the code a node forwards with: one
association per destination, reused, TCP_NODELAY, the file's bytes sent without decoding,
each attempt classified by :func:`xvactor.dicom.outcome.classify`.  A batch is handed over
with :func:`~xvactor.actors.sender.send_now`; results come back in order on a stream and
become :class:`~xvactor.client.results.StoreResult` values and progress events.

Datasets are first written to a temporary Part 10 file (removed afterwards); files whose
File Meta Information cannot be read fail at once, never sent (``refused``, 0xC000).
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from xvactor.actors.sender import SenderInbox, SendItem, SendResult, send_now
from xvactor.client.results import StoreProgress, StoreResult
from xvactor.dicom.outcome import LOCAL_TRANSPORT, LOCAL_UNREADABLE, Verdict
from xvactor.dicom.prepare import UnreadableFile, read_file_meta
from xvactor.runtime import ActorRef

__all__ = ["StoreInput", "StoreProgressHandler", "prepare_items", "send_batch"]

#: What ``store`` takes per instance: a Part 10 file's path, or a dataset.
StoreInput = str | os.PathLike[str] | Dataset
#: Awaited with each progress event, in order.
StoreProgressHandler = Callable[[StoreProgress], Awaitable[None]]


@dataclass(frozen=True)
class Prepared:
    """One input made ready: a :class:`SendItem`, or the reason it cannot be sent."""

    label: str | None
    item: SendItem | None
    size: int
    refusal: str = ""


def _write_dataset(ds: Dataset, directory: Path, index: int) -> Path:
    """Write ``ds`` as a Part 10 file (Explicit VR Little Endian if it has no File Meta)."""
    target = directory / f"{index:06d}.dcm"
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        ds = copy.copy(ds)  # leave the caller's dataset as it is
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    pydicom.dcmwrite(target, ds, enforce_file_format=True)
    return target


def prepare_items(inputs: Sequence[StoreInput], scratch: Path) -> list[Prepared]:
    """Read File Meta of paths, write datasets under ``scratch`` (blocking).

    Parameters
    ----------
    inputs : sequence of path or Dataset
        What to send, in order.
    scratch : Path
        An existing directory for the datasets' temporary files.
    """
    prepared: list[Prepared] = []
    for index, each in enumerate(inputs):
        label = None if isinstance(each, Dataset) else os.fspath(each)
        try:
            if isinstance(each, Dataset):
                path = _write_dataset(each, scratch, index)
            else:
                path = Path(each).resolve()
            sop_class, sop_instance, syntax = read_file_meta(path)
            size = path.stat().st_size
        except (UnreadableFile, OSError, ValueError, AttributeError) as exc:
            prepared.append(Prepared(label, None, 0, str(exc).splitlines()[0][:64]))
            continue
        item = SendItem(
            path=str(path),
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            transfer_syntax_uid=syntax,
        )
        prepared.append(Prepared(label, item, size))
    return prepared


def _refused(entry: Prepared) -> StoreResult:
    return StoreResult(
        path=entry.label,
        sop_instance_uid="",
        status=LOCAL_UNREADABLE,
        error_comment=entry.refusal,
        outcome=Verdict.REFUSED.value,
    )


async def send_batch(
    ref: ActorRef[SenderInbox],
    inputs: Sequence[StoreInput],
    *,
    on_progress: StoreProgressHandler | None = None,
) -> list[StoreResult]:
    """Send ``inputs`` in order through the sender ``ref``; one result per input.

    Cancelling the caller closes the result stream: the sender stops before its next
    item (the instance on the wire is finished).
    """
    scratch = Path(await anyio.to_thread.run_sync(tempfile.mkdtemp, "", "xvactor-store-"))
    try:
        prepared = await anyio.to_thread.run_sync(prepare_items, inputs, scratch)
        sendable = [entry for entry in prepared if entry.item is not None]
        delivered: list[SendResult] = []
        progress = _Progress(len(prepared), on_progress)
        for entry in prepared:
            if entry.item is None:
                await progress(entry, _refused(entry))
        if sendable:
            send, receive = anyio.create_memory_object_stream[SendResult](16)
            items = [entry.item for entry in sendable if entry.item is not None]
            async with receive:
                await send_now(ref, items, send)
                async for result in receive:
                    delivered.append(result)
                    entry = sendable[len(delivered) - 1]
                    await progress(entry, _result(entry, result))
        return _merge(prepared, sendable, delivered)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(shutil.rmtree, scratch, True)


class _Progress:
    """Counts results and awaits the handler with each event."""

    def __init__(self, total: int, handler: StoreProgressHandler | None) -> None:
        self._total = total
        self._handler = handler
        self._done = 0
        self._bytes = 0

    async def __call__(self, entry: Prepared, result: StoreResult) -> None:
        self._done += 1
        self._bytes += entry.size
        if self._handler is not None:
            await self._handler(StoreProgress(self._done, self._total, self._bytes, result))


def _result(entry: Prepared, result: SendResult) -> StoreResult:
    return StoreResult(
        path=entry.label,
        sop_instance_uid=result.sop_instance_uid,
        status=result.status,
        error_comment=result.error_comment,
        outcome=result.outcome,
    )


def _merge(
    prepared: list[Prepared], sendable: list[Prepared], delivered: list[SendResult]
) -> list[StoreResult]:
    """Results in input order; items the sender never answered count as transport failures."""
    answers = {id(entry): result for entry, result in zip(sendable, delivered, strict=False)}
    results: list[StoreResult] = []
    for entry in prepared:
        if entry.item is None:
            results.append(_refused(entry))
            continue
        answer = answers.get(id(entry))
        if answer is None:
            answer = SendResult(
                sop_instance_uid=entry.item.sop_instance_uid,
                status=LOCAL_TRANSPORT,
                error_comment="Sender stopped before this instance",
                outcome=Verdict.RETRY.value,
            )
        results.append(_result(entry, answer))
    return results
