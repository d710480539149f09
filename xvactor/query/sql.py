"""The indexed part of a query as SQL over the catalog tables (xvactor.catalog.sqlite).

Every condition built here selects a *superset* of the entities PS3.4 C.2.2.2 matching
selects: the resolver re-checks each row with :func:`xvactor.query.matching.
match_identifier`, which decides.  So the SQL may be loose where exactness would cost
an index or depend on a subtlety of the matching rules, and it is:

* UI single value / list of UIDs -> ``=`` / ``IN`` (exact);
* DA single value -> ``=``; DA range -> ``>=`` / ``<=`` on the 8-digit text;
* TM single value and range -> bounds on the hour (partial times compare padded);
* PN -> ``GLOB 'key*'`` (wild cards translated, a trailing ``*`` for the trailing
  component delimiters ``^`` a stored name may carry); case-insensitive PN matching uses
  ``xv_casefold(column) GLOB`` with Python's own ``str.casefold`` (SQLite's ``LIKE``
  folds ASCII only, so ``müller*`` would miss ``Müller``);
* other text (CS, LO, SH) -> ``=`` or ``GLOB``, plus, for LO and SH (whose stored values
  keep leading spaces), any value that starts with a space;
* IS and everything not in a column -> nothing here, Python decides;
* Modalities in Study (0008,0061) at the study level -> ``EXISTS`` over the series.

GLOB is case sensitive, matches one character per ``?`` and uses the column indexes for a
literal prefix, like PS3.4 wild card matching.  The indexed text columns hold attributes
of VM 1 (PS3.6), so they are compared as one value each.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

from pydicom.dataelem import DataElement

from xvactor.query.matching import WILDCARD_VRS, element_values, is_universal
from xvactor.query.model import Level, Query

__all__ = [
    "COLUMNS",
    "MODALITIES_IN_STUDY",
    "Column",
    "Select",
    "register_functions",
    "select_entities",
]

MODALITIES_IN_STUDY = 0x00080061


@dataclass(frozen=True)
class Column:
    """One indexed attribute: its table level, qualified column name and VR."""

    level: Level
    name: str
    vr: str


_P, _ST, _SE, _I = Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE
#: Tag -> column, for every key the catalog keeps as a column (records.py).
COLUMNS: dict[int, Column] = {
    0x00100020: Column(_P, "p.patient_id", "LO"),
    0x00100010: Column(_P, "p.patient_name", "PN"),
    0x00100030: Column(_P, "p.patient_birth_date", "DA"),
    0x00100040: Column(_P, "p.patient_sex", "CS"),
    0x0020000D: Column(_ST, "st.study_instance_uid", "UI"),
    0x00080020: Column(_ST, "st.study_date", "DA"),
    0x00080030: Column(_ST, "st.study_time", "TM"),
    0x00080050: Column(_ST, "st.accession_number", "SH"),
    0x00200010: Column(_ST, "st.study_id", "SH"),
    0x00080090: Column(_ST, "st.referring_physician_name", "PN"),
    0x00081030: Column(_ST, "st.study_description", "LO"),
    0x0020000E: Column(_SE, "se.series_instance_uid", "UI"),
    0x00080060: Column(_SE, "se.modality", "CS"),
    0x00200011: Column(_SE, "se.series_number", "IS"),
    0x0008103E: Column(_SE, "se.series_description", "LO"),
    0x00080018: Column(_I, "i.sop_instance_uid", "UI"),
    0x00080016: Column(_I, "i.sop_class_uid", "UI"),
    0x00200013: Column(_I, "i.instance_number", "IS"),
}

_FROM = {
    _P: "patients p",
    _ST: "studies st JOIN patients p ON p.patient_pk = st.patient_pk",
    _SE: (
        "series se JOIN studies st ON st.study_pk = se.study_pk"
        " JOIN patients p ON p.patient_pk = st.patient_pk"
    ),
    _I: (
        "instances i JOIN series se ON se.series_pk = i.series_pk"
        " JOIN studies st ON st.study_pk = se.study_pk"
        " JOIN patients p ON p.patient_pk = st.patient_pk"
    ),
}
_PKS = ("p.patient_pk", "st.study_pk", "se.series_pk", "i.instance_pk")
_RANGE = re.compile(r"(?P<lo>[0-9.]*)-(?P<hi>[0-9.]*)")


@dataclass(frozen=True)
class Select:
    """A statement selecting the candidate entities of a query level.

    Each row holds the primary keys of the level and the levels above (``pks``, from the
    top), then the values of ``columns`` (tags) in that order.
    """

    sql: str
    params: tuple[object, ...]
    pks: int
    columns: tuple[int, ...]


def register_functions(conn: sqlite3.Connection) -> None:
    """Add ``xv_casefold(text)`` (Python's ``str.casefold``) to ``conn``."""
    conn.create_function("xv_casefold", 1, _casefold, deterministic=True)


def _casefold(value: str | None) -> str | None:
    return value.casefold() if isinstance(value, str) else value


def _glob(value: str, *, wildcards: bool) -> str:
    """A GLOB pattern for ``value``; ``*`` and ``?`` stay wild only if ``wildcards``."""
    out = []
    for ch in value:
        if ch in "*?":
            out.append(ch if wildcards else f"[{ch}]")
        elif ch == "[":
            out.append("[[]")
        else:
            out.append(ch)
    return "".join(out)


def _text_condition(
    column: Column, value: str, *, case_insensitive_names: bool
) -> tuple[str, list[object]]:
    wild = column.vr in WILDCARD_VRS and ("*" in value or "?" in value)
    if column.vr == "PN":
        if case_insensitive_names:
            pattern = _glob(value.casefold(), wildcards=True) + "*"
            return f"xv_casefold({column.name}) GLOB ?", [pattern]
        return f"{column.name} GLOB ?", [_glob(value, wildcards=True) + "*"]
    params: list[object] = [_glob(value, wildcards=True) if wild else value]
    sql = f"{column.name} GLOB ?" if wild else f"{column.name} = ?"
    if column.vr in ("LO", "SH"):  # stored with leading spaces, which matching ignores
        return f"({sql} OR {column.name} GLOB ' *')", params
    return sql, params


def _date_time_condition(column: Column, value: str) -> tuple[str, list[object]] | None:
    # Bounds at the precision the column compares exactly: the whole date, or the hour.
    digits = 8 if column.vr == "DA" else 2
    match = _RANGE.fullmatch(value)
    if match is None:
        if column.vr == "DA":
            return f"{column.name} = ?", [value]
        return f"{column.name} GLOB ?", [value[:digits] + "*"]
    lo, hi = match.group("lo"), match.group("hi")
    clauses, params = [], []
    if lo:
        clauses.append(f"{column.name} >= ?")
        params.append(lo[:digits])
    if hi:
        clauses.append(f"{column.name} <= ?")
        params.append(hi[:digits] + "~")  # "~" sorts after digits and "."
    if not clauses:
        return None
    return " AND ".join(clauses), params


def _key_condition(
    column: Column, key: DataElement, *, case_insensitive_names: bool
) -> tuple[str, list[object]] | None:
    values = element_values(key)
    if column.vr == "UI":
        return f"{column.name} IN ({', '.join('?' * len(values))})", list(values)
    if column.vr == "IS":
        return None
    alternatives: list[str] = []
    params: list[object] = []
    for value in values:
        if column.vr in ("DA", "TM"):
            built = _date_time_condition(column, value)
        else:
            built = _text_condition(column, value, case_insensitive_names=case_insensitive_names)
        if built is None:
            return None  # one alternative unrestricted: the whole key is
        alternatives.append(built[0])
        params.extend(built[1])
    return "(" + " OR ".join(alternatives) + ")", params


def _modalities_condition(key: DataElement) -> tuple[str, list[object]]:
    modality = Column(_SE, "x.modality", "CS")
    alternatives, params = [], []
    for value in element_values(key):
        sql, more = _text_condition(modality, value, case_insensitive_names=False)
        alternatives.append(sql)
        params.extend(more)
    where = " OR ".join(alternatives)
    sql = f"EXISTS (SELECT 1 FROM series x WHERE x.study_pk = st.study_pk AND ({where}))"  # noqa: S608 - fixed fragments, values bound
    return sql, params


def select_entities(query: Query, *, case_insensitive_names: bool = False) -> Select:
    """The statement selecting the candidate entities of ``query.level``.

    Parameters
    ----------
    query : Query
        The checked Identifier.
    case_insensitive_names : bool, optional
        Pre-filter PN keys regardless of case (needs :func:`register_functions`).
    """
    level = query.level
    columns = tuple(tag for tag, column in COLUMNS.items() if column.level <= level)
    where: list[str] = []
    params: list[object] = []
    pair_times = _combined_times(query) if query.combined_datetime else set()
    for key in query.identifier:
        if is_universal(key) or key.tag in pair_times:
            continue
        column = COLUMNS.get(key.tag)
        built = None
        if column is not None and column.level <= level and column.vr == key.VR:
            built = _key_condition(column, key, case_insensitive_names=case_insensitive_names)
        elif key.tag == MODALITIES_IN_STUDY and level == _ST:
            built = _modalities_condition(key)
        if built is not None:
            where.append(built[0])
            params.extend(built[1])
    pks = _PKS[: level + 1]
    sql = f"SELECT {', '.join(pks + tuple(COLUMNS[tag].name for tag in columns))}"
    sql += f" FROM {_FROM[level]}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return Select(sql=sql, params=tuple(params), pks=len(pks), columns=columns)


def _combined_times(query: Query) -> set[int]:
    """TM keys that combined date-time matching joins to their DA key (not pushed)."""
    times: set[int] = set()
    for key in query.identifier:
        if key.VR == "TM" and key.keyword.endswith("Time"):
            date = key.keyword[: -len("Time")] + "Date"
            if date in query.identifier:
                times.add(key.tag)
    return times
