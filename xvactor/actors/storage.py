"""The storage actor: de-identifies received instances, then files them.

A C-STORE received as it is is filed by its association's own thread through
``xvactor.storage.filing`` (no hop through the event loop).  An instance that must be
de-identified first (PS3.15 Annex E) arrives here in memory: the actor de-identifies it,
spools the result, and files it the same way on a worker thread.  The actor also prepares
the data directory and clears this process's spool when it starts.
"""

from __future__ import annotations

import io
import uuid
from typing import ClassVar, assert_never

from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from xvactor.dicom.anonymize import Deidentifier
from xvactor.dicom.part10 import FileMeta, encode_file_meta
from xvactor.dicom.status import CannotUnderstand, OutOfResources
from xvactor.runtime import Actor, Limiters, Message, run_blocking
from xvactor.storage.filing import (
    SECRET_FILE,
    SPOOL_DIR,
    STUDIES_DIR,
    Filed,
    Filing,
    Received,
    StorageSettings,
    load_secret,
    prepare_layout,
)

__all__ = [
    "SECRET_FILE",
    "SPOOL_DIR",
    "STUDIES_DIR",
    "DeidentifyAndStore",
    "InstanceStored",
    "StorageActor",
    "StorageInbox",
    "StorageSettings",
]


class DeidentifyAndStore(Message, frozen=True, tag=True, kw_only=True):
    """Command: de-identify a dataset received in memory, then store it (PS3.15 E.1).

    The dataset never touches the disk before de-identification; the stored instance has
    new UIDs, so the reply's ``sop_instance_uid`` differs from the affected one.
    """

    dataset: bytes
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str


class InstanceStored(Message, frozen=True, tag=True, kw_only=True):
    """Reply: the instance is durable and catalogued (or was already, for a duplicate)."""

    sop_instance_uid: str
    path: str
    duplicate: bool = False


StorageInbox = DeidentifyAndStore


class StorageActor(Actor[StorageInbox]):
    """Stores instances; several at once, so requests do not queue behind one fsync."""

    concurrency: ClassVar[int] = 32

    def __init__(self, filing: Filing, limiters: Limiters) -> None:
        self._filing = filing
        self._settings = filing.settings
        self._limiters = limiters
        self._deidentifier: Deidentifier | None = None

    async def started(self) -> None:
        """Create the layout and clear the spool of unacknowledged leftovers."""
        settings = self._settings
        await run_blocking(
            self._limiters, "disk", prepare_layout, settings.data_dir, settings.spool_dir
        )
        if settings.deidentification:
            secret = await run_blocking(self._limiters, "disk", load_secret, settings.data_dir)
            self._deidentifier = Deidentifier(secret)

    async def receive(self, message: StorageInbox) -> object:
        """Dispatch one message."""
        match message:
            case DeidentifyAndStore():
                filed = await run_blocking(
                    self._limiters, "disk", self._deidentify_and_file, message
                )
            case _:
                assert_never(message)
        return InstanceStored(
            sop_instance_uid=filed.sop_instance_uid, path=filed.path, duplicate=filed.duplicate
        )

    def _deidentify_and_file(self, message: DeidentifyAndStore) -> Filed:
        """Blocking: de-identify, spool the result, file it, drop the spool name."""
        received = self._deidentify(message)
        try:
            return self._filing.store(received)
        finally:
            received.source.unlink(missing_ok=True)

    def _deidentify(self, message: DeidentifyAndStore) -> Received:
        """Blocking: de-identify in memory, then write the result to the spool."""
        if self._deidentifier is None:
            raise OutOfResources("De-identification is not configured on this node")
        syntax = UID(message.transfer_syntax_uid)
        try:
            ds = read_dataset(
                io.BytesIO(message.dataset), syntax.is_implicit_VR, syntax.is_little_endian
            )
            ds.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian)
            self._deidentifier.apply(ds)
            encoded = DicomBytesIO()
            encoded.is_implicit_VR = syntax.is_implicit_VR
            encoded.is_little_endian = syntax.is_little_endian
            write_dataset(encoded, ds)
        except Exception as exc:
            raise CannotUnderstand(f"Cannot de-identify dataset: {exc}") from exc
        sop_instance_uid = str(ds.SOPInstanceUID)
        meta = encode_file_meta(
            FileMeta(
                sop_class_uid=message.affected_sop_class_uid,
                sop_instance_uid=sop_instance_uid,
                transfer_syntax_uid=message.transfer_syntax_uid,
                implementation_class_uid=self._settings.implementation_class_uid,
                implementation_version_name=self._settings.implementation_version_name,
                source_ae_title=message.calling_ae_title,
            )
        )
        path = self._settings.spool_dir / f"{uuid.uuid4().hex}.dcm"
        with path.open("xb") as spool:
            spool.write(meta)
            spool.write(encoded.getvalue())
        return Received(
            source=path,
            affected_sop_class_uid=message.affected_sop_class_uid,
            affected_sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=message.transfer_syntax_uid,
            calling_ae_title=message.calling_ae_title,
        )
