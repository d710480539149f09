"""Store workloads: encode the templates the load workers patch (:mod:`.instances`).

Two sources (the issue's "synthetic but valid instances" and "replay of given files"):

* :func:`synthetic_templates`: one instance from :func:`xvactor.testing.datasets.make_dataset`
  (named size ``tiny``/``ct``/``dx`` or explicit geometry), Explicit VR Little Endian;
* :func:`file_templates`: PS3.10 files, each sent in its own transfer syntax with its
  Study, Series and SOP Instance UIDs replaced (files of one original study or series
  stay together under the new UIDs).

Both encode the data set once with pydicom, placeholders in the three UIDs, then find the
placeholders' byte offsets.  This module runs in the parent process only.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from xvactor.bench.instances import (
    INSTANCE_PLACEHOLDER,
    SERIES_PLACEHOLDER,
    STUDY_PLACEHOLDER,
    Template,
    study_uid,
)

__all__ = ["Geometry", "WorkloadError", "encode_template", "file_templates", "synthetic_templates"]

_DEFLATED = "1.2.840.10008.1.2.1.99"


class WorkloadError(Exception):
    """A workload cannot be built (bad file, unsupported encoding); one-line message."""


@dataclass(frozen=True)
class Geometry:
    """Image geometry of a synthetic instance."""

    rows: int
    columns: int
    bits_allocated: int
    frames: int = 1

    @property
    def pixel_bytes(self) -> int:
        """Size of the Pixel Data value."""
        return self.rows * self.columns * self.frames * self.bits_allocated // 8


def _offset(data: bytes | bytearray, placeholder: str, what: str) -> int:
    raw = placeholder.encode("ascii")
    if data.count(raw) != 1:
        raise WorkloadError(f"cannot place the {what} in the encoded data set")
    return data.index(raw)


def encode_template(ds: Dataset, transfer_syntax_uid: str, run: int, study: int = 0,
                    series: int = 0) -> Template:  # fmt: skip
    """Encode ``ds`` (changed: its UIDs become placeholders) as a :class:`Template`.

    Raises
    ------
    WorkloadError
        For a deflated or unknown transfer syntax, or a data set pydicom cannot encode.
    """
    syntax = UID(transfer_syntax_uid)
    if syntax == _DEFLATED or not syntax.is_transfer_syntax:
        raise WorkloadError(f"cannot send transfer syntax {syntax} ({syntax.name})")
    ds.StudyInstanceUID = STUDY_PLACEHOLDER
    ds.SeriesInstanceUID = SERIES_PLACEHOLDER
    ds.SOPInstanceUID = INSTANCE_PLACEHOLDER
    buffer = DicomBytesIO()
    buffer.is_little_endian = syntax.is_little_endian
    buffer.is_implicit_VR = syntax.is_implicit_VR
    try:
        write_dataset(buffer, ds)
    except (ValueError, TypeError, AttributeError) as exc:
        raise WorkloadError(f"cannot encode the data set: {exc}") from None
    data = bytearray(buffer.getvalue())
    at = _offset(data, STUDY_PLACEHOLDER, "Study Instance UID")
    new_study = study_uid(run, study).encode("ascii")
    data[at : at + len(new_study)] = new_study
    return Template(
        sop_class_uid=str(ds.SOPClassUID),
        transfer_syntax_uid=str(syntax),
        data=bytes(data),
        series_offset=_offset(data, SERIES_PLACEHOLDER, "Series Instance UID"),
        instance_offset=_offset(data, INSTANCE_PLACEHOLDER, "SOP Instance UID"),
        series=series,
    )


def synthetic_templates(geometry: Geometry, run: int) -> list[Template]:
    """One synthetic Secondary Capture (8 bit) or CT (16 bit) instance of ``geometry``.

    ``tiny`` (64 x 64 x 8 bit) gives ~5 KB, ``ct`` (512 x 512 x 16) ~0.5 MB, ``dx``
    (3000 x 3000 x 16) ~18 MB.
    """
    from xvactor.testing.datasets import make_dataset  # noqa: PLC0415 - numpy on demand

    if geometry.bits_allocated == 8:
        sop_class = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    elif geometry.bits_allocated == 16:
        sop_class = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
    else:
        raise WorkloadError(f"bits must be 8 or 16, not {geometry.bits_allocated}")
    try:
        ds = make_dataset(
            sop_class_uid=sop_class,
            rows=geometry.rows,
            columns=geometry.columns,
            bits_allocated=geometry.bits_allocated,
            frames=geometry.frames,
            patient_id="XVBENCH",
            patient_name="Bench^Load",
        )
    except ValueError as exc:
        raise WorkloadError(str(exc)) from None
    # Type 2C attributes whose conditions dciodvfy cannot evaluate: present and empty.
    ds.Laterality = ""
    if "ImageOrientationPatient" not in ds:
        ds.PatientOrientation = ""
    else:
        ds.PatientPosition = "HFS"
    return [encode_template(ds, ExplicitVRLittleEndian, run)]


def _expand(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            found.append(path)
        else:
            raise WorkloadError(f"{path}: no such file or directory")
    if not found:
        raise WorkloadError("no files to send")
    return found


def file_templates(paths: Sequence[str | os.PathLike[str]], run: int) -> list[Template]:
    """Templates of PS3.10 files (directories are searched recursively).

    Raises
    ------
    WorkloadError
        For a file that is not DICOM, has no File Meta Information, or an unsendable
        transfer syntax.
    """
    studies: dict[str, int] = {}
    series: dict[str, int] = {}
    templates: list[Template] = []
    for path in _expand(paths):
        try:
            ds = dcmread(path)
        except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
            raise WorkloadError(f"{path}: not a DICOM file ({exc})") from None
        syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        if syntax is None or "SOPClassUID" not in ds:
            raise WorkloadError(f"{path}: no Transfer Syntax UID or SOP Class UID")
        study = studies.setdefault(str(ds.get("StudyInstanceUID", "")), len(studies))
        serie = series.setdefault(str(ds.get("SeriesInstanceUID", "")), len(series))
        try:
            templates.append(encode_template(ds, syntax, run, study, serie))
        except WorkloadError as exc:
            raise WorkloadError(f"{path}: {exc}") from None
    return templates
