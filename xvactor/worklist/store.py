"""Worklist items in the catalog database: schema, add, list, remove.

The items live in the node's catalog file (``<data_dir>/catalog.sqlite``, WAL mode,
``synchronous=FULL``) in tables of their own, created here with ``CREATE TABLE IF NOT
EXISTS``.  Every write is one short ``BEGIN IMMEDIATE`` transaction and every connection
waits for the node's write locks (busy timeout), so the CLI works while the node runs.

Item ids
--------
An item's id is a small integer (``worklist_items.item_id``, ``AUTOINCREMENT``: never
reused after a removal), shown by ``list`` and taken by ``remove``.  The item's identity in
DICOM terms is (Accession Number, Requested Procedure ID, Scheduled Procedure Step ID)
(PS3.3 C.4.11, C.4.10: a step is unique within its requested procedure, which is unique
within its imaging service request); adding an item with the identity of a stored one
replaces its content and keeps its id.

Every function blocks; callers on an event loop run them in a worker thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset

from xvactor.actors.catalog import CATALOG_FILE
from xvactor.catalog.sqlite import open_catalog
from xvactor.worklist.items import IndexedItem, date_bounds, index_item, time_bounds

__all__ = [
    "WorklistSummary",
    "add_items",
    "create_worklist_schema",
    "fold_name",
    "list_items",
    "open_worklist",
    "remove_item",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS worklist_items (
    item_id INTEGER PRIMARY KEY AUTOINCREMENT,
    accession_number TEXT NOT NULL,
    requested_procedure_id TEXT NOT NULL,
    sps_id TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    patient_name TEXT NOT NULL,
    patient_name_fold TEXT NOT NULL,
    study_instance_uid TEXT NOT NULL,
    scheduled_station_ae_title TEXT NOT NULL,
    start_date TEXT NOT NULL,
    start_time TEXT NOT NULL,
    start_lo TEXT NOT NULL,
    start_hi TEXT NOT NULL,
    modality TEXT NOT NULL,
    performing_physician_name TEXT NOT NULL,
    performing_physician_fold TEXT NOT NULL,
    specific_character_set TEXT NOT NULL,
    dataset BLOB NOT NULL,
    added_at REAL NOT NULL,
    UNIQUE (accession_number, requested_procedure_id, sps_id)
);
CREATE INDEX IF NOT EXISTS worklist_items_start ON worklist_items(start_lo, item_id);
CREATE INDEX IF NOT EXISTS worklist_items_modality ON worklist_items(modality);
CREATE INDEX IF NOT EXISTS worklist_items_patient_id ON worklist_items(patient_id);
CREATE INDEX IF NOT EXISTS worklist_items_patient_name ON worklist_items(patient_name_fold);
CREATE INDEX IF NOT EXISTS worklist_items_physician
    ON worklist_items(performing_physician_fold);
CREATE INDEX IF NOT EXISTS worklist_items_requested_procedure
    ON worklist_items(requested_procedure_id);
CREATE TABLE IF NOT EXISTS worklist_stations (
    station_ae_title TEXT NOT NULL,
    item_id INTEGER NOT NULL REFERENCES worklist_items(item_id) ON DELETE CASCADE,
    PRIMARY KEY (station_ae_title, item_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS worklist_stations_item ON worklist_stations(item_id);
"""

_COLUMNS = (
    "accession_number, requested_procedure_id, sps_id, patient_id, patient_name, "
    "patient_name_fold, study_instance_uid, scheduled_station_ae_title, start_date, "
    "start_time, start_lo, start_hi, modality, performing_physician_name, "
    "performing_physician_fold, specific_character_set, dataset, added_at"
)
# Both statements are built from the constants above only.
_INSERT = f"INSERT INTO worklist_items ({_COLUMNS}) VALUES ({', '.join('?' * 18)})"  # noqa: S608
# A plain UPDATE of the found row: SQLite's upsert would draw an AUTOINCREMENT number
# even when it updates, leaving gaps in the ids users type.
_UPDATE = f"UPDATE worklist_items SET ({_COLUMNS}) = ({', '.join('?' * 18)}) WHERE item_id = ?"  # noqa: S608
_FIND = (
    "SELECT item_id FROM worklist_items "
    "WHERE accession_number = ? AND requested_procedure_id = ? AND sps_id = ?"
)


@dataclass(frozen=True)
class WorklistSummary:
    """One stored item as ``xvactor worklist list`` shows it."""

    item_id: int
    scheduled_procedure_step_id: str
    accession_number: str
    requested_procedure_id: str
    patient_id: str
    patient_name: str
    modality: str
    scheduled_station_ae_title: str
    """Backslash-separated when the step is scheduled on several stations."""
    start_date: str
    start_time: str
    performing_physician_name: str
    added_at: float


def create_worklist_schema(conn: sqlite3.Connection) -> None:
    """Create the worklist tables in an open catalog connection (idempotent)."""
    conn.executescript(_SCHEMA)


def open_worklist(
    data_dir: Path, *, create: bool = True, busy_timeout: float = 10.0
) -> sqlite3.Connection:
    """Open the catalog of ``data_dir`` with the worklist tables in it.

    Parameters
    ----------
    data_dir : pathlib.Path
        The node's data directory; the catalog is ``data_dir / "catalog.sqlite"``.
    create : bool, optional
        Create the directory and the catalog if missing (otherwise
        :class:`FileNotFoundError`).
    busy_timeout : float, optional
        Seconds a statement waits for another connection's write lock (the node's).
    """
    path = data_dir / CATALOG_FILE
    if not create and not path.is_file():
        raise FileNotFoundError(2, "no catalog in this data directory", str(data_dir))
    if create:
        data_dir.mkdir(parents=True, exist_ok=True)
    conn = open_catalog(path)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
    create_worklist_schema(conn)
    return conn


def _row(item: IndexedItem) -> tuple[object, ...]:
    time_lo, time_hi = time_bounds(item.start_time) or ("", "~")
    date, _ = date_bounds(item.start_date) or ("", "")
    return (
        item.accession_number, item.requested_procedure_id, item.sps_id, item.patient_id,
        item.patient_name, fold_name(item.patient_name), item.study_instance_uid,
        "\\".join(item.scheduled_station_ae_titles), item.start_date, item.start_time,
        date + time_lo, date + time_hi, item.modality, item.performing_physician_name,
        fold_name(item.performing_physician_name), item.specific_character_set,
        item.dataset, item.added_at,
    )  # fmt: skip


def fold_name(name: str) -> str:
    """The form of a Person Name the index compares: case folded, outer spaces removed."""
    return name.strip().casefold()


def add_items(conn: sqlite3.Connection, datasets: Iterable[Dataset]) -> list[int]:
    """Check and store worklist items in one transaction; return their ids in order.

    An item with the (Accession Number, Requested Procedure ID, Scheduled Procedure Step
    ID) of a stored one replaces it and keeps its id.

    Raises
    ------
    xvactor.worklist.items.WorklistItemError
        If any dataset is not a valid item (message prefixed ``item N:`` when several
        were given); nothing is stored then.
    """
    given = list(datasets)
    indexed = []
    for number, ds in enumerate(given, start=1):
        try:
            indexed.append(index_item(ds))
        except ValueError as exc:
            prefix = f"item {number}: " if len(given) > 1 else ""
            raise type(exc)(f"{prefix}{exc}") from exc
    ids: list[int] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        for item in indexed:
            row = _row(item)
            found = conn.execute(_FIND, row[:3]).fetchone()
            if found is None:
                item_id = int(conn.execute(_INSERT, row).lastrowid or 0)
            else:
                item_id = int(found[0])
                conn.execute(_UPDATE, (*row, item_id))
            conn.execute("DELETE FROM worklist_stations WHERE item_id = ?", (item_id,))
            conn.executemany(
                "INSERT OR IGNORE INTO worklist_stations (station_ae_title, item_id) VALUES (?, ?)",
                [(title, item_id) for title in item.scheduled_station_ae_titles],
            )
            ids.append(item_id)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return ids


def list_items(conn: sqlite3.Connection) -> list[WorklistSummary]:
    """Every stored item, in order of Scheduled Procedure Step start."""
    rows = conn.execute(
        "SELECT item_id, sps_id, accession_number, requested_procedure_id, patient_id, "
        "patient_name, modality, scheduled_station_ae_title, start_date, start_time, "
        "performing_physician_name, added_at FROM worklist_items ORDER BY start_lo, item_id"
    ).fetchall()
    return [WorklistSummary(*row) for row in rows]


def remove_item(conn: sqlite3.Connection, item_id: int) -> bool:
    """Remove the item ``item_id``; ``False`` if there is none."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM worklist_stations WHERE item_id = ?", (item_id,))
        removed = conn.execute("DELETE FROM worklist_items WHERE item_id = ?", (item_id,))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return removed.rowcount > 0
