"""The bench's workloads: valid, unique instances from patched templates."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.filereader import read_dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from xvactor.bench.instances import (
    InstanceStream,
    instance_uid,
    new_run_number,
    series_uid,
    study_uid,
)
from xvactor.bench.workload import (
    Geometry,
    WorkloadError,
    file_templates,
    synthetic_templates,
)
from xvactor.testing.datasets import make_dataset, make_sized, write_in_transfer_syntax

RUN = 123456789012


def _decode(data: bytes, syntax: str) -> object:
    uid = UID(syntax)
    return read_dataset(BytesIO(data), uid.is_implicit_VR, uid.is_little_endian)


def test_synthetic_instances_are_valid_and_unique() -> None:
    (template,) = synthetic_templates(Geometry(64, 64, 8), RUN)
    original = make_sized("tiny")
    stream = InstanceStream([template], RUN, association=3)
    seen = set()
    for sequence in range(5):
        _, uid, data = stream.next()
        assert len(data) == len(template.data)
        ds = _decode(bytes(data), template.transfer_syntax_uid)
        assert ds.SOPInstanceUID == uid == instance_uid(RUN, 3, sequence)  # type: ignore[attr-defined]
        assert ds.SeriesInstanceUID == series_uid(RUN, 3, 0)  # type: ignore[attr-defined]
        assert ds.StudyInstanceUID == study_uid(RUN, 0)  # type: ignore[attr-defined]
        assert ds.PixelData == original.PixelData  # type: ignore[attr-defined]
        seen.add(uid)
    assert len(seen) == 5
    assert stream.sent == 5


def test_uids_are_valid_and_distinct_across_associations_and_runs() -> None:
    other = new_run_number()
    uids = {
        instance_uid(run, association, sequence)
        for run in (RUN, other)
        for association in (0, 1, 8999)
        for sequence in (0, 1, 9 * 10**12 - 1)
    }
    assert len(uids) == 18
    for uid in uids | {series_uid(RUN, 8999, 899), study_uid(RUN, 899)}:
        assert UID(uid).is_valid, uid
        assert len(uid) <= 64
    with pytest.raises(ValueError, match="out of range"):
        instance_uid(RUN, 9000, 0)


def test_sizes_match_the_issue() -> None:
    (ct,) = synthetic_templates(Geometry(512, 512, 16), RUN)
    assert 520_000 < len(ct.data) < 540_000
    assert ct.sop_class_uid == "1.2.840.10008.5.1.4.1.1.2"
    (tiny,) = synthetic_templates(Geometry(64, 64, 8), RUN)
    assert 4_000 < len(tiny.data) < 6_000
    (frames,) = synthetic_templates(Geometry(32, 32, 16, frames=3), RUN)
    assert int(_decode(frames.data, frames.transfer_syntax_uid).NumberOfFrames) == 3  # type: ignore[attr-defined]
    with pytest.raises(WorkloadError, match="bits"):
        synthetic_templates(Geometry(8, 8, 12), RUN)


def test_replayed_files_keep_their_syntax_and_get_new_uids(tmp_path: Path) -> None:
    first = make_dataset(rows=32, columns=32)
    second = make_dataset(rows=32, columns=32, study_uid=first.StudyInstanceUID)
    third = make_dataset(rows=32, columns=32)
    (tmp_path / "sub").mkdir()
    paths = [
        write_in_transfer_syntax(first, ImplicitVRLittleEndian, tmp_path / "a.dcm"),
        write_in_transfer_syntax(second, RLELossless, tmp_path / "b.dcm"),
        write_in_transfer_syntax(third, ExplicitVRLittleEndian, tmp_path / "sub" / "c.dcm"),
    ]
    templates = file_templates([paths[0], paths[1], tmp_path / "sub"], RUN)
    assert [t.transfer_syntax_uid for t in templates] == [
        ImplicitVRLittleEndian, RLELossless, ExplicitVRLittleEndian,
    ]  # fmt: skip
    stream = InstanceStream(templates, RUN, association=0)
    decoded = []
    for _ in templates:
        template, uid, data = stream.next()
        ds = _decode(bytes(data), template.transfer_syntax_uid)
        assert ds.SOPInstanceUID == uid  # type: ignore[attr-defined]
        decoded.append(ds)
    studies = [ds.StudyInstanceUID for ds in decoded]  # type: ignore[attr-defined]
    assert studies[0] == studies[1] != studies[2]
    assert first.StudyInstanceUID not in studies
    original = dcmread(paths[1])
    assert decoded[1].PixelData == original.PixelData  # type: ignore[attr-defined]


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"not dicom at all")
    with pytest.raises(WorkloadError, match=r"junk\.dcm"):
        file_templates([junk], RUN)
    with pytest.raises(WorkloadError, match="no such file"):
        file_templates([tmp_path / "missing"], RUN)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorkloadError, match="no files"):
        file_templates([tmp_path / "empty"], RUN)
