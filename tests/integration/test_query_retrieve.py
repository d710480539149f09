"""Q/R FIND, MOVE and GET against DCMTK's findscu, movescu and getscu (PS3.4 C.4)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

from xvactor.actors.catalog import CATALOG_FILE
from xvactor.catalog.sqlite import open_catalog, write_batch
from xvactor.testing.datasets import make_dataset, write_in_transfer_syntax
from xvactor.testing.dcmtk import require_tool, run_tool
from xvactor.testing.naive_query import header_record
from xvactor.testing.net import free_port
from xvactor.testing.node import NodeHandle

pytestmark = pytest.mark.dcmtk

ALL_SERVICES = ["echo", "store", "query", "retrieve"]
MODEL_FLAG = {"patient": "-P", "study": "-S", "psonly": "-O"}


@dataclass(frozen=True)
class Catalog:
    """What the test stored: two patients, three studies, five series, eight instances."""

    node: NodeHandle
    datasets: tuple[Dataset, ...]
    move_port: int

    def uids(self, keyword: str, **where: str) -> set[str]:
        return {
            str(getattr(ds, keyword))
            for ds in self.datasets
            if all(str(getattr(ds, k)) == v for k, v in where.items())
        }


def _instances() -> list[Dataset]:
    layout = [
        # patient name, id, study date, modality, [instances per series]
        ("Müller^Jürgen", "PA", "20240105", "CT", [2, 1]),
        ("Müller^Jürgen", "PA", "20240320", "MR", [1]),
        ("Smith^John", "PB", "20231111", "CT", [2, 2]),
    ]
    datasets: list[Dataset] = []
    for name, patient_id, date, modality, series in layout:
        study = generate_uid()
        for number, count in enumerate(series, start=1):
            series_uid = generate_uid()
            for index in range(count):
                ds = make_dataset(
                    patient_name=name,
                    patient_id=patient_id,
                    study_uid=study,
                    series_uid=series_uid,
                    modality=modality,
                    rows=16,
                    columns=16,
                    seed=len(datasets),
                )
                ds.StudyDate = date
                ds.SeriesNumber = number
                ds.InstanceNumber = index + 1
                ds.StudyDescription = f"{modality} study {date}"
                datasets.append(ds)
    return datasets


@pytest.fixture
def catalog(make_node: Callable[..., NodeHandle], tmp_path: Path) -> Catalog:
    move_port = free_port()
    node = make_node(
        clients=[{"name": "all", "allow": ALL_SERVICES}],
        destinations=[
            {"name": "mover", "ae_title": "MOVESCU", "host": "127.0.0.1", "port": move_port}
        ],
    )
    datasets = _instances()
    files = []
    for index, ds in enumerate(datasets):
        syntax = RLELossless if index == 0 else ExplicitVRLittleEndian
        files.append(write_in_transfer_syntax(ds, syntax, tmp_path / f"in{index}.dcm"))
    for flag, batch in (("-xr", files[:1]), ("-xe", files[1:])):
        run_tool(
            "storescu", "-aet", "LOADER", "-aec", node.ae_title, flag,
            node.host, str(node.port), *batch, check=True,
        )  # fmt: skip
    return Catalog(node, tuple(datasets), move_port)


def query_file(path: Path, level: str, charset: str | None = None, **keys: str) -> Path:
    """A query Identifier as a file (so Latin-1 values reach findscu byte for byte)."""
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    ds.save_as(path, implicit_vr=False, little_endian=True)
    return path


def findscu(
    cat: Catalog, tmp_path: Path, model: str, query: Path, *extra: str
) -> tuple[subprocess.CompletedProcess[str], list[Dataset]]:
    out = tmp_path / f"rsp-{query.stem}"
    out.mkdir()
    result = run_tool(
        "findscu", MODEL_FLAG[model], "-aet", "VIEWER", "-aec", cat.node.ae_title, "-X",
        "-od", str(out), *extra, cat.node.host, str(cat.node.port), str(query),
    )  # fmt: skip
    return result, [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_study_root_study_level_with_latin1_wildcard(catalog: Catalog, tmp_path: Path) -> None:
    query = query_file(
        tmp_path / "q1.dcm",
        "STUDY",
        charset="ISO_IR 100",
        PatientName="Müller*",
        StudyInstanceUID="",
        StudyDate="",
        ModalitiesInStudy="",
    )
    result, responses = findscu(catalog, tmp_path, "study", query)
    assert result.returncode == 0, result.stderr
    assert {str(r.StudyInstanceUID) for r in responses} == catalog.uids(
        "StudyInstanceUID", PatientID="PA"
    )
    for response in responses:
        assert response.SpecificCharacterSet == "ISO_IR 100"
        assert str(response.PatientName) == "Müller^Jürgen"
        assert response.QueryRetrieveLevel == "STUDY"


@pytest.mark.parametrize("model", ["patient", "study", "psonly"])
def test_every_model_answers_its_levels(catalog: Catalog, tmp_path: Path, model: str) -> None:
    if model != "study":
        query = query_file(tmp_path / "p.dcm", "PATIENT", PatientID="", PatientName="")
        result, responses = findscu(catalog, tmp_path, model, query)
        assert result.returncode == 0, result.stderr
        assert sorted(str(r.PatientID) for r in responses) == ["PA", "PB"]
    keys = {"PatientID": "PB"} if model != "study" else {}
    query = query_file(tmp_path / "s.dcm", "STUDY", StudyDate="20231101-", **keys)
    query_ds = dcmread(query, force=True)
    query_ds.StudyInstanceUID = ""
    query_ds.save_as(query, implicit_vr=False, little_endian=True)
    result, responses = findscu(catalog, tmp_path, model, query)
    assert result.returncode == 0, result.stderr
    expected = {
        str(ds.StudyInstanceUID)
        for ds in catalog.datasets
        if ds.StudyDate >= "20231101" and (model == "study" or ds.PatientID == "PB")
    }
    assert {str(r.StudyInstanceUID) for r in responses} == expected


def test_series_and_image_levels(catalog: Catalog, tmp_path: Path) -> None:
    study = next(iter(catalog.uids("StudyInstanceUID", PatientID="PB")))
    query = query_file(
        tmp_path / "se.dcm", "SERIES", StudyInstanceUID=study, SeriesInstanceUID="", Modality="CT"
    )
    result, responses = findscu(catalog, tmp_path, "study", query)
    assert result.returncode == 0, result.stderr
    assert {str(r.SeriesInstanceUID) for r in responses} == catalog.uids(
        "SeriesInstanceUID", StudyInstanceUID=study
    )
    series = str(responses[0].SeriesInstanceUID)
    query = query_file(
        tmp_path / "im.dcm",
        "IMAGE",
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
        SOPInstanceUID="",
        InstanceNumber="",
    )
    result, responses = findscu(catalog, tmp_path, "study", query)
    assert result.returncode == 0, result.stderr
    assert {str(r.SOPInstanceUID) for r in responses} == catalog.uids(
        "SOPInstanceUID", SeriesInstanceUID=series
    )


def test_bad_identifier_gets_a_failure_status(catalog: Catalog, tmp_path: Path) -> None:
    query = query_file(tmp_path / "bad.dcm", "SERIES", PatientName="Smith*")
    query_ds = dcmread(query, force=True)
    del query_ds.QueryRetrieveLevel
    query_ds.save_as(query, implicit_vr=False, little_endian=True)
    result, responses = findscu(catalog, tmp_path, "study", query, "-v")
    assert responses == []
    output = result.stdout + result.stderr
    assert "Final Find Response (Error: DataSetDoesNotMatchSOPClass)" in output, output


def test_cancel_stops_the_query(make_node: Callable[..., NodeHandle], tmp_path: Path) -> None:
    """findscu --cancel 1: the node stops well before the end of a 5,000-match query.

    The matches are catalogued directly (headers only): C-FIND reads nothing else, and
    5,000 pending responses take the node far longer than findscu takes to answer the
    first one with a C-CANCEL, however the two processes are scheduled.
    """
    node = make_node(clients=[{"name": "all", "allow": ALL_SERVICES}])
    total = 5000
    study, series = generate_uid(), generate_uid()
    template = make_dataset(study_uid=study, series_uid=series, rows=2, columns=2)
    records = []
    for _ in range(total):
        template.SOPInstanceUID = generate_uid()
        records.append((header_record(template), False))
    conn = open_catalog(node.data_dir / CATALOG_FILE)
    try:
        write_batch(conn, records)
    finally:
        conn.close()
    cat = Catalog(node, (), 0)
    query = query_file(
        tmp_path / "all.dcm", "IMAGE", StudyInstanceUID=study, SeriesInstanceUID=series,
        SOPInstanceUID="",
    )  # fmt: skip
    result, responses = findscu(cat, tmp_path, "study", query, "--cancel", "1", "-v")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-2000:]
    assert 1 <= len(responses) < total // 2, output[-2000:]
    assert "Final Find Response (Cancel" in output or "Matching is terminated" in output, output[
        -2000:
    ]


@pytest.fixture
def move_scp(catalog: Catalog, tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "moved"


def movescu(
    cat: Catalog, tmp_path: Path, destination: str, *keys: str, extra: tuple[str, ...] = ()
) -> tuple[str, Path]:
    out = tmp_path / "moved"
    out.mkdir(exist_ok=True)
    result = run_tool(
        "movescu", "-S", "-aet", "MOVESCU", "-aec", cat.node.ae_title, "-aem", destination,
        "+P", str(cat.move_port), "-od", str(out), "+xa", "-v", *extra,
        *(arg for key in keys for arg in ("-k", key)), cat.node.host, str(cat.node.port),
    )  # fmt: skip
    return result.stdout + result.stderr, out


def test_move_a_study_to_the_requesters_own_scp(catalog: Catalog, tmp_path: Path) -> None:
    study = next(iter(catalog.uids("StudyInstanceUID", PatientID="PB")))
    output, out = movescu(
        catalog, tmp_path, "MOVESCU", "QueryRetrieveLevel=STUDY", f"StudyInstanceUID={study}"
    )
    received = {str(dcmread(p).SOPInstanceUID) for p in out.iterdir()}
    assert received == catalog.uids("SOPInstanceUID", StudyInstanceUID=study), output
    assert output.count("Move Response") == 4 and "(Pending)" in output, output
    assert "Received Final Move Response (Success)" in output, output


def test_move_to_an_unknown_destination_is_0xa801(catalog: Catalog, tmp_path: Path) -> None:
    output, out = movescu(catalog, tmp_path, "NOBODY", "QueryRetrieveLevel=PATIENT", "PatientID=PA")
    assert "Final Move Response (Refused: MoveDestinationUnknown)" in output, output
    assert list(out.iterdir()) == []


def test_get_a_series_on_the_same_association(catalog: Catalog, tmp_path: Path) -> None:
    require_tool("getscu")
    study = str(catalog.datasets[0].StudyInstanceUID)
    out = tmp_path / "got"
    out.mkdir()
    result = run_tool(
        "getscu", "-S", "-aet", "GETTER", "-aec", catalog.node.ae_title, "-od", str(out),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        catalog.node.host, str(catalog.node.port),
    )  # fmt: skip
    received = {str(dcmread(p).SOPInstanceUID): dcmread(p) for p in out.iterdir()}
    assert set(received) == catalog.uids("SOPInstanceUID", StudyInstanceUID=study), (
        result.stdout + result.stderr
    )
    # The first instance is stored RLE; getscu accepts only uncompressed by default, so it
    # arrives converted, with the same pixels.
    first = catalog.datasets[0]
    assert received[str(first.SOPInstanceUID)].PixelData == first.PixelData


def test_result_limit_ends_with_a_clear_status(
    make_node: Callable[..., NodeHandle], tmp_path: Path
) -> None:
    node = make_node(clients=[{"name": "all", "allow": ALL_SERVICES}], query={"max_results": 2})
    files = [
        write_in_transfer_syntax(
            make_dataset(patient_id=f"P{index}", rows=8, columns=8),
            ExplicitVRLittleEndian,
            tmp_path / f"l{index}.dcm",
        )
        for index in range(4)
    ]
    run_tool("storescu", "-aec", node.ae_title, node.host, str(node.port), *files, check=True)
    query = query_file(tmp_path / "lim.dcm", "PATIENT", PatientID="")
    result, responses = findscu(Catalog(node, (), 0), tmp_path, "patient", query, "-v")
    output = result.stdout + result.stderr
    assert len(responses) == 2, output
    assert "Final Find Response (Refused: OutOfResources)" in output, output


def _move_node(
    make_node: Callable[..., NodeHandle], tmp_path: Path, count: int, destination_port: int
) -> tuple[NodeHandle, str, set[str]]:
    node = make_node(
        clients=[{"name": "all", "allow": ALL_SERVICES}],
        destinations=[
            {"name": "d", "ae_title": "MOVESCU", "host": "127.0.0.1", "port": destination_port}
        ],
    )
    study = generate_uid()
    datasets = [make_dataset(study_uid=study, rows=8, columns=8) for _ in range(count)]
    files = [
        write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / f"m{index}.dcm")
        for index, ds in enumerate(datasets)
    ]
    run_tool("storescu", "-aec", node.ae_title, node.host, str(node.port), *files, check=True)
    return node, study, {str(ds.SOPInstanceUID) for ds in datasets}


def test_move_cancel_stops_the_remaining_sub_operations(
    make_node: Callable[..., NodeHandle], tmp_path: Path
) -> None:
    port = free_port()
    node, study, uids = _move_node(make_node, tmp_path, 60, port)
    output, out = movescu(
        Catalog(node, (), port), tmp_path, "MOVESCU", "QueryRetrieveLevel=STUDY",
        f"StudyInstanceUID={study}", extra=("--cancel", "1"),
    )  # fmt: skip
    received = {str(dcmread(p).SOPInstanceUID) for p in out.iterdir()}
    assert received < uids, output
    assert 1 <= len(received) < len(uids), output
    assert "Final Move Response (Cancel" in output, output


def test_move_to_a_destination_that_is_down_lists_the_failed(
    make_node: Callable[..., NodeHandle], tmp_path: Path
) -> None:
    down = free_port()
    node, study, uids = _move_node(make_node, tmp_path, 3, down)
    result = run_tool(
        "movescu", "-S", "-aet", "MOVESCU", "-aec", node.ae_title, "-aem", "MOVESCU", "-d",
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        node.host, str(node.port),
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "Failed: UnableToPerformSuboperations" in output or "0xa702" in output.lower(), output
    for uid in uids:
        assert uid in output, output


def test_get_converts_for_a_requester_that_accepts_implicit_vr_only(
    catalog: Catalog, tmp_path: Path
) -> None:
    study = str(catalog.datasets[0].StudyInstanceUID)  # holds the RLE instance
    out = tmp_path / "implicit"
    out.mkdir()
    result = run_tool(
        "getscu", "-S", "+xi", "-aec", catalog.node.ae_title, "-od", str(out),
        "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}",
        catalog.node.host, str(catalog.node.port),
    )  # fmt: skip
    received = {str(ds.SOPInstanceUID): ds for ds in map(dcmread, out.iterdir())}
    expected = {str(ds.SOPInstanceUID): ds for ds in catalog.datasets}
    assert set(received) == catalog.uids("SOPInstanceUID", StudyInstanceUID=study), (
        result.stdout + result.stderr
    )
    for uid, ds in received.items():
        assert ds.PixelData == expected[uid].PixelData
    assert not list((catalog.node.data_dir / ".spool").rglob("get-*.dcm"))


def test_combined_date_time_matching_when_negotiated(
    make_node: Callable[..., NodeHandle], tmp_path: Path
) -> None:
    """PS3.4 C.2.2.2.5.1: with byte 2 of the extended negotiation, date and time combine.

    DCMTK's findscu cannot ask for it, so pynetdicom is the requester here.
    """
    node = make_node(clients=[{"name": "all", "allow": ALL_SERVICES}])
    times = {"A": ("20240105", "083000"), "B": ("20240106", "060000"), "C": ("20240106", "090000")}
    files = []
    for name, (date, time) in times.items():
        ds = make_dataset(patient_id=name, rows=8, columns=8)
        ds.StudyDate, ds.StudyTime = date, time
        files.append(write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / name))
    run_tool("storescu", "-aec", node.ae_title, node.host, str(node.port), *files, check=True)
    find = "1.2.840.10008.5.1.4.1.2.2.1"

    def patients(datetime_matching: bool) -> set[str]:
        ae = AE(ae_title="PYFIND")
        ae.add_requested_context(find)
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = find
        item.service_class_application_information = (
            b"\x00\x01" if datetime_matching else b"\x00\x00"
        )
        assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, ext_neg=[item])
        assert assoc.is_established
        agreed = assoc.acceptor.sop_class_extended.get(find, b"")
        keys = Dataset()
        keys.QueryRetrieveLevel = "STUDY"
        keys.StudyDate, keys.StudyTime = "20240105-20240106", "0800-0800"
        keys.PatientID = ""
        found = {
            str(identifier.PatientID)
            for status, identifier in assoc.send_c_find(keys, find)
            if status is not None and status.Status == 0xFF00 and identifier is not None
        }
        assoc.release()
        assert agreed[1:2] == (b"\x01" if datetime_matching else b"\x00")
        return found

    assert patients(datetime_matching=True) == {"A", "B"}
    assert patients(datetime_matching=False) == set()


def test_responses_larger_than_the_peers_pdu_are_fragmented(
    make_node: Callable[..., NodeHandle], tmp_path: Path
) -> None:
    """findscu receives at most 4096-byte PDUs and refuses larger ones (PS3.8 9.3.1)."""
    node = make_node(clients=[{"name": "all", "allow": ALL_SERVICES}])
    ds = make_dataset(rows=8, columns=8)
    ds.ImageComments = "long comment " * 500  # 6,500 bytes: the response spans PDUs
    source = write_in_transfer_syntax(ds, ExplicitVRLittleEndian, tmp_path / "long.dcm")
    run_tool("storescu", "-aec", node.ae_title, node.host, str(node.port), source, check=True)
    query = query_file(
        tmp_path / "long-q.dcm", "IMAGE", StudyInstanceUID=str(ds.StudyInstanceUID),
        SeriesInstanceUID=str(ds.SeriesInstanceUID), SOPInstanceUID="", ImageComments="",
    )  # fmt: skip
    result, responses = findscu(Catalog(node, (), 0), tmp_path, "study", query, "-pdu", "4096")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [str(r.ImageComments) for r in responses] == [str(ds.ImageComments).strip()]
