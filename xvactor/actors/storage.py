"""The storage actor: makes a received instance durable, files it, and has it catalogued.

The order is what makes "never acknowledge an instance we could lose" hold (PS3.4 B.2.3:
a Success status means the SCP has stored the instance):

1. the receive path has written the dataset bytes, unchanged and as they arrived, behind
   our File Meta into a spool file in the data directory (``xvactor.dicom.spool``); fsync it;
2. parse its header (up to the bulk data) and check the UIDs the node files it under;
3. link it into ``studies/<Study>/<Series>/<SOP>.dcm`` (never clobbering a stored copy
   unless the policy is ``overwrite``) and fsync the directory;
4. ask the catalog to index it, which answers only after the commit that holds the row.

Only then is the reply sent.  Any failure on the way removes what this request created,
so a failed C-STORE leaves neither a file nor a row behind.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, assert_never

import anyio
import msgspec
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import UID

from xvactor.actors.catalog import CatalogInbox, index
from xvactor.config import DuplicatePolicy
from xvactor.dicom.anonymize import Deidentifier
from xvactor.dicom.part10 import (
    FileMeta,
    dataset_offset,
    encode_file_meta,
    fsync_directory,
    read_header,
)
from xvactor.dicom.records import InstanceRecord, record_from_header
from xvactor.dicom.status import CannotUnderstand, DuplicateInstance, OutOfResources
from xvactor.runtime import Actor, ActorRef, AskTimeout, Limiters, Message, run_blocking

__all__ = [
    "SECRET_FILE",
    "SPOOL_DIR",
    "STUDIES_DIR",
    "DeidentifyAndStore",
    "InstanceStored",
    "StorageActor",
    "StorageInbox",
    "StorageSettings",
    "StoreInstance",
    "store",
]

SPOOL_DIR = ".spool"
SECRET_FILE = ".deidentification-secret"  # noqa: S105 - a file name, not a secret
STUDIES_DIR = "studies"


class StoreInstance(Message, frozen=True, tag=True, kw_only=True):
    """Command: store the dataset a peer sent, spooled in ``source`` as a Part 10 file."""

    source: str
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str


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


StorageInbox = StoreInstance | DeidentifyAndStore


@dataclass(frozen=True)
class StorageSettings:
    """What the storage actor needs from the node configuration."""

    data_dir: Path
    spool_dir: Path
    """This process's spool (under ``<data>/.spool``); cleared when storage starts."""
    implementation_class_uid: str
    implementation_version_name: str
    duplicate_policy: DuplicatePolicy
    min_free_bytes: int
    catalog_timeout: float
    deidentification: bool = False
    """Some received instances may need de-identifying: load (or create) the secret."""


@dataclass(frozen=True)
class _Filed:
    record: InstanceRecord
    linked: bool
    """This request created the file at ``record.path`` (a duplicate did not)."""


class StorageActor(Actor[StorageInbox]):
    """Stores instances; several at once, so associations do not queue behind one fsync."""

    concurrency: ClassVar[int] = 32

    def __init__(
        self, settings: StorageSettings, catalog: ActorRef[CatalogInbox], limiters: Limiters
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._limiters = limiters
        self._deidentifier: Deidentifier | None = None

    async def started(self) -> None:
        """Create the layout and clear the spool of unacknowledged leftovers."""
        settings = self._settings
        await run_blocking(
            self._limiters, "disk", _prepare_layout, settings.data_dir, settings.spool_dir
        )
        if settings.deidentification:
            secret = await run_blocking(self._limiters, "disk", _secret, settings.data_dir)
            self._deidentifier = Deidentifier(secret)

    async def receive(self, message: StorageInbox) -> object:
        """Dispatch one message."""
        match message:
            case StoreInstance():
                return await self._store(message)
            case DeidentifyAndStore():
                spooled = await run_blocking(self._limiters, "disk", self._deidentify, message)
                return await self._store(spooled)
            case _:
                assert_never(message)

    def _deidentify(self, message: DeidentifyAndStore) -> StoreInstance:
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
        return StoreInstance(
            source=str(path),
            affected_sop_class_uid=message.affected_sop_class_uid,
            affected_sop_instance_uid=sop_instance_uid,
            transfer_syntax_uid=message.transfer_syntax_uid,
            calling_ae_title=message.calling_ae_title,
        )

    async def _store(self, message: StoreInstance) -> InstanceStored:
        settings = self._settings
        filed = await run_blocking(self._limiters, "disk", self._file, message)
        record = filed.record
        replace = settings.duplicate_policy is DuplicatePolicy.OVERWRITE
        try:
            indexed = await index(
                self._catalog, record, replace=replace, timeout=settings.catalog_timeout
            )
        except AskTimeout:
            # The commit may still land: keep the file, so no row ever lacks its file.  If
            # it does not land, the file is an unindexed complete copy that a retry indexes.
            raise
        except BaseException:
            if filed.linked:
                with anyio.CancelScope(shield=True):
                    await run_blocking(self._limiters, "disk", self._unlink, record.path)
            raise
        if indexed.written:
            if indexed.previous_path and indexed.previous_path != record.path:
                await run_blocking(self._limiters, "disk", self._unlink, indexed.previous_path)
            return InstanceStored(sop_instance_uid=record.sop_instance_uid, path=record.path)
        # Already catalogued and kept: drop what this request linked (a copy filed under
        # other Study/Series UIDs); the catalogued copy stays as it was.
        if filed.linked and indexed.previous_path != record.path:
            await run_blocking(self._limiters, "disk", self._unlink, record.path)
        if settings.duplicate_policy is DuplicatePolicy.REJECT:
            raise DuplicateInstance("SOP Instance already stored (policy: reject)")
        return InstanceStored(
            sop_instance_uid=record.sop_instance_uid,
            path=indexed.previous_path or record.path,
            duplicate=True,
        )

    def _file(self, message: StoreInstance) -> _Filed:
        """Blocking: make the spooled Part 10 file durable, parse it, link it into place."""
        settings = self._settings
        if settings.min_free_bytes and _free_bytes(settings.data_dir) < settings.min_free_bytes:
            raise OutOfResources("Free disk space below the configured floor")
        source = Path(message.source)
        with source.open("rb") as fp:
            try:
                offset = dataset_offset(fp)
            except ValueError as exc:
                raise CannotUnderstand(f"Spooled dataset unreadable: {exc}") from exc
            os.fsync(fp.fileno())
            size = os.fstat(fp.fileno()).st_size
        try:
            header = read_header(source, offset, message.transfer_syntax_uid)
        except Exception as exc:
            raise CannotUnderstand(f"Cannot parse dataset: {exc}") from exc
        record = record_from_header(
            header.dataset,
            affected_sop_class_uid=message.affected_sop_class_uid,
            affected_sop_instance_uid=message.affected_sop_instance_uid,
            transfer_syntax_uid=message.transfer_syntax_uid,
            path="",
            size=size,
            dataset_offset=offset,
            calling_ae_title=message.calling_ae_title,
            received_at=time.time(),
            header=header.raw,
        )
        relative = (
            Path(STUDIES_DIR)
            / record.study_instance_uid
            / record.series_instance_uid
            / f"{record.sop_instance_uid}.dcm"
        )
        linked = self._link(source, settings.data_dir / relative)
        return _Filed(record=msgspec.structs.replace(record, path=str(relative)), linked=linked)

    def _link(self, spool: Path, final: Path) -> bool:
        """Put ``spool`` at ``final``; ``False`` if a copy is there and must be kept.

        The spool name is removed by pynetdicom once the C-STORE has been answered.
        """
        created = _make_dirs(final.parent, self._settings.data_dir)
        try:
            os.link(spool, final)
        except FileExistsError:
            if self._settings.duplicate_policy is not DuplicatePolicy.OVERWRITE:
                return False
            os.replace(spool, final)
        fsync_directory(final.parent)
        for directory in created:
            fsync_directory(directory.parent)
        return True

    def _unlink(self, relative: str) -> None:
        path = self._settings.data_dir / relative
        path.unlink(missing_ok=True)
        fsync_directory(path.parent)


def _make_dirs(directory: Path, root: Path) -> list[Path]:
    """``mkdir -p`` that returns the directories it created, outermost first."""
    missing: list[Path] = []
    current = directory
    while current != root and not current.exists():
        missing.append(current)
        current = current.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            continue
    return list(reversed(missing))


def _secret(data_dir: Path) -> bytes:
    """The node's de-identification key: created once, kept with the data (mode 0600)."""
    path = data_dir / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(os.urandom(32))
        out.flush()
        os.fsync(out.fileno())
    return path.read_bytes()


def _free_bytes(path: Path) -> int:
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


def _prepare_layout(data_dir: Path, spool: Path) -> None:
    try:
        (data_dir / STUDIES_DIR).mkdir(parents=True, exist_ok=True)
        if spool.exists():
            shutil.rmtree(spool)
        spool.mkdir(parents=True)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise OutOfResources(f"data directory not writable: {data_dir}") from exc
        raise


async def store(
    ref: ActorRef[StorageInbox], message: StoreInstance, *, timeout: float
) -> InstanceStored:
    """Store one received instance; returns once it is durable and catalogued."""
    return await ref.ask(message, expect=InstanceStored, timeout=timeout)
