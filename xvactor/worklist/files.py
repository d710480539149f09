"""Reading worklist items from files: DCMTK ``wlmscpfs`` files and DICOM JSON.

* DICOM files as DCMTK's ``wlmscpfs`` keeps them (``*.wl``, one item per file, usually
  made with ``dump2dcm``): PS3.10 files, or bare datasets without the preamble; any
  transfer syntax pydicom reads.
* JSON in the DICOM JSON Model (PS3.18 Section F.2): one dataset object, or an array of
  them.  JSON text is UTF-8 (PS3.18 F.2.1): an item without a Specific Character Set
  whose text is not ASCII is given ``ISO_IR 192``; one whose declared character set
  cannot encode its text is refused.

A directory stands for the ``*.wl`` and ``*.json`` files directly in it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from xvactor.query.matching import response_character_set

__all__ = ["WorklistFileError", "expand_paths", "read_worklist_file"]

_SUFFIXES = (".wl", ".json")


class WorklistFileError(ValueError):
    """A file that cannot be read as worklist items; the message is one line."""


def expand_paths(paths: Iterable[Path]) -> list[Path]:
    """The files to read: each file itself, each directory's ``*.wl``/``*.json`` sorted."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in _SUFFIXES))
        else:
            out.append(path)
    return out


def _first_byte(path: Path) -> bytes:
    with path.open("rb") as fh:
        return fh.read(256).lstrip()[:1]


def read_worklist_file(path: Path) -> list[Dataset]:
    """Read the worklist item(s) in ``path`` (not yet checked as items).

    Raises
    ------
    WorklistFileError
        When the file cannot be read, or is neither DICOM nor DICOM JSON.
    """
    try:
        first = _first_byte(path)
    except OSError as exc:
        raise WorklistFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if first in (b"{", b"["):
        return _read_json(path)
    return [_read_dicom(path)]


def _bare_dataset(path: Path) -> bool:
    """Whether ``path`` starts like a bare Little Endian dataset of a worklist item.

    Its first tag is then an even group up to (0040,xxxx) (File Meta, Specific Character
    Set, Accession Number, Patient's Name, ...); checked before pydicom is forced to read
    it, which would take any bytes for elements.
    """
    with path.open("rb") as fh:
        head = fh.read(4)
    if len(head) < 4:
        return False
    group = int.from_bytes(head[:2], "little")
    return group % 2 == 0 and 0x0002 <= group <= 0x0040


def _read_dicom(path: Path) -> Dataset:
    try:
        try:
            ds = dcmread(path)
        except InvalidDicomError:  # a bare dataset without preamble and File Meta
            if not _bare_dataset(path):
                raise InvalidDicomError("no DICM prefix, no dataset") from None
            ds = dcmread(path, force=True)
    except Exception as exc:  # pydicom raises many types on garbage
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        msg = f"{path}: not a DICOM file or DICOM JSON ({reason})"
        raise WorklistFileError(msg) from None
    if len(ds) == 0:
        raise WorklistFileError(f"{path}: not a DICOM file or DICOM JSON (no data elements)")
    return ds


def _read_json(path: Path) -> list[Dataset]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WorklistFileError(f"{path}: not valid DICOM JSON ({exc})") from None
    objects = document if isinstance(document, list) else [document]
    datasets = []
    for number, obj in enumerate(objects, start=1):
        where = f"{path}" + (f" [{number}]" if isinstance(document, list) else "")
        if not isinstance(obj, dict):
            raise WorklistFileError(f"{where}: a DICOM JSON dataset must be an object")
        try:
            ds = Dataset.from_json(obj)
        except Exception as exc:  # pydicom raises many types on malformed JSON
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise WorklistFileError(f"{where}: not valid DICOM JSON ({reason})") from None
        _settle_character_set(ds, where)
        datasets.append(ds)
    return datasets


def _settle_character_set(ds: Dataset, where: str) -> None:
    declared = ds.get("SpecificCharacterSet", "")
    declared = "\\".join(declared) if isinstance(declared, MultiValue) else str(declared)
    needed = response_character_set(ds, declared)
    if needed in ("", declared):
        return
    if declared:
        msg = f"{where}: text not encodable in its Specific Character Set {declared!r}"
        raise WorklistFileError(msg)
    ds.SpecificCharacterSet = needed
