"""Filing a received instance: durable on disk, linked into place, then catalogued.

The order is what makes "never acknowledge an instance we could lose" hold (PS3.4 B.2.3:
a Success status means the SCP has stored the instance):

1. the receive path has written the dataset bytes, unchanged and as they arrived, behind
   our File Meta into a spool file in the data directory (``xvactor.dicom.spool``); fsync it;
2. parse its header (up to the bulk data) and check the UIDs the node files it under;
3. link it into ``studies/<Study>/<Series>/<SOP>.dcm`` (never clobbering a stored copy
   unless the policy is ``overwrite``) and fsync the directory;
4. index it through the catalog writer, which returns only after the commit that holds
   the row.

Only then may the caller answer.  Any failure on the way removes what this request created,
so a failed C-STORE leaves neither a file nor a row behind.

Everything here blocks.  A receiving association calls :meth:`Filing.store` on its own
thread (its peer is waiting for this answer and sends nothing else meanwhile, PS3.7
D.3.3.3), so a C-STORE costs no hop through the event loop; the storage actor calls it on
a worker thread for the instances it prepares itself (de-identified ones).
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec

from xvactor.catalog.writer import CatalogWriter, CommitPending
from xvactor.config import DuplicatePolicy
from xvactor.dicom.part10 import dataset_offset, fsync_directory, read_header_from
from xvactor.dicom.records import InstanceRecord, record_from_header
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

_DIRECTORY_CACHE = 4096
"""Series directories remembered as existing (the cache is cleared when full)."""


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


@dataclass(frozen=True)
class Received:
    """A dataset a peer sent, spooled in ``source`` as a Part 10 file."""

    source: Path
    affected_sop_class_uid: str
    affected_sop_instance_uid: str
    transfer_syntax_uid: str
    calling_ae_title: str


@dataclass(frozen=True)
class Filed:
    """The instance is durable and catalogued (or was already, for a duplicate)."""

    sop_instance_uid: str
    path: str
    """Relative to the data directory."""
    duplicate: bool = False


@dataclass(frozen=True)
class _Linked:
    record: InstanceRecord
    linked: bool
    """This request created the file at ``record.path`` (a duplicate did not)."""


class Filing:
    """Files received instances under ``settings.data_dir``; thread-safe."""

    def __init__(self, settings: StorageSettings, catalog: CatalogWriter) -> None:
        self._settings = settings
        self._catalog = catalog
        self._root = os.fspath(settings.data_dir)
        self._directories: set[str] = set()
        """Series directories known to exist (set operations are atomic under the GIL)."""

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
            The commit did not finish in time (the file stays; the commit may land).
        CannotUnderstand
            The spooled dataset cannot be parsed.
        DuplicateInstance
            Already stored and the policy is ``reject``.
        OSError
            The disk failed.
        """
        settings = self._settings
        linked = self._file(received)
        record = linked.record
        replace = settings.duplicate_policy is DuplicatePolicy.OVERWRITE
        try:
            indexed = self._catalog.index(record, replace=replace, timeout=settings.catalog_timeout)
        except CommitPending:
            # The commit may still land: keep the file, so no row ever lacks its file.  If
            # it does not land, the file is an unindexed complete copy that a retry indexes.
            raise
        except BaseException:
            self._discard(linked)
            raise
        if indexed.written:
            if indexed.previous_path and indexed.previous_path != record.path:
                self._unlink(indexed.previous_path)
            return Filed(sop_instance_uid=record.sop_instance_uid, path=record.path)
        # Already catalogued and kept: drop what this request linked (a copy filed under
        # other Study/Series UIDs); the catalogued copy stays as it was.
        if linked.linked and indexed.previous_path != record.path:
            self._unlink(record.path)
        if settings.duplicate_policy is DuplicatePolicy.REJECT:
            raise DuplicateInstance("SOP Instance already stored (policy: reject)")
        return Filed(
            sop_instance_uid=record.sop_instance_uid,
            path=indexed.previous_path or record.path,
            duplicate=True,
        )

    def _discard(self, linked: _Linked) -> None:
        if linked.linked:
            self._unlink(linked.record.path)

    def _file(self, received: Received) -> _Linked:
        """Make the spooled Part 10 file durable, parse it, link it into place."""
        settings = self._settings
        if settings.min_free_bytes and _free_bytes(settings.data_dir) < settings.min_free_bytes:
            raise OutOfResources("Free disk space below the configured floor")
        source = received.source
        with open(source, "rb") as fp:
            try:
                offset = dataset_offset(fp)
            except ValueError as exc:
                raise CannotUnderstand(f"Spooled dataset unreadable: {exc}") from exc
            try:
                header = read_header_from(fp, offset, received.transfer_syntax_uid)
            except Exception as exc:
                raise CannotUnderstand(f"Cannot parse dataset: {exc}") from exc
            os.fsync(fp.fileno())
            size = os.fstat(fp.fileno()).st_size
        record = record_from_header(
            header.dataset,
            affected_sop_class_uid=received.affected_sop_class_uid,
            affected_sop_instance_uid=received.affected_sop_instance_uid,
            transfer_syntax_uid=received.transfer_syntax_uid,
            path="",
            size=size,
            dataset_offset=offset,
            calling_ae_title=received.calling_ae_title,
            received_at=time.time(),
            header=header.raw,
        )
        series = f"{STUDIES_DIR}/{record.study_instance_uid}/{record.series_instance_uid}"
        relative = f"{series}/{record.sop_instance_uid}.dcm"
        linked = self._link(os.fspath(source), series, relative)
        return _Linked(record=msgspec.structs.replace(record, path=relative), linked=linked)

    def _link(self, spool: str, series: str, relative: str) -> bool:
        """Put ``spool`` at ``relative``; ``False`` if a copy is there and must be kept.

        The spool name is removed by the receive path once the C-STORE has been answered.
        """
        root = self._root
        directory = f"{root}/{series}"
        final = f"{root}/{relative}"
        if directory not in self._directories:
            self._make_series_directory(series)
        try:
            os.link(spool, final)
        except FileExistsError:
            if self._settings.duplicate_policy is not DuplicatePolicy.OVERWRITE:
                return False
            os.replace(spool, final)
        except FileNotFoundError:  # the directory went away under us: make it again
            self._directories.discard(directory)
            self._make_series_directory(series)
            os.link(spool, final)
        fsync_directory(directory)
        return True

    def _make_series_directory(self, series: str) -> None:
        """``mkdir -p`` the series directory, each new entry made durable in its parent."""
        root = Path(self._root)
        for directory in _make_dirs(root / series, root):
            fsync_directory(directory.parent)
        if len(self._directories) >= _DIRECTORY_CACHE:
            self._directories.clear()
        self._directories.add(f"{self._root}/{series}")

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
