"""The catalog's SQLite schema and its blocking operations.

Four levels as PS3.4 C.6 defines them (patient, study, series, composite instance), each
with its keys as columns; every instance row also keeps the raw header bytes, so any
attribute can later be a matching or return key.  Small instances' whole files wait in
``pending_files`` until they are durable at their names (``xvactor.storage.pending``).
The database runs in WAL mode with ``synchronous=FULL``: a committed row survives power
loss, which is what lets the node answer Success only after the commit.  The catalog
writers commit with ``synchronous=NORMAL`` and flush the WAL themselves once the write
lock is free, before they answer anyone (``xvactor.catalog.walsync``).

Every function here blocks; the catalog actor runs them on one worker thread at a time.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xvactor.dicom.records import InstanceRecord

__all__ = [
    "SCHEMA_VERSION",
    "IndexOutcome",
    "StoredInstance",
    "count_instances",
    "find_instance",
    "open_catalog",
    "write_batch",
]

SCHEMA_VERSION = 2
"""2: ``pending_files.placed`` (a version 1 catalog is upgraded when opened)."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    patient_pk INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL UNIQUE,
    patient_name TEXT NOT NULL,
    patient_birth_date TEXT NOT NULL,
    patient_sex TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS patients_name ON patients(patient_name);
CREATE TABLE IF NOT EXISTS studies (
    study_pk INTEGER PRIMARY KEY,
    patient_pk INTEGER NOT NULL REFERENCES patients(patient_pk),
    study_instance_uid TEXT NOT NULL UNIQUE,
    study_date TEXT NOT NULL,
    study_time TEXT NOT NULL,
    accession_number TEXT NOT NULL,
    study_id TEXT NOT NULL,
    referring_physician_name TEXT NOT NULL,
    study_description TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_pk);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession_number);
CREATE TABLE IF NOT EXISTS series (
    series_pk INTEGER PRIMARY KEY,
    study_pk INTEGER NOT NULL REFERENCES studies(study_pk),
    series_instance_uid TEXT NOT NULL UNIQUE,
    modality TEXT NOT NULL,
    series_number TEXT NOT NULL,
    series_description TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS series_study ON series(study_pk);
CREATE INDEX IF NOT EXISTS series_modality ON series(modality);
CREATE TABLE IF NOT EXISTS instances (
    instance_pk INTEGER PRIMARY KEY,
    series_pk INTEGER NOT NULL REFERENCES series(series_pk),
    sop_instance_uid TEXT NOT NULL UNIQUE,
    sop_class_uid TEXT NOT NULL,
    instance_number TEXT NOT NULL,
    specific_character_set TEXT NOT NULL,
    transfer_syntax_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    dataset_offset INTEGER NOT NULL,
    calling_ae_title TEXT NOT NULL,
    received_at REAL NOT NULL,
    header BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_pk);
CREATE TABLE IF NOT EXISTS pending_files (
    pending_pk INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    content BLOB NOT NULL,
    owner TEXT NOT NULL,
    placed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pending_files_path ON pending_files(path);
CREATE INDEX IF NOT EXISTS pending_files_owner ON pending_files(owner, pending_pk);
"""
"""``pending_files``: small instances' bytes, durable with their rows, until written at
their final names (``xvactor.storage.pending``); ``placed``: the file was put at its name
before the commit, not yet made durable there.  Its keys are never reused
(``AUTOINCREMENT``): a materializer that read a row finds it gone, never another in its place."""

_UPSERT_PATIENT = """
INSERT INTO patients (patient_id, patient_name, patient_birth_date, patient_sex)
VALUES (?, ?, ?, ?)
ON CONFLICT(patient_id) DO UPDATE SET
    patient_name = excluded.patient_name,
    patient_birth_date = excluded.patient_birth_date,
    patient_sex = excluded.patient_sex
WHERE patient_name IS NOT excluded.patient_name
    OR patient_birth_date IS NOT excluded.patient_birth_date
    OR patient_sex IS NOT excluded.patient_sex
"""
"""An unchanged patient is not rewritten: that page stays out of the commit's WAL frames."""
_INSERT_STUDY = """
INSERT INTO studies (patient_pk, study_instance_uid, study_date, study_time,
    accession_number, study_id, referring_physician_name, study_description)
VALUES ((SELECT patient_pk FROM patients WHERE patient_id = ?), ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(study_instance_uid) DO NOTHING
"""
_INSERT_SERIES = """
INSERT INTO series (study_pk, series_instance_uid, modality, series_number,
    series_description)
VALUES ((SELECT study_pk FROM studies WHERE study_instance_uid = ?), ?, ?, ?, ?)
ON CONFLICT(series_instance_uid) DO NOTHING
"""
_UPSERT_INSTANCE = """
INSERT INTO instances (series_pk, sop_instance_uid, sop_class_uid, instance_number,
    specific_character_set, transfer_syntax_uid, path, size, dataset_offset,
    calling_ae_title, received_at, header)
VALUES ((SELECT series_pk FROM series WHERE series_instance_uid = ?),
    ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(sop_instance_uid) DO UPDATE SET
    series_pk = excluded.series_pk,
    sop_class_uid = excluded.sop_class_uid,
    instance_number = excluded.instance_number,
    specific_character_set = excluded.specific_character_set,
    transfer_syntax_uid = excluded.transfer_syntax_uid,
    path = excluded.path,
    size = excluded.size,
    dataset_offset = excluded.dataset_offset,
    calling_ae_title = excluded.calling_ae_title,
    received_at = excluded.received_at,
    header = excluded.header
"""


@dataclass(frozen=True)
class IndexOutcome:
    """What indexing one record did."""

    existed: bool
    """The SOP Instance UID was already catalogued before this record."""
    previous_path: str | None
    """Where the catalogued copy was (``None`` if it did not exist)."""
    written: bool
    """The row now describes this record (new, or replaced under ``overwrite``)."""


@dataclass(frozen=True)
class StoredInstance:
    """A catalogued instance's location."""

    sop_instance_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    path: str
    size: int
    study_instance_uid: str
    series_instance_uid: str
    patient_id: str
    patient_name: str


def open_catalog(path: Path) -> sqlite3.Connection:
    """Open (creating if needed) the catalog database at ``path``."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # Receive worker processes share the catalog: wait for each other's write locks.
    conn.execute("PRAGMA busy_timeout=60000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, 1, SCHEMA_VERSION):
        conn.close()
        msg = f"catalog {path} has schema version {version}, this xvactor knows {SCHEMA_VERSION}"
        raise RuntimeError(msg)
    if version != SCHEMA_VERSION:
        _upgrade(conn)
    return conn


def _upgrade(conn: sqlite3.Connection) -> None:
    """Create the schema, or bring a version 1 catalog to this one (one transaction, so
    that processes opening the catalog together do it once)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if conn.execute("PRAGMA user_version").fetchone()[0] != SCHEMA_VERSION:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            columns = {row[1] for row in conn.execute("PRAGMA table_info(pending_files)")}
            if "placed" not in columns:  # version 1
                conn.execute(
                    "ALTER TABLE pending_files ADD COLUMN placed INTEGER NOT NULL DEFAULT 0"
                )
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _write_one(
    conn: sqlite3.Connection,
    record: InstanceRecord,
    replace: bool,
    place: Callable[[str | None], None] | None,
) -> IndexOutcome:
    row = conn.execute(
        "SELECT path FROM instances WHERE sop_instance_uid = ?", (record.sop_instance_uid,)
    ).fetchone()
    previous = None if row is None else str(row[0])
    if previous is not None and not replace:
        return IndexOutcome(existed=True, previous_path=previous, written=False)
    if place is not None:
        place(previous)
    r = record
    conn.execute(
        _UPSERT_PATIENT, (r.patient_id, r.patient_name, r.patient_birth_date, r.patient_sex)
    )
    conn.execute(
        _INSERT_STUDY,
        (r.patient_id, r.study_instance_uid, r.study_date, r.study_time, r.accession_number,
         r.study_id, r.referring_physician_name, r.study_description),
    )  # fmt: skip
    conn.execute(
        _INSERT_SERIES,
        (r.study_instance_uid, r.series_instance_uid, r.modality, r.series_number,
         r.series_description),
    )  # fmt: skip
    conn.execute(
        _UPSERT_INSTANCE,
        (r.series_instance_uid, r.sop_instance_uid, r.sop_class_uid, r.instance_number,
         r.specific_character_set, r.transfer_syntax_uid, r.path, r.size, r.dataset_offset,
         r.calling_ae_title, r.received_at, r.header),
    )  # fmt: skip
    return IndexOutcome(existed=previous is not None, previous_path=previous, written=True)


def write_batch(
    conn: sqlite3.Connection,
    batch: list[tuple[InstanceRecord, bool]],
    *,
    place: Callable[[int, str | None], None] | None = None,
    before_commit: Callable[[list[IndexOutcome | Exception]], None] | None = None,
) -> list[IndexOutcome | Exception]:
    """Index records in ONE transaction (the group commit); one outcome per record.

    ``batch`` holds ``(record, replace)`` pairs; ``replace`` is the overwrite policy.  A
    record that fails (a constraint, or ``place`` raising ``OSError``) is rolled back alone
    through its savepoint; the others commit.  ``place(position, previous_path)`` runs for
    each record whose row is about to be written, inside the transaction;
    ``before_commit(outcomes)`` runs once before COMMIT.  If either of the last two, or the commit
    itself, fails, the exception propagates and nothing is written.
    """
    outcomes: list[IndexOutcome | Exception] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for position, (record, replace) in enumerate(batch):
            conn.execute("SAVEPOINT one")
            placing = None if place is None else functools.partial(place, position)
            try:
                outcomes.append(_write_one(conn, record, replace, placing))
            except (sqlite3.DatabaseError, OSError) as exc:
                conn.execute("ROLLBACK TO one")
                outcomes.append(exc)
            conn.execute("RELEASE one")
        if before_commit is not None:
            before_commit(outcomes)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return outcomes


_FIND = """
SELECT i.sop_instance_uid, i.sop_class_uid, i.transfer_syntax_uid, i.path, i.size,
       st.study_instance_uid, se.series_instance_uid, p.patient_id, p.patient_name
FROM instances i
JOIN series se ON se.series_pk = i.series_pk
JOIN studies st ON st.study_pk = se.study_pk
JOIN patients p ON p.patient_pk = st.patient_pk
WHERE i.sop_instance_uid = ?
"""


def find_instance(conn: sqlite3.Connection, sop_instance_uid: str) -> StoredInstance | None:
    """Return where an instance is stored, or ``None``."""
    row = conn.execute(_FIND, (sop_instance_uid,)).fetchone()
    if row is None:
        return None
    return StoredInstance(*row)


def count_instances(conn: sqlite3.Connection) -> int:
    """Number of catalogued instances."""
    return int(conn.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
