"""Filing a received instance: parsed, then placed, made durable and catalogued at once.

The order is what makes "never acknowledge an instance we could lose" hold (PS3.4 B.2.3:
a Success status means the SCP has stored the instance):

1. the receive path has written the dataset bytes, unchanged and as they arrived, behind
   our File Meta into a spool file in the data directory (``xvactor.dicom.spool``);
2. parse its header (up to the bulk data) and check the UIDs the node files it under;
3. hand it to the catalog writer, which, inside its write transaction, links it to
   ``studies/<Study>/<Series>/<SOP>.dcm`` (never replacing a catalogued copy unless the
   policy is ``overwrite``), fsyncs the file and the directory, and only then commits the
   row (``xvactor.storage.placement``); a small file (``inline_max_bytes``) is linked
   there too but not fsynced: that commit holds its bytes with its row until it is
   durable at its name (``xvactor.storage.pending``).

Only then may the caller answer.  A failure on the way removes what this request placed,
so a failed C-STORE leaves neither a file nor a row behind.

Everything here blocks.  A receiving association calls :meth:`Filing.store` on its own
thread (its peer is waiting for this answer and sends nothing else meanwhile, PS3.7
D.3.3.3), so a C-STORE costs no hop through the event loop; the storage actor calls it on
a worker thread for the instances it prepares itself (de-identified ones).
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import msgspec
from pydicom.dataset import Dataset

from xvactor.catalog.writer import CatalogWriter
from xvactor.config import DuplicatePolicy
from xvactor.dicom.part10 import (
    dataset_offset,
    fsync_directory,
    read_header_from,
    read_header_in,
)
from xvactor.dicom.records import KEY_TAGS, InstanceRecord, record_from_header
from xvactor.dicom.scan import scan_header
from xvactor.dicom.spoolfile import HEAD_BYTES
from xvactor.dicom.status import CannotUnderstand, DuplicateInstance, OutOfResources

__all__ = [
    "SECRET_FILE",
    "SPOOL_DIR",
    "STUDIES_DIR",
    "Filed",
    "Filing",
    "Received",
    "StorageSettings",
    "load_secret",
    "prepare_layout",
]

SPOOL_DIR = ".spool"
SECRET_FILE = ".deidentification-secret"  # noqa: S105 - a file name, not a secret
STUDIES_DIR = "studies"


@dataclass(frozen=True)
class StorageSettings:
    """What filing needs from the node configuration."""

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
    inline_max_bytes: int = 0
    """Files up to this size are held in the catalog's commit, and made durable at their
    names after it (``xvactor.storage.pending``); 0: every file is made durable at its name
    first."""


@dataclass(frozen=True)
class Received:
    """A dataset a peer sent, spooled in ``source`` as a Part 10 file."""

    source: Path
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str
    head: bytes | None = None
    """The file's first bytes, as spooled (``None``: read them from ``source``)."""
    size: int = 0
    """The file's size (with ``head``)."""
    on_disk: bool = True
    """Whether ``source`` exists (false: the whole file is ``head``, and the catalog holds
    it whatever ``inline_max_bytes`` says)."""


@dataclass(frozen=True)
class Filed:
    """The instance is durable and catalogued (or was already, for a duplicate)."""

    sop_instance_uid: str
    path: str
    """Relative to the data directory."""
    duplicate: bool = False


class Filing:
    """Files received instances under ``settings.data_dir``; thread-safe."""

    def __init__(self, settings: StorageSettings, catalog: CatalogWriter) -> None:
        self._settings = settings
        self._catalog = catalog

    @property
    def settings(self) -> StorageSettings:
        """The settings this filing works with."""
        return self._settings

    def store(self, received: Received) -> Filed:
        """Make ``received`` durable and catalogued (blocking; see the module docstring).

        Raises
        ------
        OutOfResources
            Free disk below the floor, or the catalog saturated or not running.
        CommitPending
            The commit did not finish in time (it may still land, file and row together).
        CannotUnderstand
            The spooled dataset cannot be parsed.
        DuplicateInstance
            Already stored and the policy is ``reject``.
        OSError
            The disk failed (nothing of this instance is left behind).
        """
        settings = self._settings
        catalog = self._catalog
        catalog.begin_filing()  # so that concurrent instances can share a commit
        try:
            record = self._record(received)
        except BaseException:
            catalog.end_filing()
            raise
        head = received.head
        # Held by the catalog: small, or kept in memory by the receive path (no file).
        whole = (
            head is not None
            and len(head) == received.size
            and (0 < received.size <= settings.inline_max_bytes or not received.on_disk)
        )
        indexed = catalog.file(
            record,
            received.source,
            replace=settings.duplicate_policy is DuplicatePolicy.OVERWRITE,
            timeout=settings.catalog_timeout,
            announced=True,
            content=head if whole else None,
            spooled=received.on_disk,
        )
        if indexed.written:
            if indexed.previous_path and indexed.previous_path != record.path:
                self._unlink(indexed.previous_path)  # overwritten under other Study/Series
            return Filed(sop_instance_uid=record.sop_instance_uid, path=record.path)
        # Already catalogued and kept; nothing of this request was placed.
        if settings.duplicate_policy is DuplicatePolicy.REJECT:
            raise DuplicateInstance("SOP Instance already stored (policy: reject)")
        return Filed(
            sop_instance_uid=record.sop_instance_uid,
            path=indexed.previous_path or record.path,
            duplicate=True,
        )

    def _record(self, received: Received) -> InstanceRecord:
        """Parse the spooled Part 10 file's header into the row that files it."""
        settings = self._settings
        if settings.min_free_bytes and _free_bytes(settings.data_dir) < settings.min_free_bytes:
            raise OutOfResources("Free disk space below the configured floor")
        syntax = received.transfer_syntax_uid
        head, size = received.head, received.size
        if head is None:
            with open(received.source, "rb") as fp:
                head = fp.read(HEAD_BYTES)  # a longer header is read from the file
                size = os.fstat(fp.fileno()).st_size
        try:
            offset = dataset_offset(io.BytesIO(head))
        except ValueError as exc:
            raise CannotUnderstand(f"Spooled dataset unreadable: {exc}") from exc
        scanned = scan_header(head, offset, syntax, complete=len(head) >= size, wanted=KEY_TAGS)
        values: Dataset | Mapping[int, bytes]
        if scanned is not None:
            values, raw = scanned.values, head[offset : scanned.end]
        else:  # not walked to its end here: pydicom reads it (or says why)
            try:
                header = read_header_in(head, offset, syntax, size=size)
                if header is None:  # the header runs past the first bytes read
                    with open(received.source, "rb") as fp:
                        header = read_header_from(fp, offset, syntax)
            except Exception as exc:
                raise CannotUnderstand(f"Cannot parse dataset: {exc}") from exc
            values, raw = header.dataset, header.raw
        record = record_from_header(
            values,
            affected_sop_class_uid=received.affected_sop_class_uid,
            affected_sop_instance_uid=received.affected_sop_instance_uid,
            transfer_syntax_uid=syntax,
            path="",
            size=size,
            dataset_offset=offset,
            calling_ae_title=received.calling_ae_title,
            received_at=time.time(),
            header=raw,
        )
        relative = (
            f"{STUDIES_DIR}/{record.study_instance_uid}/{record.series_instance_uid}"
            f"/{record.sop_instance_uid}.dcm"
        )
        return msgspec.structs.replace(record, path=relative)

    def _unlink(self, relative: str) -> None:
        path = self._settings.data_dir / relative
        path.unlink(missing_ok=True)
        fsync_directory(path.parent)


def load_secret(data_dir: Path) -> bytes:
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


def prepare_layout(data_dir: Path, spool: Path) -> None:
    """Create the data layout and clear this process's spool of unacknowledged leftovers."""
    try:
        (data_dir / STUDIES_DIR).mkdir(parents=True, exist_ok=True)
        if spool.exists():
            shutil.rmtree(spool)
        spool.mkdir(parents=True)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
            raise OutOfResources(f"data directory not writable: {data_dir}") from exc
        raise
