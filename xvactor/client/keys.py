"""Query keys as DCMTK users write them, turned into a C-FIND/C-MOVE/C-GET Identifier.

A key is ``PATH[=VALUE]``; ``PATH`` is a chain of elements separated by dots, each a
keyword (``PatientName``) or a tag (``(0010,0010)``, ``0010,0010`` or ``00100010``),
with an item index after a sequence (``ScheduledProcedureStepSequence[0].Modality``, or
``(0040,0100)[0].(0008,0060)`` as ``findscu -k`` takes it).  Without ``=`` the element is
asked for with an empty value (universal matching, PS3.4 C.2.2.2.3); a bare sequence is an
empty sequence (every item returned).  A backslash separates multiple values.

Errors raise :class:`QueryKeyError` with one line naming the key.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping

from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

__all__ = ["QueryKeyError", "identifier_from", "parse_key", "parse_keys"]

_STEP = re.compile(
    r"""^(?:
        \((?P<g1>[0-9A-Fa-f]{4}),(?P<e1>[0-9A-Fa-f]{4})\)   # (gggg,eeee)
      | (?P<g2>[0-9A-Fa-f]{4}),(?P<e2>[0-9A-Fa-f]{4})       # gggg,eeee
      | (?P<hex>[0-9A-Fa-f]{8})                             # ggggeeee
      | (?P<keyword>[A-Za-z][A-Za-z0-9]*)                   # keyword
    )(?:\[(?P<index>\d+)\])?$""",
    re.VERBOSE,
)
# A dot between steps, but not inside "(gggg,eeee)".
_SPLIT = re.compile(r"\.(?![^()]*\))")
_INTS = {"US", "SS", "UL", "SL", "UV", "SV"}
_FLOATS = {"FL", "FD"}


class QueryKeyError(ValueError):
    """A query key that cannot be understood; the message is one line."""


def _tag(step: str, key: str) -> tuple[BaseTag, int | None]:
    match = _STEP.match(step)
    if match is None:
        raise QueryKeyError(f"{key!r}: {step!r} is neither a keyword nor a (gggg,eeee) tag")
    index = int(match["index"]) if match["index"] is not None else None
    if match["keyword"]:
        number = tag_for_keyword(match["keyword"])
        if number is None:
            raise QueryKeyError(f"{key!r}: unknown keyword {match['keyword']!r}")
        return Tag(number), index
    text = match["hex"] or f"{match['g1'] or match['g2']}{match['e1'] or match['e2']}"
    tag = Tag(int(text, 16))
    if keyword_for_tag(tag) == "" and tag.element != 0:
        raise QueryKeyError(f"{key!r}: {tag} is not in the DICOM dictionary")
    return tag, index


def _vr(tag: BaseTag) -> str:
    vr = dictionary_VR(tag)
    return vr.split(" or ")[0]  # "US or SS" and the like: the first one


def _value(vr: str, text: str, key: str) -> object:
    if vr == "SQ":
        raise QueryKeyError(f"{key!r}: a sequence takes items ([0].Keyword=...), not a value")
    parts = text.split("\\")
    try:
        if vr in _INTS:
            values: list[object] = [int(part) for part in parts]
        elif vr in _FLOATS:
            values = [float(part) for part in parts]
        else:
            return text if len(parts) == 1 else parts
    except ValueError:
        raise QueryKeyError(f"{key!r}: {text!r} is not a number (VR {vr})") from None
    return values[0] if len(values) == 1 else values


def parse_key(ds: Dataset, key: str) -> None:
    """Add one ``PATH[=VALUE]`` key to ``ds`` (later keys replace earlier ones).

    Raises
    ------
    QueryKeyError
        The key is malformed or names an unknown element.
    """
    path, has_value, text = key.partition("=")
    path = path.strip()
    if not path:
        raise QueryKeyError(f"{key!r}: no element named")
    steps = _SPLIT.split(path)
    target = ds
    for position, step in enumerate(steps):
        tag, index = _tag(step, key)
        vr = _vr(tag)
        last = position == len(steps) - 1
        if index is not None or not last:
            if vr != "SQ":
                raise QueryKeyError(f"{key!r}: {step!r} is not a sequence")
            if tag not in target or not isinstance(target[tag].value, Sequence):
                target.add(DataElement(tag, "SQ", Sequence()))
            items = target[tag].value
            wanted = index if index is not None else 0
            while len(items) <= wanted:
                items.append(Dataset())
            if last:
                if has_value:
                    raise QueryKeyError(f"{key!r}: an item takes keys, not a value")
                return
            target = items[wanted]
            continue
        if vr == "SQ" and not has_value:
            if tag not in target:
                target.add(DataElement(tag, "SQ", Sequence()))
            return
        value = _value(vr, text, key) if has_value and text != "" else None
        target.add(DataElement(tag, vr, value))


def parse_keys(keys: Iterable[str]) -> Dataset:
    """Return the Identifier made of ``keys`` (each ``PATH[=VALUE]``)."""
    ds = Dataset()
    for key in keys:
        parse_key(ds, key)
    return ds


def identifier_from(keys: Dataset | Mapping[str, str] | Iterable[str]) -> Dataset:
    """Return a fresh Identifier from a Dataset (copied), a mapping or ``K=V`` strings.

    A mapping's values may be empty (``{"PatientName": ""}`` asks for the element).
    A Specific Character Set of ISO_IR 192 (UTF-8) is added when a value is not ASCII
    and none was given (PS3.5 Section 6.1.2.3).
    """
    if isinstance(keys, Dataset):
        return copy.deepcopy(keys)
    if isinstance(keys, Mapping):
        ds = parse_keys(f"{path}={value}" for path, value in keys.items())
        text = "".join(str(value) for value in keys.values())
    else:
        items = list(keys)
        ds = parse_keys(items)
        text = "".join(items)
    if not text.isascii() and "SpecificCharacterSet" not in ds:
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds
