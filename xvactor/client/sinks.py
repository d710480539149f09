"""Where instances received during a C-MOVE or C-GET go: a directory, a callback, or both.

:class:`InstanceSink` runs on the association threads of pynetdicom (our Storage SCP's, or
the C-GET association's).  It writes each instance as a PS3.10 file under ``out_dir``
(``<SOP Instance UID>.dcm``, written to a hidden partial file and renamed, so a reader
never sees half a file) and/or decodes it and awaits the embedder's coroutine on the event
loop through a :class:`~xvactor.runtime.LoopBridge`.  Waiting there is the backpressure: a
slow callback slows the peer down through TCP.  An exception becomes the C-STORE status
the peer sees (:func:`xvactor.dicom.status.status_for`).
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from xvactor.client.results import ReceivedFile
from xvactor.dicom.qr_scu import ReceivedInstance
from xvactor.dicom.status import CannotUnderstand
from xvactor.runtime import LoopBridge

__all__ = ["InstanceCallback", "InstanceSink"]

#: The embedder's callback: takes the received instance, decoded, with its File Meta.
InstanceCallback = Callable[[Dataset], Awaitable[None]]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


class InstanceSink:
    """Takes received instances on foreign threads; remembers what it took.

    Parameters
    ----------
    out_dir : path, optional
        Directory to write PS3.10 files to (created if missing).
    on_instance : InstanceCallback, optional
        Coroutine function awaited on the event loop with each instance.
    bridge : LoopBridge, optional
        The way into the event loop; required with ``on_instance``.
    """

    def __init__(
        self,
        out_dir: Path | None,
        on_instance: InstanceCallback | None,
        bridge: LoopBridge | None,
    ) -> None:
        if out_dir is None and on_instance is None:
            raise ValueError("give out_dir or on_instance for the received instances")
        if on_instance is not None and bridge is None:
            raise ValueError("on_instance needs a LoopBridge")
        self.out_dir = out_dir
        self._on_instance = on_instance
        self._bridge = bridge
        self._lock = threading.Lock()
        self._received: list[ReceivedFile] = []

    def prepare(self) -> None:
        """Create ``out_dir`` (blocking; call before the retrieve starts)."""
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    @property
    def received(self) -> tuple[ReceivedFile, ...]:
        """What was received so far, in order of arrival."""
        with self._lock:
            return tuple(self._received)

    def __call__(self, instance: ReceivedInstance) -> None:
        """Take one instance (on an association thread)."""
        if not _UID.match(instance.sop_instance_uid) or len(instance.sop_instance_uid) > 64:
            raise CannotUnderstand("Invalid Affected SOP Instance UID")
        path = self._write(instance) if self.out_dir is not None else None
        if self._on_instance is not None and self._bridge is not None:
            ds = pydicom.dcmread(io.BytesIO(instance.part10))
            self._bridge.call(self._on_instance, ds)
        with self._lock:
            self._received.append(
                ReceivedFile(
                    sop_class_uid=instance.sop_class_uid,
                    sop_instance_uid=instance.sop_instance_uid,
                    transfer_syntax_uid=instance.transfer_syntax_uid,
                    path=path,
                    size=len(instance.part10),
                )
            )

    def _write(self, instance: ReceivedInstance) -> Path:
        assert self.out_dir is not None
        final = self.out_dir / f"{instance.sop_instance_uid}.dcm"
        partial = self.out_dir / f".{instance.sop_instance_uid}.{threading.get_ident()}.partial"
        try:
            with partial.open("wb") as fp:
                fp.write(instance.part10)
            os.replace(partial, final)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return final
