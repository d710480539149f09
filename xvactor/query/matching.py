"""C-FIND attribute matching (PS3.4 Section C.2.2.2) and the response Identifier it implies.

Pure functions over :class:`pydicom.dataset.Dataset` values; no I/O.  The matching types:

* Single Value Matching (C.2.2.2.1): exact, case sensitive; Person Name (PN) optionally
  case insensitive (``case_insensitive_names``), which C.2.2.2.1 permits and this module
  leaves off by default.  Padding is not significant (PS3.5 Section 6.2): leading and
  trailing spaces for AE, CS, DS, IS, LO, SH, UC, trailing ones for the other text VRs,
  trailing empty PN components (``Doe^John^^`` is ``Doe^John``).  IS and DS compare as
  numbers when both parse (the standard leaves it to the implementation, CP-2305).
* List of UID Matching (C.2.2.2.2): a UI key with several values matches any of them.
* Universal Matching (C.2.2.2.3): a zero-length key matches everything, an entity lacking
  the attribute included; so does ``*`` where wild cards apply (C.2.2.2.4 Note 1).
* Wild Card Matching (C.2.2.2.4): ``*`` and ``?`` for AE, CS, LO, LT, PN, SH, ST, UC, UR
  and UT only; in every other VR they are literal characters.
* Range Matching (C.2.2.2.5): ``a-b``, ``-b``, ``a-`` for DA, TM and DT.  A lower bound of
  reduced precision is padded with the earliest value (``10`` is 10:00:00.000000), an upper
  bound with the latest (``10`` is 10:59:59.999999), so a range includes its end points at
  their stated precision.  DT offsets from UTC (``&ZZXX``) are applied when present.
  An entity's DA value takes part only as a full 8-digit date (no ACR-NEMA dots).
  Combined date and time matching (C.2.2.2.5.4) applies only when the association
  negotiated it: ``combined_datetime=True`` makes a DA key ``xxxDate`` and the TM key
  ``xxxTime`` of the same Identifier that both use the same form of range one DT range.
* Sequence Matching (C.2.2.2.6): the key's single Item matches when at least one Item of
  the entity's sequence matches all its Item keys (recursively); a key without Items, or
  whose Item holds only universal keys, is universal.
* Multiple values: an entity attribute with several values matches when any of them
  matches (C.2.2.3).  A non-UI key with several values is an alternative list (any value);
  PS3.4 C.2.2.2.8 leaves those semantics undefined without Extended Negotiation of Multiple
  Value Matching, which this node does not offer.

An entity whose attribute is absent or zero length matches no key but a universal one
(PS3.4 K.2.2.1.1.1 states it for worklists; Q/R follows the same rule here).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from pydicom.charset import python_encoding
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

__all__ = [
    "IGNORED_TAGS",
    "WILDCARD_VRS",
    "build_response",
    "element_values",
    "is_universal",
    "match_element",
    "match_identifier",
    "response_character_set",
]

#: VRs for which ``*`` and ``?`` are wild cards (PS3.4 C.2.2.2.4).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
#: Identifier elements that are not matching keys: Specific Character Set (0008,0005),
#: Query/Retrieve Level (0008,0052) and Timezone Offset From UTC (0008,0201).
IGNORED_TAGS = frozenset({0x00080005, 0x00080052, 0x00080201})
_STRIP_BOTH = frozenset({"AE", "CS", "DS", "IS", "LO", "SH", "UC", "DA", "TM", "DT", "UI"})
_RANGE_VRS = frozenset({"DA", "TM", "DT"})
_DATE = r"\d{4}(?:\d{2}(?:\d{2})?)?"
_TIME = r"\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?"
_DT_BODY = r"\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?)?)?"
_DT = _DT_BODY + r"(?:[+-]\d{4})?"
_RANGE = {
    vr: re.compile(rf"(?P<lo>{pattern})?-(?P<hi>{pattern})?")
    for vr, pattern in (("DA", _DATE), ("TM", _TIME), ("DT", _DT))
}
# Earliest and latest fill for each missing digit of YYYYMMDDHHMMSSFFFFFF.
_DT_MIN = "00000101000000000000"
_DT_MAX = "99991231235959999999"


def _is_ignored(tag: int) -> bool:
    group = tag >> 16
    return tag in IGNORED_TAGS or group in (0x0000, 0x0002)


def _element(ds: Dataset, tag: int) -> DataElement | None:
    """The converted element ``tag`` of ``ds``, or ``None``."""
    elem = ds.get(tag)
    return elem if isinstance(elem, DataElement) else None


def _raw_values(elem: DataElement) -> list[str]:
    """The element's values as text, empty ones dropped."""
    value = elem.value
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        items: Iterable[object] = bytes(value).decode("latin_1").split("\\")
    elif isinstance(value, MultiValue | list | tuple):
        items = value
    else:
        items = [value]
    out = []
    for item in items:
        text = "" if item is None else str(item)
        text = text.strip(" \x00") if elem.VR in _STRIP_BOTH else text.rstrip(" \x00")
        if elem.VR == "PN":
            text = _normalize_pn(text)
        if text:
            out.append(text)
    return out


def _normalize_pn(text: str) -> str:
    """Drop trailing empty components and groups (PS3.5 Section 6.2.1).

    Only at the end of the value, so the stored text always starts with the normalized
    one (the SQL pre-filter relies on it).
    """
    return text.rstrip("^= ")


def element_values(elem: DataElement) -> list[str]:
    """The values of ``elem`` as matching sees them: text, padding removed, empty dropped."""
    return _raw_values(elem)


def is_universal(elem: DataElement) -> bool:
    """True when ``elem`` as a key matches every entity (C.2.2.2.3, C.2.2.2.6)."""
    if elem.VR == "SQ":
        items = elem.value or []
        if not items:
            return True
        item = items[0]
        return all(is_universal(sub) for sub in item if not _is_ignored(sub.tag))
    values = _raw_values(elem)
    if not values:
        return True
    return elem.VR in WILDCARD_VRS and any(set(value) == {"*"} for value in values)


@lru_cache(maxsize=1024)
def _wildcard(pattern: str) -> re.Pattern[str]:
    parts = (".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern)
    return re.compile("".join(parts), re.DOTALL)


def _pad(digits: str, fill: str) -> str:
    return digits + fill[len(digits) :]


def _dt_digits(value: str, fill: str) -> str | None:
    """A DT value as 20 comparable digits (YYYYMMDDHHMMSSFFFFFF), its offset applied."""
    match = re.fullmatch(rf"({_DT_BODY})([+-]\d{{4}})?", value)
    if match is None:
        return None
    digits = _pad(match.group(1).replace(".", ""), fill)
    offset = match.group(2)
    return _apply_offset(digits, offset) if offset else digits


def _apply_offset(digits: str, offset: str) -> str:
    """Shift ``digits`` (local time at ``offset`` from UTC) to UTC."""
    try:
        moment = datetime.strptime(digits[:14], "%Y%m%d%H%M%S")
    except ValueError:
        return digits
    sign = -1 if offset[0] == "+" else 1
    moment += sign * timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
    return moment.strftime("%Y%m%d%H%M%S") + digits[14:]


def _bound(vr: str, value: str, *, upper: bool) -> str | None:
    """A range end point as comparable digits, reduced precision padded (module doc)."""
    fill = _DT_MAX if upper else _DT_MIN
    if vr == "DA":
        return _pad(value, fill[:8]) if re.fullmatch(_DATE, value) else None
    if vr == "TM":
        time = value.replace(".", "")
        return _pad(time, fill[8:]) if re.fullmatch(_TIME, value) else None
    return _dt_digits(value, fill)


def _instant(vr: str, value: str) -> str | None:
    """An entity's DA (8 digits only), TM or DT value as comparable digits."""
    if vr == "DA":
        return value if re.fullmatch(r"\d{8}", value) else None
    return _bound(vr, value, upper=False)


def _match_range(vr: str, key: str, candidates: list[str]) -> bool:
    match = _RANGE[vr].fullmatch(key)
    if match is None or (match.group("lo") is None and match.group("hi") is None):
        return False
    lo, hi = match.group("lo"), match.group("hi")
    low = _bound(vr, lo, upper=False) if lo else None
    high = _bound(vr, hi, upper=True) if hi else None
    for candidate in candidates:
        value = _instant(vr, candidate)
        if value is None:
            continue
        if (low is None or value >= low) and (high is None or value <= high):
            return True
    return False


def _same_instant(vr: str, key: str, candidate: str) -> bool:
    if vr == "DA":
        return key == candidate
    value = _instant(vr, key)
    return value is not None and value == _instant(vr, candidate)


def _number_equal(key: str, candidate: str) -> bool:
    try:
        return Decimal(key) == Decimal(candidate)
    except InvalidOperation:
        return key == candidate


def _match_value(vr: str, key: str, candidates: list[str], fold: bool) -> bool:
    if vr in _RANGE_VRS and "-" in key and not (vr == "DT" and re.fullmatch(_DT, key)):
        return _match_range(vr, key, candidates)
    if fold:
        key = key.casefold()
        candidates = [candidate.casefold() for candidate in candidates]
    if vr in WILDCARD_VRS and ("*" in key or "?" in key):
        pattern = _wildcard(key)
        return any(pattern.fullmatch(candidate) for candidate in candidates)
    if vr in _RANGE_VRS:
        return any(_same_instant(vr, key, candidate) for candidate in candidates)
    if vr in ("IS", "DS"):
        return any(_number_equal(key, candidate) for candidate in candidates)
    return key in candidates


def match_element(
    key: DataElement,
    candidate: DataElement | None,
    *,
    case_insensitive_names: bool = False,
    combined_datetime: bool = False,
) -> bool:
    """Match one key element against the entity's element (``None`` when absent).

    Parameters
    ----------
    key : pydicom.dataelem.DataElement
        The key from the request Identifier.
    candidate : pydicom.dataelem.DataElement or None
        The same attribute of the entity.
    case_insensitive_names : bool, optional
        Match PN values regardless of case (PS3.4 C.2.2.2.1 allows it; default off).
    combined_datetime : bool, optional
        Inside sequence Items, match date and time pairs together (C.2.2.2.5.1).
    """
    if is_universal(key):
        return True
    if candidate is None:
        return False
    if key.VR == "SQ":
        if candidate.VR != "SQ":
            return False
        item = key.value[0]
        return any(
            match_identifier(
                item,
                cand,
                case_insensitive_names=case_insensitive_names,
                combined_datetime=combined_datetime,
            )
            for cand in candidate.value or []
        )
    values = _raw_values(candidate)
    if not values:
        return False
    fold = case_insensitive_names and key.VR == "PN"
    return any(_match_value(key.VR, k, values, fold) for k in _raw_values(key))


def _range_form(value: str, vr: str) -> tuple[str, str, str] | None:
    match = _RANGE[vr].fullmatch(value)
    if match is None:
        return None
    lo, hi = match.group("lo") or "", match.group("hi") or ""
    form = ("L" if lo else "") + "-" + ("H" if hi else "")
    return (form, lo, hi) if form != "-" else None


def _combined_pairs(keys: Dataset) -> dict[int, int]:
    """Date tag -> time tag of pairs that combined matching joins (C.2.2.2.5.4)."""
    pairs: dict[int, int] = {}
    for elem in keys:
        if elem.VR != "DA" or not elem.keyword.endswith("Date"):
            continue
        time_keyword = elem.keyword[: -len("Date")] + "Time"
        if time_keyword not in keys:
            continue
        time_de = keys[time_keyword]
        dates, times = _raw_values(elem), _raw_values(time_de)
        if len(dates) != 1 or len(times) != 1 or time_de.VR != "TM":
            continue
        date_form, time_form = _range_form(dates[0], "DA"), _range_form(times[0], "TM")
        if date_form and time_form and date_form[0] == time_form[0]:
            pairs[elem.tag] = time_de.tag
    return pairs


def _match_combined(date_key: DataElement, time_key: DataElement, candidate: Dataset) -> bool:
    date_form = _range_form(_raw_values(date_key)[0], "DA")
    time_form = _range_form(_raw_values(time_key)[0], "TM")
    assert date_form is not None and time_form is not None  # checked by _combined_pairs
    _, date_lo, date_hi = date_form
    _, time_lo, time_hi = time_form
    low = high = None
    if date_lo:  # the forms are equal: time_lo is there too
        low = f"{_bound('DA', date_lo, upper=False)}{_bound('TM', time_lo, upper=False)}"
    if date_hi:
        high = f"{_bound('DA', date_hi, upper=True)}{_bound('TM', time_hi, upper=True)}"
    date_elem = _element(candidate, date_key.tag)
    time_elem = _element(candidate, time_key.tag)
    dates = _raw_values(date_elem) if date_elem is not None else []
    times = _raw_values(time_elem) if time_elem is not None else []
    for date in dates:
        day = _instant("DA", date)
        if day is None:
            continue
        for time in times or ["00"]:
            instant = f"{day}{_instant('TM', time) or _DT_MIN[8:]}"
            if (low is None or instant >= low) and (high is None or instant <= high):
                return True
    return False


def match_identifier(
    keys: Dataset,
    candidate: Dataset,
    *,
    case_insensitive_names: bool = False,
    combined_datetime: bool = False,
) -> bool:
    """True when every non-universal key of ``keys`` matches ``candidate`` (C.2.2.2).

    Query/Retrieve Level, Specific Character Set, Timezone Offset From UTC and group
    0x0000/0x0002 elements are not keys.  Sequences match recursively (C.2.2.2.6).

    Parameters
    ----------
    keys : pydicom.dataset.Dataset
        The request Identifier (or a sequence Item of it).
    candidate : pydicom.dataset.Dataset
        The entity's attributes.
    case_insensitive_names : bool, optional
        PN values match regardless of case; off by default as PS3.4 C.2.2.2.1 intends.
    combined_datetime : bool, optional
        Extended Negotiation of combined date and time matching succeeded (C.2.2.2.5.4).
    """
    pairs = _combined_pairs(keys) if combined_datetime else {}
    joined = set(pairs.values())
    for key in keys:
        if _is_ignored(key.tag) or key.tag in joined:
            continue
        if key.tag in pairs:
            if not _match_combined(key, keys[pairs[key.tag]], candidate):
                return False
            continue
        cand = _element(candidate, key.tag)
        if not match_element(
            key,
            cand,
            case_insensitive_names=case_insensitive_names,
            combined_datetime=combined_datetime,
        ):
            return False
    return True


def _encodable(value: str, character_set: str) -> bool:
    terms = [term.strip() for term in character_set.split("\\")]
    if len(terms) > 1:  # ISO 2022 code extensions: pydicom switches sets per value
        return True
    codec = python_encoding.get(terms[0] or "ISO_IR 6")
    if codec is None:
        return False
    try:
        value.encode(codec)
    except UnicodeEncodeError:
        return False
    return True


def _texts(ds: Dataset) -> Iterable[str]:
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value or []:
                yield from _texts(item)
        elif elem.VR in WILDCARD_VRS and elem.value is not None:
            yield from (str(v) for v in _raw_values(elem))


def response_character_set(ds: Dataset, character_set: str) -> str:
    """The Specific Character Set the text of ``ds`` needs (PS3.3 C.12.1.1.2).

    ``""`` (ISO-IR 6, no element) when every value is ASCII; ``character_set`` when it
    encodes every value; otherwise ``"ISO_IR 192"`` (UTF-8), which encodes anything.
    """
    texts = list(_texts(ds))
    if all(text.isascii() for text in texts):
        return ""
    if character_set and all(_encodable(text, character_set) for text in texts):
        return character_set
    return "ISO_IR 192"


def _respond(keys: Dataset, candidate: Dataset, options: dict[str, bool]) -> Dataset:
    out = Dataset()
    for key in keys:
        if key.tag >> 16 in (0x0000, 0x0002) or key.tag == 0x00080005:
            continue
        if key.tag == 0x00080052:
            out.add(DataElement(key.tag, key.VR, key.value))
            continue
        cand = _element(candidate, key.tag)
        if key.VR == "SQ":
            out.add(DataElement(key.tag, "SQ", _respond_sequence(key, cand, options)))
        elif cand is None or cand.VR == "SQ":
            out.add(DataElement(key.tag, key.VR, None))
        elif cand.VR in ("UN", ""):
            out.add(DataElement(key.tag, key.VR, cand.value))
        else:
            # The candidate is built for this response only: share its converted element
            # rather than convert and validate the value a second time.
            out.add(cand)
    return out


def _respond_sequence(
    key: DataElement, cand: DataElement | None, options: dict[str, bool]
) -> Sequence:
    if cand is None or cand.VR != "SQ" or not cand.value:
        return Sequence([])
    items = key.value or []
    if not items or len(items[0]) == 0:
        return Sequence([_copy_item(item) for item in cand.value])
    item_keys = items[0]
    return Sequence(
        [
            _respond(item_keys, item, options)
            for item in cand.value
            if match_identifier(item_keys, item, **options)
        ]
    )


def _copy_item(item: Dataset) -> Dataset:
    out = Dataset()
    for elem in item:
        if elem.VR == "SQ":
            out.add(DataElement(elem.tag, "SQ", Sequence([_copy_item(i) for i in elem.value])))
        else:
            out.add(DataElement(elem.tag, elem.VR, elem.value))
    return out


def build_response(
    keys: Dataset,
    candidate: Dataset,
    *,
    character_set: str,
    case_insensitive_names: bool = False,
    combined_datetime: bool = False,
) -> Dataset:
    """The C-FIND response Identifier for a matching ``candidate`` (PS3.4 C.4.1.2.1).

    Every key of ``keys`` is returned with the entity's value (zero length when the entity
    lacks it); Query/Retrieve Level is echoed; a sequence key returns the matching Items
    reduced to the requested Item keys, or the whole sequence when the key has no Item keys
    (C.2.2.2.6).  Specific Character Set is set per :func:`response_character_set`, with
    ``character_set`` the entity's own (the one its values were decoded from).  The
    matching options are those the match was made with, so that the Items kept in a
    sequence are the ones that matched.
    """
    options = {
        "case_insensitive_names": case_insensitive_names,
        "combined_datetime": combined_datetime,
    }
    out = _respond(keys, candidate, options)
    charset = response_character_set(out, character_set)
    if charset:
        out.SpecificCharacterSet = charset
    return out
