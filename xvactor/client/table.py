"""Query results for people (a text table) and for programs (the DICOM JSON model).

The table has one column per element asked for in the request Identifier, in request
order; elements inside a sequence appear as ``Sequence[0].Keyword`` (the first item).
The JSON form is PS3.18 Annex F, one object per match.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag

__all__ = ["columns_of", "json_of", "render_table"]

#: Elements of a request that are not results.
_NOT_SHOWN = {"QueryRetrieveLevel", "SpecificCharacterSet"}

Column = tuple[str, tuple[tuple[BaseTag, bool], ...]]
"""A title and the path of (tag, is-sequence) steps to the value."""


def _walk(ds: Dataset, prefix: str, steps: tuple[tuple[BaseTag, bool], ...]) -> list[Column]:
    columns: list[Column] = []
    for element in ds:
        name = element.keyword or str(element.tag)
        if not prefix and name in _NOT_SHOWN:
            continue
        title = f"{prefix}{name}"
        if element.VR == "SQ":
            items = element.value
            if len(items) > 0 and len(items[0]) > 0:
                columns += _walk(items[0], f"{title}[0].", (*steps, (element.tag, True)))
                continue
        columns.append((title, (*steps, (element.tag, False))))
    return columns


def columns_of(identifier: Dataset) -> list[Column]:
    """Return the table's columns for a request Identifier."""
    return _walk(identifier, "", ())


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, DicomSequence):
        return f"<{len(value)} item{'s' if len(value) != 1 else ''}>"
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(_text(v) for v in value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return str(value)


def cell(ds: Dataset, steps: Sequence[tuple[BaseTag, bool]]) -> str:
    """Return the text of the value at ``steps`` in ``ds`` ("" if absent)."""
    current: Dataset = ds
    for tag, is_sequence in steps:
        if tag not in current:
            return ""
        element = current[tag]
        if not is_sequence:
            return _text(element.value)
        items = element.value
        if not items:
            return ""
        current = items[0]
    return ""


def render_table(columns: Sequence[Column], matches: Iterable[Dataset]) -> str:
    """Return the matches as a text table, one row per match."""
    rows = [[cell(ds, steps) for _, steps in columns] for ds in matches]
    titles = [title for title, _ in columns]
    widths = [max([len(t), *(len(row[i]) for row in rows)]) for i, t in enumerate(titles)]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def json_of(ds: Dataset) -> dict[str, Any]:
    """Return ``ds`` in the DICOM JSON model (PS3.18 Annex F)."""
    return ds.to_json_dict(bulk_data_threshold=1 << 30)
