"""Fresh instances from encoded templates: UIDs patched in place, nothing decoded per send.

A template is a data set encoded once (:mod:`xvactor.bench.workload`) whose Study,
Series and SOP Instance UIDs are placeholders of fixed length.  Every UID the bench makes
has the length of its placeholder, so a new instance is a copy of the template's bytes
with those values overwritten: no pydicom, no re-encoding, on the hot path.

UIDs (PS3.5 Section 9.1: digits and dots, no leading zero in a component, at most 64
characters) are built under pydicom's UID root from a random run number::

    study     ROOT.RUN.(100 + original study index)              42 characters
    series    ROOT.RUN.(1000 + association).(100 + series index) 47
    instance  ROOT.RUN.(1000 + association).(10**12 + sequence)  57

so instances are unique across runs, associations and sends.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

__all__ = [
    "INSTANCE_PLACEHOLDER",
    "SERIES_PLACEHOLDER",
    "STUDY_PLACEHOLDER",
    "UID_ROOT",
    "InstanceStream",
    "Template",
    "instance_uid",
    "new_run_number",
    "series_uid",
    "study_uid",
]

UID_ROOT = "1.2.826.0.1.3680043.8.498."
"""pydicom's UID root, which ``pydicom.uid.generate_uid`` uses too."""

_RUN_DIGITS = 12
STUDY_PLACEHOLDER = UID_ROOT + "3" * 16
SERIES_PLACEHOLDER = UID_ROOT + "2" * 21
INSTANCE_PLACEHOLDER = UID_ROOT + "1" * 31
_MAX_ASSOCIATIONS = 8999
_MAX_INDEX = 899


def new_run_number() -> int:
    """A random 12-digit run number (first digit non-zero)."""
    return 10**11 + secrets.randbelow(9 * 10**11)


def study_uid(run: int, study: int) -> str:
    """The Study Instance UID replacing original study number ``study`` in run ``run``."""
    if not 0 <= study <= _MAX_INDEX:
        raise ValueError(f"at most {_MAX_INDEX + 1} studies per workload")
    return f"{UID_ROOT}{run}.{100 + study}"


def series_uid(run: int, association: int, series: int) -> str:
    """The Series Instance UID of original series ``series`` sent on ``association``."""
    if not 0 <= association <= _MAX_ASSOCIATIONS or not 0 <= series <= _MAX_INDEX:
        raise ValueError("association or series number out of range")
    return f"{UID_ROOT}{run}.{1000 + association}.{100 + series}"


def instance_uid(run: int, association: int, sequence: int) -> str:
    """The SOP Instance UID of the ``sequence``-th send on ``association``."""
    if not 0 <= association <= _MAX_ASSOCIATIONS or not 0 <= sequence < 9 * 10**12:
        raise ValueError("association or sequence number out of range")
    return f"{UID_ROOT}{run}.{1000 + association}.{10**12 + sequence}"


@dataclass(frozen=True)
class Template:
    """An encoded data set and where its UID placeholders are.

    Attributes
    ----------
    sop_class_uid, transfer_syntax_uid : str
        What the data set is and how it is encoded.
    data : bytes
        The data set (no File Meta Information), Study Instance UID already set.
    series_offset, instance_offset : int
        Byte offsets of the Series and SOP Instance UID placeholder values in ``data``.
    series : int
        The original series number the Series Instance UID is derived from.
    """

    sop_class_uid: str
    transfer_syntax_uid: str
    data: bytes
    series_offset: int
    instance_offset: int
    series: int = 0


class InstanceStream:
    """The instances one association sends: its own copy of each template, patched.

    Parameters
    ----------
    templates : sequence of Template
        Sent in turn, round robin.
    run, association : int
        Make the UIDs unique (:func:`instance_uid`).
    """

    def __init__(self, templates: list[Template], run: int, association: int) -> None:
        if not templates:
            raise ValueError("no templates")
        self._run = run
        self._association = association
        self._templates = templates
        self._buffers: list[bytearray] = []
        for template in templates:
            buffer = bytearray(template.data)
            series = series_uid(run, association, template.series).encode("ascii")
            buffer[template.series_offset : template.series_offset + len(series)] = series
            self._buffers.append(buffer)
        self._sequence = 0

    @property
    def sent(self) -> int:
        """How many instances :meth:`next` has handed out."""
        return self._sequence

    def next(self) -> tuple[Template, str, memoryview]:
        """The next instance: its template, its new SOP Instance UID and its bytes.

        The bytes stay valid until the next call that reaches the same template.
        """
        index = self._sequence % len(self._templates)
        template = self._templates[index]
        buffer = self._buffers[index]
        uid = instance_uid(self._run, self._association, self._sequence)
        self._sequence += 1
        start = template.instance_offset
        buffer[start : start + len(uid)] = uid.encode("ascii")
        return template, uid, memoryview(buffer)
