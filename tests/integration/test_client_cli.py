"""``xvactor find``, ``move`` and ``get`` end to end against dcmqrscp, and their errors.

The verbs are run in-process through ``xvactor.cli_query.main`` (``cli.py`` wires the same
parsers); one test runs ``python -m xvactor.cli_query`` to see what a user sees on a failure.
The ``-k`` key syntax is checked here too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from tests.integration.test_client_qr import ARCHIVE_AE, MOVE_AE, QRArchive, archive  # noqa: F401
from xvactor.cli_query import main
from xvactor.client.keys import QueryKeyError, parse_keys
from xvactor.testing.net import LOOPBACK, free_port

pytestmark = pytest.mark.dcmtk


def one_line(err: str) -> str:
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def peer(archive: QRArchive) -> list[str]:  # noqa: F811
    return [LOOPBACK, str(archive.port), "-aec", ARCHIVE_AE, "-aet", MOVE_AE]


def test_find_prints_a_table_of_the_matches(
    archive: QRArchive,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["find", *peer(archive), "-S", "-k", "PatientID=PA", "-k", "StudyDate"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["StudyDate", "PatientID", "StudyInstanceUID"]
    studies = {str(ds.StudyInstanceUID) for ds in archive.instances if ds.PatientID == "PA"}
    rows = out[2:-1]
    assert {row.split()[-1] for row in rows} == studies
    assert out[-1] == f"({len(studies)} matches)"


def test_find_json_in_the_patient_root_model(
    archive: QRArchive,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["find", *peer(archive), "-P", "-L", "PATIENT", "-k", "(0010,0010)", "--json"]
    assert main(argv) == 0
    answer = json.loads(capsys.readouterr().out)
    names = sorted(item["00100010"]["Value"][0]["Alphabetic"] for item in answer)
    assert names == ["Alpha^Ann", "Beta^Bob"]
    assert all(item["00080052"]["Value"] == ["PATIENT"] for item in answer)


def test_find_limit_and_a_named_destination(
    archive: QRArchive,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'ae_title = "{MOVE_AE}"\n[[destinations]]\nname = "archive"\n'
        f'ae_title = "{ARCHIVE_AE}"\nhost = "{LOOPBACK}"\nport = {archive.port}\n'
    )
    argv = ["find", "--to", "archive", "--config", str(config), "-O", "-L", "PATIENT"]
    assert main([*argv, "-k", "PatientID", "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "(1 match)"


def test_move_into_a_directory(
    archive: QRArchive,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    study = archive.study(0)
    argv = ["move", *peer(archive), "--port", str(archive.move_port), "--bind", LOOPBACK]
    argv += ["--out", str(tmp_path), "-k", f"StudyInstanceUID={study}"]
    assert main(argv) == 0
    expected = archive.uids(StudyInstanceUID=study)
    report = capsys.readouterr().out
    assert f"{len(expected)} completed, 0 failed" in report
    written = {pydicom.dcmread(p).SOPInstanceUID for p in tmp_path.glob("*.dcm")}
    assert written == expected


def test_get_into_a_directory_as_json(
    archive: QRArchive,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    argv = ["get", *peer(archive), "-P", "-L", "PATIENT", "-k", "PatientID=PB"]
    assert main([*argv, "--out", str(tmp_path), "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["status"] == 0
    assert {item["sop_instance_uid"] for item in answer["received"]} == archive.uids(PatientID="PB")
    for item in answer["received"]:
        assert Path(item["path"]).parent == tmp_path


def test_move_failure_exits_1_with_one_line(
    archive: QRArchive,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["move", *peer(archive), "-aem", "NOWHERE", "-k", f"StudyInstanceUID={archive.study(0)}"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "0xA801" in one_line(captured.err)
    assert captured.err.startswith("xvactor move: ")


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["find", LOOPBACK, "{free}", "-k", "PatientID"], 1, "connection refused"),
        (["find", LOOPBACK, "{port}", "-k", "NoSuchKeyword"], 2, "unknown keyword"),
        (["find", LOOPBACK, "{port}", "-L", "WARD"], 2, "not in the study model"),
        (["find", "-k", "PatientID"], 2, "give PEER PORT"),
        (["find", "--to", "archive"], 2, "needs --config"),
        (["get", LOOPBACK, "{port}", "-aec", "NOBODY"], 1, "rejected"),
        (["worklist", "query", LOOPBACK, "{free}"], 1, "connection refused"),
    ],
)
def test_errors_are_one_line(
    archive: QRArchive,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    status: int,
    message: str,
) -> None:
    args = [a.format(port=archive.port, free=free_port()) for a in argv]
    assert main(args) == status
    line = one_line(capsys.readouterr().err)
    assert message in line
    verb = "worklist query" if argv[0] == "worklist" else argv[0]
    assert line.startswith(f"xvactor {verb}: ")


def test_a_user_sees_one_line_and_the_exit_status() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xvactor.cli_query", "find", LOOPBACK, str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "connection refused" in one_line(result.stderr)


def test_keys_as_findscu_takes_them() -> None:
    ds = parse_keys(
        [
            "PatientName=Doe^J*",
            "(0008,0020)=20240101-20240131",
            "0008,0061=CT\\MR",
            "00200013",
            "ScheduledProcedureStepSequence[0].Modality=CT",
            "(0040,0100)[0].(0040,0001)=MOD1",
            "ReferencedStudySequence",
            "NumberOfStudyRelatedInstances=3",
        ]
    )
    assert ds.PatientName == "Doe^J*"
    assert ds.StudyDate == "20240101-20240131"
    assert list(ds.ModalitiesInStudy) == ["CT", "MR"]
    assert ds.InstanceNumber is None
    step = ds.ScheduledProcedureStepSequence
    assert len(step) == 1
    assert (step[0].Modality, step[0].ScheduledStationAETitle) == ("CT", "MOD1")
    assert list(ds.ReferencedStudySequence) == []
    assert ds.NumberOfStudyRelatedInstances == 3
    assert isinstance(ds, Dataset)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("Nonsense=1", "unknown keyword"),
        ("(0009,0010)=x", "not in the DICOM dictionary"),
        ("PatientName[0].PatientID=1", "not a sequence"),
        ("ScheduledProcedureStepSequence=CT", "takes items"),
        ("Rows=abc", "not a number"),
        ("=x", "no element named"),
        ("(00100010)=x", "neither a keyword nor"),
    ],
)
def test_bad_keys_say_what_is_wrong(key: str, message: str) -> None:
    with pytest.raises(QueryKeyError, match=message.replace("(", r"\(")):
        parse_keys([key])
