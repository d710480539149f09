"""Resolve a C-FIND, C-MOVE or C-GET Identifier against the catalog, streaming.

:func:`resolve` yields one response Identifier at a time while it reads the catalog in
chunks through one cursor (PS3.4 C.4.1.3.1: a pending response per match), so the first
answer leaves before the last row is read and closing the generator (C-CANCEL) stops the
reading.  Each candidate entity is the row's columns, the computed keys the Identifier
asks for (PS3.4 C.6.1.1: Number of ... Related ..., Modalities/SOP Classes in Study,
Instance Availability, Retrieve AE Title) and, only when the Identifier names an attribute
that is no column, the header of one representative instance (the entity's first
catalogued one).  :mod:`xvactor.query.sql` pre-filters; PS3.4 matching decides.

The result limit ends with :class:`ResultLimitExceeded`, status 0xA700 "Refused: Out of
Resources" (PS3.4 Table C.4-1; the only C-FIND failure about the SCP's capacity, which is
what a limit is, and the one Orthanc uses for the same purpose): the peer has its first
``limit`` answers and an ErrorComment saying the list was cut, never a silent Success.

Every function blocks; the resolver runs on a worker thread with its own read connection
(``sqlite3.connect(path, check_same_thread=False)``; WAL lets it read beside the writer).
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from xvactor.dicom.status import OutOfResources
from xvactor.query.matching import build_response, is_universal, match_identifier
from xvactor.query.model import Level, Query
from xvactor.query.sql import COLUMNS, Select, register_functions, select_entities

__all__ = [
    "COMPUTED_KEYS",
    "ResultLimitExceeded",
    "StoredLocation",
    "resolve",
    "resolve_instances",
]

_CHUNK = 256
_QUERY_RETRIEVE_LEVEL = 0x00080052
_DEFAULT_CHARACTER_SET = "ISO_IR 100"


class ResultLimitExceeded(OutOfResources):
    """More entities match than the configured limit (0xA700, see the module doc)."""


@dataclass(frozen=True)
class StoredLocation:
    """One catalogued instance to send for a C-MOVE/C-GET."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: str
    """Relative to the data directory."""


_COUNT_SQL = {
    0x00201200: (Level.PATIENT, "SELECT COUNT(*) FROM studies WHERE patient_pk = ?"),
    0x00201202: (
        Level.PATIENT,
        "SELECT COUNT(*) FROM series se JOIN studies st ON st.study_pk = se.study_pk"
        " WHERE st.patient_pk = ?",
    ),
    0x00201204: (
        Level.PATIENT,
        "SELECT COUNT(*) FROM instances i JOIN series se ON se.series_pk = i.series_pk"
        " JOIN studies st ON st.study_pk = se.study_pk WHERE st.patient_pk = ?",
    ),
    0x00201206: (Level.STUDY, "SELECT COUNT(*) FROM series WHERE study_pk = ?"),
    0x00201208: (
        Level.STUDY,
        "SELECT COUNT(*) FROM instances i JOIN series se ON se.series_pk = i.series_pk"
        " WHERE se.study_pk = ?",
    ),
    0x00201209: (Level.SERIES, "SELECT COUNT(*) FROM instances WHERE series_pk = ?"),
}
_LIST_SQL = {
    0x00080061: (
        Level.STUDY,
        "SELECT DISTINCT modality FROM series WHERE study_pk = ? AND modality != ''"
        " ORDER BY modality",
    ),
    0x00080062: (
        Level.STUDY,
        "SELECT DISTINCT i.sop_class_uid FROM instances i"
        " JOIN series se ON se.series_pk = i.series_pk WHERE se.study_pk = ?"
        " ORDER BY i.sop_class_uid",
    ),
}
_INSTANCE_AVAILABILITY = 0x00080056
_RETRIEVE_AE_TITLE = 0x00080054
#: Keys the resolver computes rather than reads (PS3.4 C.6.1.1.2-C.6.1.1.4, C.4.1.1.3.2).
COMPUTED_KEYS = frozenset({*_COUNT_SQL, *_LIST_SQL, _INSTANCE_AVAILABILITY, _RETRIEVE_AE_TITLE})
_VRS = {0x00080061: "CS", 0x00080062: "UI", _INSTANCE_AVAILABILITY: "CS"}

# The first catalogued instance of an entity, by the level of the entity's primary key.
_REPRESENTATIVE = {
    Level.PATIENT: (
        "SELECT i.header, i.transfer_syntax_uid FROM instances i"
        " JOIN series se ON se.series_pk = i.series_pk"
        " JOIN studies st ON st.study_pk = se.study_pk"
        " WHERE st.patient_pk = ? ORDER BY i.instance_pk LIMIT 1"
    ),
    Level.STUDY: (
        "SELECT i.header, i.transfer_syntax_uid FROM instances i"
        " JOIN series se ON se.series_pk = i.series_pk"
        " WHERE se.study_pk = ? ORDER BY i.instance_pk LIMIT 1"
    ),
    Level.SERIES: (
        "SELECT header, transfer_syntax_uid FROM instances"
        " WHERE series_pk = ? ORDER BY instance_pk LIMIT 1"
    ),
    Level.IMAGE: "SELECT header, transfer_syntax_uid FROM instances WHERE instance_pk = ?",
}
_INSTANCES_BELOW = {
    Level.PATIENT: (
        "SELECT i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, i.path"
        " FROM instances i JOIN series se ON se.series_pk = i.series_pk"
        " JOIN studies st ON st.study_pk = se.study_pk"
        " WHERE st.patient_pk = ? ORDER BY i.instance_pk"
    ),
    Level.STUDY: (
        "SELECT i.sop_class_uid, i.sop_instance_uid, i.transfer_syntax_uid, i.path"
        " FROM instances i JOIN series se ON se.series_pk = i.series_pk"
        " WHERE se.study_pk = ? ORDER BY i.instance_pk"
    ),
    Level.SERIES: (
        "SELECT sop_class_uid, sop_instance_uid, transfer_syntax_uid, path"
        " FROM instances WHERE series_pk = ? ORDER BY instance_pk"
    ),
    Level.IMAGE: (
        "SELECT sop_class_uid, sop_instance_uid, transfer_syntax_uid, path"
        " FROM instances WHERE instance_pk = ?"
    ),
}


def _element(tag: int, vr: str, value: object) -> DataElement:
    """A candidate element that never rejects what the catalog holds."""
    try:
        return DataElement(tag, vr, value, validation_mode=config.IGNORE)
    except (ValueError, TypeError, OverflowError):  # e.g. "abc" in an IS column
        return DataElement(tag, "UN", str(value).encode("utf-8"))


def _header(conn: sqlite3.Connection, level: Level, pk: int) -> Dataset | None:
    row = conn.execute(_REPRESENTATIVE[level], (pk,)).fetchone()
    if row is None or not row[0]:
        return None
    syntax = UID(row[1])
    try:
        ds = read_dataset(io.BytesIO(bytes(row[0])), syntax.is_implicit_VR, syntax.is_little_endian)
    except Exception:  # a header the catalog kept but pydicom cannot parse: no extra keys
        return None
    return ds


class _Candidates:
    """Builds the candidate entity of each selected row."""

    def __init__(self, conn: sqlite3.Connection, query: Query, select: Select) -> None:
        self.conn = conn
        self.query = query
        self.select = select
        self.header_tags = [
            key.tag
            for key in query.identifier
            if key.tag not in COLUMNS
            and key.tag not in COMPUTED_KEYS
            and key.tag != _QUERY_RETRIEVE_LEVEL
        ]
        self.computed = [key.tag for key in query.identifier if key.tag in COMPUTED_KEYS]

    def build(self, row: tuple[object, ...]) -> Dataset:
        pks = [int(pk) for pk in row[: self.select.pks]]  # type: ignore[call-overload]
        ds = Dataset()
        for tag, value in zip(self.select.columns, row[self.select.pks :], strict=True):
            if value:
                ds.add(_element(tag, COLUMNS[tag].vr, value))
        for tag in self.computed:
            self._compute(ds, tag, pks)
        if self.header_tags:
            self._add_header(ds, pks)
        return ds

    def _compute(self, ds: Dataset, tag: int, pks: list[int]) -> None:
        if tag == _INSTANCE_AVAILABILITY:
            ds.add(_element(tag, "CS", "ONLINE"))
        elif tag == _RETRIEVE_AE_TITLE:
            if self.query.retrieve_ae_title:
                ds.add(_element(tag, "AE", self.query.retrieve_ae_title))
        elif tag in _COUNT_SQL:
            level, sql = _COUNT_SQL[tag]
            if level < len(pks):
                count = self.conn.execute(sql, (pks[level],)).fetchone()[0]
                ds.add(_element(tag, "IS", str(count)))
        else:
            level, sql = _LIST_SQL[tag]
            if level < len(pks):
                values = [str(r[0]) for r in self.conn.execute(sql, (pks[level],))]
                if values:
                    ds.add(_element(tag, _VRS[tag], values))

    def _add_header(self, ds: Dataset, pks: list[int]) -> None:
        header = _header(self.conn, self.query.level, pks[-1])
        if header is None:
            return
        for tag in self.header_tags:
            if tag in header:
                try:
                    ds.add(header[tag])  # converted with the header's character set
                except Exception:  # noqa: S112 - an undecodable element matches nothing
                    continue


def _matches(
    conn: sqlite3.Connection, query: Query, *, case_insensitive_names: bool
) -> Generator[tuple[list[int], Dataset], None, None]:
    """The primary keys and candidate of every matching entity, read in chunks."""
    register_functions(conn)
    select = select_entities(query, case_insensitive_names=case_insensitive_names)
    candidates = _Candidates(conn, query, select)
    # Universal keys match every entity (C.2.2.2.3): test only the others, per candidate.
    keys = Dataset()
    for key in query.identifier:
        if not is_universal(key):
            keys.add(key)
    cursor = conn.execute(select.sql, select.params)
    try:
        while rows := cursor.fetchmany(_CHUNK):
            for row in rows:
                candidate = candidates.build(row)
                if match_identifier(
                    keys,
                    candidate,
                    case_insensitive_names=case_insensitive_names,
                    combined_datetime=query.combined_datetime,
                ):
                    yield [int(pk) for pk in row[: select.pks]], candidate
    finally:
        cursor.close()


def resolve(
    conn: sqlite3.Connection,
    query: Query,
    *,
    limit: int = 0,
    case_insensitive_names: bool = False,
) -> Iterator[Dataset]:
    """Yield the C-FIND response Identifier of each matching entity, as it is read.

    Parameters
    ----------
    conn : sqlite3.Connection
        A read connection to the catalog.
    query : Query
        From :func:`xvactor.query.model.parse_identifier`.
    limit : int, optional
        At most this many responses; 0 means no limit.
    case_insensitive_names : bool, optional
        Match PN keys regardless of case (PS3.4 C.2.2.2.1).

    Raises
    ------
    ResultLimitExceeded
        After ``limit`` responses, when one more entity matches (0xA700).
    """
    # closing(): an early stop (C-CANCEL, a limit) closes the cursor before the caller
    # closes the connection, not whenever the inner generator is collected.
    with closing(_matches(conn, query, case_insensitive_names=case_insensitive_names)) as found:
        for count, (_, candidate) in enumerate(found):
            if limit and count >= limit:
                raise ResultLimitExceeded(f"Result cut at {limit} matches: narrow the query")
            yield build_response(
                query.identifier,
                candidate,
                character_set=query.character_set or _DEFAULT_CHARACTER_SET,
                case_insensitive_names=case_insensitive_names,
                combined_datetime=query.combined_datetime,
            )


def resolve_instances(conn: sqlite3.Connection, query: Query) -> Iterator[StoredLocation]:
    """Yield every instance below the entities a C-MOVE/C-GET Identifier selects.

    PS3.4 C.4.2.2.1 / C.4.3.2.1: the Identifier names entities at its Query/Retrieve
    Level (parse it with ``retrieve=True``); their instances are the sub-operations.
    """
    with closing(_matches(conn, query, case_insensitive_names=False)) as found:
        for pks, _ in found:
            for row in conn.execute(_INSTANCES_BELOW[query.level], (pks[-1],)):
                yield StoredLocation(*(str(value) for value in row))
