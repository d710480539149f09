"""Modality Worklist C-FIND over the stored items, streamed (PS3.4 Annex K).

A query runs in two steps.  The SQL pre-filter uses the indexed keys of the Identifier
(Patient ID, Patient's Name, Accession Number, Requested Procedure ID and, inside the
Scheduled Procedure Step Sequence, Scheduled Station AE Title, SPS Start Date and Time,
Modality, Scheduled Performing Physician's Name); it is built to let through a superset
of the matches, never to decide.  Each candidate is then matched in full by
:func:`xvactor.query.matching.match_identifier` (PS3.4 C.2.2.2, sequence matching
included) and answered with :func:`xvactor.query.matching.build_response`.

The items are read in pages of ``page_size`` rows (keyset pagination on the SPS start,
then the item id), each page a short read, so responses flow while the catalog is read
and no read transaction stays open while the caller sends them.

SPS Start Date and Time are matched as one date-time range (combined matching, PS3.4
C.2.2.2.5.4) by default: a modality asking for ``20240101-20240102`` / ``0800-1200`` means
a period, and DCMTK's ``wlmscpfs`` reads it so too.  ``combined_datetime=False`` matches
them separately (for a caller that ties the choice to Extended Negotiation).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from xvactor.query.matching import (
    build_response,
    is_universal,
    match_identifier,
)
from xvactor.query.resolver import ResultLimitExceeded
from xvactor.worklist.items import SPS_SEQUENCE, decode_item, time_bounds
from xvactor.worklist.store import fold_name

__all__ = ["Prefilter", "find_worklist", "prefilter"]

_TOP_COLUMNS = (
    (0x00100020, "patient_id"),
    (0x00080050, "accession_number"),
    (0x00401001, "requested_procedure_id"),
)
_PATIENT_NAME = 0x00100010
_STATION = 0x00400001
_DATE = 0x00400002
_TIME = 0x00400003
_MODALITY = 0x00080060
_PHYSICIAN = 0x00400006
_STATION_EQUAL = "item_id IN (SELECT item_id FROM worklist_stations WHERE station_ae_title = ?)"
_STATION_GLOB = "item_id IN (SELECT item_id FROM worklist_stations WHERE station_ae_title GLOB ?)"
_LAST = "\U0010ffff"  # sorts after every character a name holds
_DATE_MIN = "00000101"
_DATE_MAX = "99991231"
_TIME_MIN = "000000000000"
_TIME_MAX = "235959999999"


@dataclass
class Prefilter:
    """A SQL condition on ``worklist_items`` and its parameters."""

    clauses: list[str] = field(default_factory=list)
    params: list[object] = field(default_factory=list)

    @property
    def where(self) -> str:
        """The clauses joined with ``AND`` (``1`` when there are none)."""
        return " AND ".join(self.clauses) or "1"

    def add(self, clause: str, *params: object) -> None:
        """Require ``clause`` too."""
        self.clauses.append(clause)
        self.params.extend(params)


def _single(keys: Dataset, tag: int) -> str | None:
    """The key's one value, padding removed; ``None`` when universal, absent or a list."""
    elem = keys.get(tag)
    if not isinstance(elem, DataElement) or elem.VR == "SQ" or is_universal(elem):
        return None
    value = elem.value
    if isinstance(value, MultiValue | list | tuple):  # several values: any may match
        if len(value) != 1:
            return None
        value = value[0]
    text = value.decode("latin_1") if isinstance(value, bytes) else str(value)
    if "\\" in text:
        return None
    return text.rstrip(" \x00") if elem.VR == "PN" else text.strip(" \x00")


def _glob(text: str) -> str:
    """A DICOM wild card pattern (PS3.4 C.2.2.2.4) as a SQLite GLOB pattern."""
    return text.replace("[", "[[]")


def _text_clause(pre: Prefilter, column: str, text: str) -> None:
    if "*" in text or "?" in text:
        pre.add(f"{column} GLOB ?", _glob(text))
    else:
        pre.add(f"{column} = ?", text)


def _name_clause(pre: Prefilter, column: str, text: str) -> None:
    """Names: the literal start of the first component, case folded, as a range."""
    cut = min((text.find(ch) for ch in "*?^=" if ch in text), default=len(text))
    prefix = fold_name(text[:cut])
    if prefix:
        pre.add(f"{column} >= ? AND {column} < ?", prefix, prefix + _LAST)


def _date_range(text: str) -> tuple[str | None, str | None] | None:
    """A DA key as (lowest, highest) ``YYYYMMDD``; ``None`` when not a date or range."""
    lo, dash, hi = text.replace(".", "").partition("-")
    if not dash:
        return (lo, lo) if len(lo) == 8 and lo.isdigit() else None
    bounds: list[str | None] = []
    for part, fill in ((lo, _DATE_MIN), (hi, _DATE_MAX)):
        if part and (not part.isdigit() or len(part) not in (4, 6, 8)):
            return None
        bounds.append(part + fill[len(part) :] if part else None)
    return bounds[0], bounds[1]


def _time_range(text: str) -> tuple[str, str] | None:
    """A TM key as (earliest, latest) ``HHMMSSFFFFFF``; ``None`` when not a time."""
    lo, dash, hi = text.partition("-")
    if not dash:
        return time_bounds(lo)
    low = time_bounds(lo) if lo else (_TIME_MIN, _TIME_MIN)
    high = time_bounds(hi) if hi else (_TIME_MAX, _TIME_MAX)
    if low is None or high is None:
        return None
    return low[0], high[1]


def _start_clauses(pre: Prefilter, step: Dataset) -> None:
    """SPS Start Date and Time as ranges over ``start_lo``/``start_hi`` (date + time).

    With a date key the condition is the combined date-time range, which holds for a
    match under combined and under separate matching alike; a time key alone is matched
    on the time part.
    """
    date_text, time_text = _single(step, _DATE), _single(step, _TIME)
    dates = _date_range(date_text) if date_text else None
    times = _time_range(time_text) if time_text else None
    if dates is not None:
        date_lo, date_hi = dates
        time_lo, time_hi = times or (_TIME_MIN, _TIME_MAX)
        if date_lo is not None:
            pre.add("start_hi >= ?", date_lo + time_lo)
        if date_hi is not None:
            pre.add("start_lo <= ?", date_hi + time_hi)
    elif times is not None:
        pre.add("substr(start_hi, 9) >= ? AND substr(start_lo, 9) <= ?", *times)


def prefilter(keys: Dataset) -> Prefilter:
    """The SQL pre-filter for an MWL Identifier: a superset of its matches.

    Only single values, wild cards and ranges of the indexed keys are used; anything
    else (lists, malformed values) is left to the full match.  Names are compared case
    folded, which lets through the matches of case sensitive and insensitive matching.
    """
    pre = Prefilter()
    for tag, column in _TOP_COLUMNS:
        if (text := _single(keys, tag)) is not None:
            _text_clause(pre, column, text)
    if (text := _single(keys, _PATIENT_NAME)) is not None:
        _name_clause(pre, "patient_name_fold", text)
    sps = keys.get(SPS_SEQUENCE)
    if not isinstance(sps, DataElement) or sps.VR != "SQ" or len(sps.value or []) != 1:
        return pre
    step = sps.value[0]
    if (text := _single(step, _STATION)) is not None:
        if "*" in text or "?" in text:
            pre.add(_STATION_GLOB, _glob(text))
        else:
            pre.add(_STATION_EQUAL, text)
    if (text := _single(step, _MODALITY)) is not None:
        _text_clause(pre, "modality", text)
    if (text := _single(step, _PHYSICIAN)) is not None:
        _name_clause(pre, "performing_physician_fold", text)
    _start_clauses(pre, step)
    return pre


def find_worklist(
    conn: sqlite3.Connection,
    keys: Dataset,
    *,
    limit: int = 0,
    case_insensitive_names: bool = False,
    combined_datetime: bool = True,
    page_size: int = 64,
) -> Iterator[Dataset]:
    """Stream the C-FIND response Identifiers of the items matching ``keys``.

    Parameters
    ----------
    conn : sqlite3.Connection
        A catalog connection with the worklist tables
        (:func:`xvactor.worklist.store.open_worklist`).
    keys : pydicom.dataset.Dataset
        The request Identifier (PS3.4 K.6.1.2): return keys and matching keys.
    limit : int, optional
        Answer at most this many matches (0: no limit).
    case_insensitive_names : bool, optional
        Match PN keys regardless of case (PS3.4 C.2.2.2.1 permits it; off by default).
    combined_datetime : bool, optional
        Match SPS Start Date and Time as one range (C.2.2.2.5.4); on by default, see the
        module documentation.
    page_size : int, optional
        Items read from the catalog per statement.

    Yields
    ------
    pydicom.dataset.Dataset
        One response Identifier per matching item, in order of SPS start, with its
        Specific Character Set (PS3.4 C.4.1.2.1).

    Raises
    ------
    xvactor.query.resolver.ResultLimitExceeded
        After ``limit`` responses, when a further item matches: status 0xA700 (Refused:
        Out of Resources) with ErrorComment ``Result cut at N matches: narrow the query``,
        as the Q/R resolver ends (a cut list is never silent).
    """
    pre = prefilter(keys)
    # Only fixed clauses of this module are joined in; every value is a parameter.
    sql = (
        "SELECT item_id, start_lo, specific_character_set, dataset FROM worklist_items "  # noqa: S608
        f"WHERE {pre.where} AND (start_lo, item_id) > (?, ?) "
        "ORDER BY start_lo, item_id LIMIT ?"
    )
    options = {
        "case_insensitive_names": case_insensitive_names,
        "combined_datetime": combined_datetime,
    }
    after: tuple[str, int] = ("", 0)
    matched = 0
    while True:
        rows = conn.execute(sql, (*pre.params, *after, page_size)).fetchall()
        for _item_id, _start, charset, data in rows:
            candidate = decode_item(data)
            # Sequence matching keeps the SPS Items that match, in the response too.
            if not match_identifier(keys, candidate, **options):
                continue
            matched += 1
            if limit and matched > limit:
                raise ResultLimitExceeded(f"Result cut at {limit} matches: narrow the query")
            yield build_response(keys, candidate, character_set=charset, **options)
        if len(rows) < page_size:
            return
        after = (str(rows[-1][1]), int(rows[-1][0]))
