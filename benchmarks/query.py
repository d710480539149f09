"""C-FIND benchmark: xvactor against Orthanc (Q/R) and DCMTK wlmscpfs (worklist).

One invocation builds a header-only catalog (default 100,000 instances, 8x8 pixels each)
and a worklist, loads the same data into every target, then times three queries against
each target, alternating targets within each repeat (PS3.4 C.4.1 C-FIND):

* ``study-date``: Study Root, STUDY level, a Study Date range matching 1/5 of the studies
  (1,000 of 5,000 at 100,000 instances), typical study-list return keys including the
  computed Modalities in Study and Number of Study Related Series/Instances;
* ``name-wildcard``: the same return keys, Patient's Name ``SMITH*`` (1/50 of the
  patients, 100 studies at 100,000 instances);
* ``worklist``: Modality Worklist, Scheduled Procedure Step Start Date = today (1/20 of
  the items), the return keys a modality asks for.

DCMTK ``dcmqrscp`` is not a target: its index holds at most 500 studies per storage area
(``DB_UpperMaxStudies`` in dcmqrdbi.h), so it cannot answer a 1,000-study query; Orthanc
takes its place, as the issue allows. The client for every target is DCMTK ``findscu
-v``; its log lines are timestamped as they arrive, giving request-to-first-response and
request-to-last-response times without process start or association set-up (the whole
process wall time is recorded too). See benchmarks/README.md.

    python benchmarks/query.py                      # 100,000 instances, median of 3
    python benchmarks/query.py --quick              # 2,000 instances, smoke run

Progress goes to stderr, the markdown tables to stdout, raw figures to
benchmarks/results/query-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import find_orthanc, first_line

from xvactor.bench.report import git_info, package_version

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

CLIENT_AE = "BENCHSCU"
XVACTOR_AE = "XVACTOR"
ORTHANC_AE = "ORTHANC"
WORKLIST_AE = "WLMSCP"
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
MWL_FIND = "1.2.840.10008.5.1.4.31"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
UID_ROOT = "1.2.826.0.1.3680043.8.498.77"
BASE_DATE = dt.date(2024, 1, 1)

INSTANCES_PER_SERIES = 10
SERIES_PER_STUDY = 2
STUDIES_PER_PATIENT = 2
STUDY_DAYS = 50  # studies spread evenly over 50 days; the range query covers 10 of them
RANGE_DAYS = 10
WORKLIST_DAYS = 20  # items from today - 10 to today + 9 days
FAMILIES = (
    "SMITH", "JONES", "BROWN", "TAYLOR", "WILSON", "DAVIES", "EVANS", "THOMAS", "JOHNSON",
    "ROBERTS", "WALKER", "WRIGHT", "ROBINSON", "THOMPSON", "WHITE", "HUGHES", "EDWARDS",
    "GREEN", "HALL", "WOOD", "HARRIS", "LEWIS", "MARTIN", "JACKSON", "CLARKE", "CLARK",
    "TURNER", "HILL", "SCOTT", "COOPER", "MORRIS", "WARD", "MOORE", "KING", "WATSON", "BAKER",
    "HARRISON", "MORGAN", "PATEL", "YOUNG", "ALLEN", "MITCHELL", "JAMES", "ANDERSON",
    "PHILLIPS", "LEE", "BELL", "PARKER", "DAVIS", "MUELLER",
)  # fmt: skip
GIVEN = ["JOHN", "MARY", "DAVID", "ANNA", "PETER", "LAURA", "PAUL", "EMMA", "MARK", "SARAH"]
NAME_QUERY = "SMITH*"

STUDY_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "AccessionNumber", "StudyID", "StudyDescription", "StudyInstanceUID",
    "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
)  # fmt: skip
SPS = "ScheduledProcedureStepSequence[0]."
WORKLIST_KEYS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
    "StudyInstanceUID", "RequestedProcedureID", "RequestedProcedureDescription",
    f"{SPS}ScheduledStationAETitle", f"{SPS}ScheduledProcedureStepStartTime", f"{SPS}Modality",
    f"{SPS}ScheduledPerformingPhysicianName", f"{SPS}ScheduledProcedureStepDescription",
    f"{SPS}ScheduledProcedureStepID",
)  # fmt: skip
QR_TARGETS = ("xvactor", "orthanc")
WL_TARGETS = ("xvactor", "wlmscpfs", "orthanc")
QUERIES = ("study-date", "name-wildcard", "worklist")
STARTUP_TIMEOUT = 60.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (its own session), SIGKILL after 20 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the group


# --------------------------------------------------------------------------------------
# the data: a deterministic layout, so expected match counts are known without a server


@dataclass(frozen=True)
class Layout:
    """Instance n is in study n // 20 (2 series of 10), study s of patient s // 2."""

    instances: int
    worklist_items: int
    today: dt.date

    @property
    def studies(self) -> int:
        per_study = INSTANCES_PER_SERIES * SERIES_PER_STUDY
        return -(-self.instances // per_study)

    @property
    def patients(self) -> int:
        return -(-self.studies // STUDIES_PER_PATIENT)

    @staticmethod
    def study_date(study: int) -> str:
        return (BASE_DATE + dt.timedelta(days=study % STUDY_DAYS)).strftime("%Y%m%d")

    @staticmethod
    def patient_name(patient: int) -> str:
        return f"{FAMILIES[patient % len(FAMILIES)]}^{GIVEN[patient // len(FAMILIES) % 10]}"

    def worklist_date(self, item: int) -> str:
        day = self.today + dt.timedelta(days=item % WORKLIST_DAYS - WORKLIST_DAYS // 2)
        return day.strftime("%Y%m%d")

    def date_range(self) -> str:
        last = BASE_DATE + dt.timedelta(days=RANGE_DAYS - 1)
        return f"{BASE_DATE:%Y%m%d}-{last:%Y%m%d}"

    def expected(self) -> dict[str, int]:
        """Matches of each query, from the layout alone."""
        family = NAME_QUERY.rstrip("*")
        return {
            "study-date": sum(s % STUDY_DAYS < RANGE_DAYS for s in range(self.studies)),
            "name-wildcard": sum(
                self.patient_name(s // STUDIES_PER_PATIENT).startswith(family)
                for s in range(self.studies)
            ),
            "worklist": sum(
                self.worklist_date(i) == f"{self.today:%Y%m%d}" for i in range(self.worklist_items)
            ),
        }


def uid(kind: int, number: int) -> str:
    """A fixed-width UID: kind 1 study, 2 series, 3 instance, 4 worklist item."""
    return f"{UID_ROOT}.{kind}.{100_000_000 + number}"  # no leading zero (PS3.5 9.1)


# Fields that vary per instance, with their fixed value widths (even; padded).
WIDTHS = {
    0x00020003: 40, 0x00080018: 40, 0x0020000E: 40, 0x0020000D: 40,  # UIDs (\0 padded)
    0x00100010: 32, 0x00100020: 8, 0x00100030: 8, 0x00100040: 2, 0x00080020: 8,
    0x00080030: 6, 0x00080050: 10, 0x00200010: 6, 0x00080060: 2, 0x00200011: 2,
    0x00200013: 4,
}  # fmt: skip
UID_TAGS = frozenset({0x00020003, 0x00080018, 0x0020000E, 0x0020000D})
IS_TAGS = frozenset({0x00200011, 0x00200013})
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UN", b"UT", b"UC", b"UR"}


def _scan(raw: bytes, start: int, stop: int) -> dict[int, tuple[int, int]]:
    """Tag -> (value offset, length) of the top-level Explicit VR LE elements."""
    out: dict[int, tuple[int, int]] = {}
    pos = start
    while pos < stop:
        group, elem = struct.unpack_from("<HH", raw, pos)
        vr = raw[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            (length,) = struct.unpack_from("<I", raw, pos + 8)
            value = pos + 12
        else:
            (length,) = struct.unpack_from("<H", raw, pos + 6)
            value = pos + 8
        out[group << 16 | elem] = (value, length)
        pos = value + length
    return out


class Template:
    """A Part 10 file whose varying values are replaced in place (same widths)."""

    def __init__(self) -> None:
        import pydicom.config
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import UID

        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = UID(SC_STORAGE)
        ds.file_meta.TransferSyntaxUID = UID(EXPLICIT_LE)
        ds.file_meta.ImplementationClassUID = UID(UID_ROOT + ".1")
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SOPClassUID = SC_STORAGE
        ds.ReferringPhysicianName = "REFERRER^A"
        ds.StudyDescription = "XVACTOR QUERY BENCHMARK"
        ds.SeriesDescription = "HEADER ONLY"
        ds.ConversionType = "WSD"
        ds.PatientOrientation = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ds.Columns = 8
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        with pydicom.config.disable_value_validation():
            for tag, width in WIDTHS.items():
                value = "1" * width if tag in UID_TAGS | IS_TAGS else "X" * width
                (ds.file_meta if tag >> 16 == 2 else ds)[tag] = _element(tag, value)
        ds.add_new(0x7FE00010, "OB", bytes(64))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        self.raw = buf.getvalue()
        meta_length = struct.unpack_from("<I", self.raw, 132 + 8)[0]  # after "DICM"
        self.dataset_offset = 132 + 12 + meta_length
        fields = _scan(self.raw, 132, self.dataset_offset)
        fields.update(_scan(self.raw, self.dataset_offset, len(self.raw)))
        self.pixel_offset = fields[0x7FE00010][0] - 12
        self.slots = sorted((fields[tag][0], fields[tag][1], tag) for tag in WIDTHS)
        for _, length, tag in self.slots:
            if length != WIDTHS[tag]:
                raise RuntimeError(f"template: ({tag:08X}) has length {length}")

    def render(self, values: dict[int, str]) -> bytes:
        parts, pos = [], 0
        for offset, length, tag in self.slots:
            pad = "\0" if tag in UID_TAGS else " "
            text = values[tag].ljust(length, pad)
            if len(text) != length:
                raise ValueError(f"({tag:08X}) {text!r} is wider than {length}")
            parts += [self.raw[pos:offset], text.encode("latin-1")]
            pos = offset + length
        parts.append(self.raw[pos:])
        return b"".join(parts)


def _element(tag: int, value: str) -> Any:
    from pydicom.datadict import dictionary_VR
    from pydicom.dataelem import DataElement

    return DataElement(tag, dictionary_VR(tag), value)


def instance_values(layout: Layout, n: int) -> dict[int, str]:
    per_study = INSTANCES_PER_SERIES * SERIES_PER_STUDY
    study, within = divmod(n, per_study)
    series = study * SERIES_PER_STUDY + within // INSTANCES_PER_SERIES
    patient = study // STUDIES_PER_PATIENT
    sop = uid(3, n)
    return {
        0x00020003: sop,
        0x00080018: sop,
        0x0020000E: uid(2, series),
        0x0020000D: uid(1, study),
        0x00100010: layout.patient_name(patient),
        0x00100020: f"P{patient:07d}",
        0x00100030: f"19{40 + patient % 60:02d}{1 + patient % 12:02d}{1 + patient % 28:02d}",
        0x00100040: "MF"[patient % 2],
        0x00080020: layout.study_date(study),
        0x00080030: f"{8 + study % 10:02d}{study * 7 % 60:02d}00",
        0x00080050: f"A{study:09d}",
        0x00200010: f"{study % 1000000:06d}",
        0x00080060: "CT" if within < INSTANCES_PER_SERIES or study % 2 == 0 else "MR",
        0x00200011: str(within // INSTANCES_PER_SERIES + 1),
        0x00200013: str(within % INSTANCES_PER_SERIES + 1),
    }


def worklist_item(layout: Layout, i: int) -> Any:
    """Worklist item i, complete in wlmscpfs's sense (PS3.4 K.6 keys)."""
    from pydicom.dataset import Dataset

    patient = i  # worklist patients are their own
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.AccessionNumber = f"W{i:09d}"
    ds.PatientName = f"{FAMILIES[i % len(FAMILIES)]}^{GIVEN[i % 10]}"
    ds.PatientID = f"W{patient:07d}"
    ds.PatientBirthDate = f"19{40 + i % 60:02d}0{1 + i % 9}{10 + i % 18:02d}"
    ds.PatientSex = "MF"[i % 2]
    ds.StudyInstanceUID = uid(4, i)
    ds.RequestingPhysician = "ORDERING^DOCTOR"
    ds.RequestedProcedureDescription = f"PROCEDURE {i % 7}"
    ds.RequestedProcedureID = f"RP{i:08d}"
    ds.RequestedProcedurePriority = "ROUTINE"
    step = Dataset()
    step.ScheduledStationAETitle = ["CT01", "MR01", "US01"][i % 3]
    step.ScheduledProcedureStepStartDate = layout.worklist_date(i)
    step.ScheduledProcedureStepStartTime = f"{7 + i % 12:02d}{i * 13 % 60:02d}00"
    step.Modality = ["CT", "MR", "US"][i % 3]
    step.ScheduledPerformingPhysicianName = f"TECH^{GIVEN[i % 10]}"
    step.ScheduledProcedureStepDescription = f"STEP {i % 7}"
    step.ScheduledStationName = f"ROOM{i % 3}"
    step.ScheduledProcedureStepLocation = "L1"
    step.ScheduledProcedureStepID = f"S{i:08d}"
    ds.ScheduledProcedureStepSequence = [step]
    return ds


# --------------------------------------------------------------------------------------
# loading the same data into every target


def write_instances(layout: Layout, root: Path, parts: int) -> Iterator[tuple[int, bytes]]:
    """Write every instance file (``parts`` directories, one per storescu) and yield
    ``(n, file bytes)`` for the catalog load."""
    template = Template()
    dirs = [root / f"part{k}" for k in range(parts)]
    for d in dirs:
        d.mkdir(parents=True)
    for n in range(layout.instances):
        raw = template.render(instance_values(layout, n))
        (dirs[n % parts] / f"{n:07d}.dcm").write_bytes(raw)
        yield n, raw


def xvactor_records(
    layout: Layout, files: Path, parts: int
) -> Iterator[tuple[list[Any], int, int]]:
    """Batches of catalog records, built by the node's own header decoding."""
    from pydicom.filereader import read_dataset

    from xvactor.dicom.records import record_from_header

    template = Template()
    batch: list[Any] = []
    for n, raw in write_instances(layout, files, parts):
        header = raw[template.dataset_offset : template.pixel_offset]
        ds = read_dataset(io.BytesIO(header), False, True)
        sop = uid(3, n)
        record = record_from_header(
            ds, affected_sop_class_uid=SC_STORAGE, affected_sop_instance_uid=sop,
            transfer_syntax_uid=EXPLICIT_LE, path=f"studies/bench/{sop}.dcm", size=len(raw),
            dataset_offset=template.dataset_offset, calling_ae_title=CLIENT_AE,
            received_at=time.time(), header=header,
        )  # fmt: skip
        batch.append((record, False))
        if len(batch) == 2000:
            yield batch, n + 1, layout.instances
            batch = []
    if batch:
        yield batch, layout.instances, layout.instances


def load_files_and_catalog(layout: Layout, work: Path, parts: int) -> dict[str, float]:
    """Write the instance files and fill xvactor's catalog from the same bytes."""
    from xvactor.catalog.sqlite import count_instances, open_catalog, write_batch

    data_dir = work / "xvactor-data"
    data_dir.mkdir()
    conn = open_catalog(data_dir / "catalog.sqlite")
    t0 = time.perf_counter()
    try:
        for batch, done, total in xvactor_records(layout, work / "files", parts):
            outcomes = write_batch(conn, batch)
            failed = [o for o in outcomes if isinstance(o, Exception)]
            if failed:
                raise RuntimeError(f"catalog load: {failed[0]}")
            if done % 20000 == 0 or done == total:
                log(f"  files + catalog: {done}/{total} ({time.perf_counter() - t0:.0f} s)")
        held = count_instances(conn)
    finally:
        conn.close()
    if held != layout.instances:
        raise RuntimeError(f"catalog holds {held} instances, expected {layout.instances}")
    return {"files_and_catalog_s": time.perf_counter() - t0}


def write_worklist(layout: Layout, work: Path) -> tuple[Path, list[Any]]:
    """The worklist as ``.wl`` files (wlmscpfs, Orthanc) and as datasets (xvactor)."""
    from pydicom.dataset import FileMetaDataset

    folder = work / "worklist" / WORKLIST_AE
    folder.mkdir(parents=True)
    (folder / "lockfile").touch()
    items = []
    for i in range(layout.worklist_items):
        ds = worklist_item(layout, i)
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MWL_FIND
        ds.file_meta.MediaStorageSOPInstanceUID = uid(5, i)
        ds.file_meta.TransferSyntaxUID = EXPLICIT_LE
        ds.save_as(folder / f"item{i:06d}.wl", enforce_file_format=True)
        items.append(ds)
    return folder, items


def load_worklist_xvactor(work: Path, items: list[Any]) -> None:
    from xvactor.worklist.store import add_items, open_worklist

    conn = open_worklist(work / "xvactor-data")
    try:
        add_items(conn, items)
    finally:
        conn.close()


# --------------------------------------------------------------------------------------
# servers


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    ae_title: str
    log_path: Path
    http_port: int = 0


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None) -> Any:
    with log_path.open("wb") as out:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            cwd=log_path.parent, env={**os.environ, "TCP_NODELAY": "1", **(env or {})},
            start_new_session=True,
        )  # fmt: skip


def wait_listening(server: Server, deadline: float) -> None:
    from xvactor.testing.net import port_accepts

    for port in (server.port, server.http_port):
        while port and not port_accepts("127.0.0.1", port):
            if server.proc.poll() is not None or time.monotonic() > deadline:
                tail = server.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                raise RuntimeError(f"{server.name} did not start: {' / '.join(tail)}")
            time.sleep(0.05)


def start_xvactor(work: Path, cmd: list[str]) -> Server:
    from xvactor.testing.net import free_port

    port = free_port()
    config = work / "xvactor.toml"
    config.write_text(
        f'ae_title = "{XVACTOR_AE}"\ndata_dir = {json.dumps(str(work / "xvactor-data"))}\n'
        f'[[listeners]]\nhost = "127.0.0.1"\nport = {port}\n'
        '[[clients]]\nname = "all"\nallow = ["echo", "store", "query", "retrieve"]\n'
    )
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    proc = _spawn([*cmd, "serve", "--config", str(config)], work / "xvactor.log",
                  {"PYTHONPATH": pythonpath})  # fmt: skip
    return Server("xvactor", proc, port, XVACTOR_AE, work / "xvactor.log")


def orthanc_config(work: Path, port: int, http_port: int, worklist: Path) -> dict[str, Any]:
    return {
        "Name": "xvactor-query-bench",
        "StorageDirectory": str(work / "orthanc-storage"),
        "IndexDirectory": str(work / "orthanc-index"),
        "StorageCompression": False,
        "SyncStorageArea": False,  # loading speed only; queries read the index
        "Plugins": ["/usr/share/orthanc/plugins/libModalityWorklists.so"],
        "Worklists": {"Enable": True, "Database": str(worklist)},
        "LuaScripts": [],
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomAet": ORTHANC_AE,
        "DicomPort": port,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowFindWorklist": True,
        "DicomModalities": {},
        "MaximumPduLength": 131072,
        "LimitFindResults": 0,
        "LimitFindInstances": 0,
        "SaveJobs": False,
        "StableAge": 3600,
    }


def start_orthanc(work: Path, binary: str, worklist: Path) -> Server:
    from xvactor.testing.net import free_port

    port, http_port = free_port(), free_port()
    config = work / "orthanc.json"
    config.write_text(json.dumps(orthanc_config(work, port, http_port, worklist), indent=1))
    proc = _spawn([binary, str(config)], work / "orthanc.log")
    return Server("orthanc", proc, port, ORTHANC_AE, work / "orthanc.log", http_port)


def orthanc_count(server: Server) -> int:
    url = f"http://127.0.0.1:{server.http_port}/statistics"
    with urllib.request.urlopen(url, timeout=60) as resp:
        return int(json.load(resp)["CountInstances"])


def load_orthanc(server: Server, files: Path, parts: int, expected: int) -> float:
    """Send every file with ``parts`` parallel storescu processes; seconds taken."""
    from xvactor.testing.dcmtk import dcmtk_env, require_tool

    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [
                require_tool("storescu"),
                "-aet",
                CLIENT_AE,
                "-aec",
                server.ae_title,
                "-xe",
                "-nh",
                "+sd",
                "+r",
                "-pdu",
                "131072",
                "127.0.0.1",
                str(server.port),
                str(files / f"part{k}"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dcmtk_env(),
        )
        for k in range(parts)
    ]
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=3600)
        if p.returncode:
            errors.append(err.decode(errors="replace").strip().splitlines()[-1:])
    held = orthanc_count(server)
    if errors or held != expected:
        raise RuntimeError(f"Orthanc load: holds {held} of {expected}; storescu: {errors}")
    return time.perf_counter() - t0


def start_wlmscpfs(work: Path, database: Path) -> Server:
    from xvactor.testing.dcmtk import require_tool
    from xvactor.testing.net import free_port

    port = free_port()
    cmd = [require_tool("wlmscpfs"), "-dfp", str(database), str(port)]
    proc = _spawn(cmd, work / "wlmscpfs.log")
    return Server("wlmscpfs", proc, port, WORKLIST_AE, work / "wlmscpfs.log")


# --------------------------------------------------------------------------------------
# one timed query


@dataclass
class Run:
    query: str
    target: str
    repeat: int  # -1: warm-up, not counted
    status: str = "failed"  # ok | mismatch | failed | timeout
    responses: int = 0
    expected: int = 0
    first_s: float | None = None  # C-FIND-RQ sent -> first response received
    last_s: float | None = None  # C-FIND-RQ sent -> final response received
    process_s: float | None = None  # findscu start -> exit (association set-up included)
    final: str = ""
    note: str = ""


def findscu_args(query: str, layout: Layout) -> list[str]:
    if query == "worklist":
        keys = [*WORKLIST_KEYS, f"{SPS}ScheduledProcedureStepStartDate={layout.today:%Y%m%d}"]
        return ["-W", *(arg for key in keys for arg in ("-k", key))]
    match = f"StudyDate={layout.date_range()}" if query == "study-date" else None
    name = f"PatientName={NAME_QUERY}" if query == "name-wildcard" else None
    keys = [k for k in STUDY_KEYS if not (match and k == "StudyDate")]
    keys = [k for k in keys if not (name and k == "PatientName")]
    keys += [k for k in (match, name) if k]
    return ["-S", "-k", "QueryRetrieveLevel=STUDY", *(a for k in keys for a in ("-k", k))]


def timed_find(server: Server, query: str, layout: Layout, run: Run, timeout: float) -> None:
    """Run findscu -v against ``server``; timestamps from its log lines as they arrive."""
    from xvactor.testing.dcmtk import dcmtk_env, require_tool

    cmd = [
        require_tool("findscu"), "-v", "-aet", CLIENT_AE, "-aec", server.ae_title, "-xe",
        "-pdu", "131072", "-to", "10", "-ta", "30", "-td", str(int(timeout)),
        *findscu_args(query, layout), "127.0.0.1", str(server.port),
    ]  # fmt: skip
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dcmtk_env(),
    )  # fmt: skip
    assert proc.stdout is not None
    sent = first = last = None
    tail: list[str] = []
    for raw in proc.stdout:
        now = time.perf_counter()
        line = raw.decode("latin-1").rstrip()
        if "Sending Find Request" in line:
            sent = now
        elif line.startswith("I: Find Response:"):  # "I: Find Response: 1 (Pending)"
            run.responses += 1
            first = first or now
        elif "Received Final Find Response" in line:
            last = now
            run.final = line.split("Response", 1)[1].strip(" ()")
        elif line.startswith(("E:", "F:", "W:")):
            tail.append(line)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        run.status, run.note = "timeout", f"findscu exceeded {timeout:g} s"
        return
    run.process_s = time.perf_counter() - t_start
    if sent is None or last is None or proc.returncode:
        run.note = f"findscu exit {proc.returncode}: {' / '.join(tail[-2:])}"
        return
    run.last_s = last - sent
    run.first_s = (first - sent) if first else run.last_s
    ok = run.responses == run.expected and run.final == "Success"
    run.status = "ok" if ok else "mismatch"
    if not ok:
        run.note = f"{run.responses} responses, expected {run.expected}, final {run.final}"


# --------------------------------------------------------------------------------------
# report


def targets_of(query: str, wanted: Sequence[str]) -> list[str]:
    return [t for t in (WL_TARGETS if query == "worklist" else QR_TARGETS) if t in wanted]


def summarize(runs: list[Run]) -> list[dict[str, Any]]:
    out = []
    keys = dict.fromkeys((r.query, r.target) for r in runs if r.repeat >= 0)
    for query, target in keys:
        mine = [r for r in runs if (r.query, r.target) == (query, target) and r.repeat >= 0]
        ok = [r for r in mine if r.status == "ok"]

        def median(attr: str, ok: list[Run] = ok) -> float | None:
            vals = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
            return statistics.median(vals) if vals else None

        out.append({
            "query": query, "target": target, "runs": len(mine), "ok": len(ok),
            "matches": mine[0].expected, "first_s": median("first_s"),
            "last_s": median("last_s"), "process_s": median("process_s"),
            "notes": sorted({r.note for r in mine if r.note}),
        })  # fmt: skip
    return out


def fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def print_report(summary: list[dict[str, Any]], header: str) -> list[dict[str, Any]]:
    print(header)
    print()
    print("| query | matches | target | first response ms | last response ms "
          "| findscu process ms | runs ok | notes |")  # fmt: skip
    print("|---|---:|---|---:|---:|---:|---:|---|")
    for s in summary:
        notes = "; ".join(s["notes"])[:200].replace("|", "/")
        print(
            f"| {s['query']} | {s['matches']:,} | {s['target']} | {fmt_ms(s['first_s'])} | "
            f"{fmt_ms(s['last_s'])} | {fmt_ms(s['process_s'])} | {s['ok']}/{s['runs']} | "
            f"{notes} |"
        )
    print()
    print("| query | xvactor last ms | fastest other | its last ms | ratio (xvactor / fastest) "
          "| target met |")  # fmt: skip
    print("|---|---:|---|---:|---:|---|")
    verdicts = []
    for query in dict.fromkeys(s["query"] for s in summary):
        rows = {s["target"]: s for s in summary if s["query"] == query}
        ours = rows.get("xvactor", {}).get("last_s")
        others = [(s["last_s"], t) for t, s in rows.items() if t != "xvactor" and s["last_s"]]
        if ours is None or not others:
            continue
        best, name = min(others)
        verdict = {"query": query, "xvactor_last_s": ours, "fastest_other": name,
                   "other_last_s": best, "ratio": ours / best, "met": ours <= best}  # fmt: skip
        verdicts.append(verdict)
        print(
            f"| {query} | {fmt_ms(ours)} | {name} | {fmt_ms(best)} | {ours / best:.2f} | "
            f"{'yes' if ours <= best else '**no**'} |"
        )
    print()
    return verdicts


def machine_info() -> dict[str, Any]:
    from xvactor.testing.dcmtk import require_tool

    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")), "",
    )  # fmt: skip
    orthanc = find_orthanc()
    return {
        "nproc": os.cpu_count(), "cpu_model": cpu, "python": sys.version.split()[0],
        "pydicom": package_version("pydicom"), "pynetdicom": package_version("pynetdicom"),
        "xvactor": package_version("xvactor"),
        "dcmtk": first_line([require_tool("findscu"), "--version"]).strip("$ "),
        "orthanc": first_line([orthanc, "--version"]) if orthanc else "not found",
        "loadavg_at_start": os.getloadavg(), "git": git_info(),
    }  # fmt: skip


# --------------------------------------------------------------------------------------
# main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--instances", type=int, default=None, help="catalog size (default 100000)")
    p.add_argument("--worklist-items", type=int, default=None, help="(default 2000)")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per cell (default 3)")
    p.add_argument("--quick", action="store_true", help="2,000 instances, 200 items, 1 repeat")
    p.add_argument(
        "--targets", default="xvactor,orthanc,wlmscpfs", help="comma list (default: all)"
    )
    p.add_argument("--queries", default=",".join(QUERIES), help="comma list (default: all)")
    p.add_argument("--load-parts", type=int, default=4, help="parallel storescu to Orthanc")
    p.add_argument("--timeout", type=float, default=300.0, help="per query run, seconds")
    p.add_argument("--workdir", type=Path, default=None, help="default: a new temp dir")
    p.add_argument("--keep", action="store_true", help="keep the work dir (data, logs)")
    p.add_argument("--xvactor-cmd", default=None, help="default: '<this python> -m xvactor'")
    p.add_argument("--no-json", action="store_true", help="do not write benchmarks/results")
    args = p.parse_args(argv)
    args.instances = args.instances or (2000 if args.quick else 100_000)
    args.worklist_items = args.worklist_items or (200 if args.quick else 2000)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    args.queries = [q.strip() for q in args.queries.split(",") if q.strip()]
    bad = set(args.targets) - set(WL_TARGETS) | set(args.queries) - set(QUERIES)
    if bad or args.instances < 20 or args.worklist_items < 20 or args.repeat < 1:
        p.error(f"bad --targets/--queries {sorted(bad)} or counts (instances, items >= 20)")
    return args


@dataclass
class Session:
    args: argparse.Namespace
    layout: Layout
    work: Path
    servers: dict[str, Server] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def prepare(s: Session) -> None:
    """Generate the data, load every target, start the servers."""
    args, layout, work = s.args, s.layout, s.work
    parts = max(1, args.load_parts)
    log(f"writing {layout.instances:,} files and loading xvactor's catalog ...")
    s.timings.update(load_files_and_catalog(layout, work, parts))
    t0 = time.perf_counter()
    wl_folder, items = write_worklist(layout, work)
    load_worklist_xvactor(work, items)
    s.timings["worklist_files_and_catalog_s"] = time.perf_counter() - t0
    deadline = time.monotonic() + STARTUP_TIMEOUT
    if "xvactor" in args.targets:
        cmd = args.xvactor_cmd.split() if args.xvactor_cmd else [sys.executable, "-m", "xvactor"]
        s.servers["xvactor"] = start_xvactor(work, cmd)
    if "wlmscpfs" in args.targets:
        s.servers["wlmscpfs"] = start_wlmscpfs(work, wl_folder.parent)
    if "orthanc" in args.targets:
        binary = find_orthanc()
        if binary is None:
            raise RuntimeError("Orthanc not found (Debian package orthanc)")
        s.servers["orthanc"] = start_orthanc(work, binary, wl_folder)
    for server in s.servers.values():
        wait_listening(server, deadline)
    if "orthanc" in s.servers:
        log(f"loading Orthanc with {parts} storescu processes ...")
        s.timings["orthanc_load_s"] = load_orthanc(
            s.servers["orthanc"], work / "files", parts, layout.instances
        )
    for name, secs in s.timings.items():
        log(f"  {name}: {secs:.1f}")
    os.sync()


def measure(s: Session) -> list[Run]:
    expected = s.layout.expected()
    runs: list[Run] = []
    for query in s.args.queries:
        targets = [t for t in targets_of(query, s.args.targets) if t in s.servers]
        for rep in range(-1, s.args.repeat):  # -1: one warm-up round, not counted
            shift = max(rep, 0) % len(targets)
            for target in targets[shift:] + targets[:shift]:
                run = Run(query, target, rep, expected=expected[query])
                timed_find(s.servers[target], query, s.layout, run, s.args.timeout)
                runs.append(run)
                tag = "warm-up" if rep < 0 else f"{rep + 1}/{s.args.repeat}"
                log(f"[{tag}] {query:13} {target:9} {run.status:8} first "
                    f"{fmt_ms(run.first_s)} ms last {fmt_ms(run.last_s)} ms process "
                    f"{fmt_ms(run.process_s)} ms {run.responses} resp {run.note}")  # fmt: skip
    return runs


def write_json(s: Session, started: dt.datetime, runs: list[Run], report: dict[str, Any]) -> None:
    """Write machine info, settings, load timings, ``report`` and every run."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"query-{started:%Y%m%dT%H%M%SZ}.json"
    doc = {
        "started_utc": started.isoformat(),
        "machine": report["machine"],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(s.args).items()},
        "layout": {
            **asdict(s.layout),
            "today": f"{s.layout.today:%Y%m%d}",
            "studies": s.layout.studies,
            "patients": s.layout.patients,
            "expected": s.layout.expected(),
        },
        "queries": {q: findscu_args(q, s.layout) for q in QUERIES},
        "orthanc_config": orthanc_config(Path("<work>"), 0, 0, Path("<worklist>")),
        "load_timings_s": s.timings,
        "summary": report["summary"],
        "verdicts": report["verdicts"],
        "runs": [asdict(r) for r in runs],
    }
    path.write_text(json.dumps(doc, indent=2))
    log(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    info = machine_info()
    log(f"machine: {json.dumps(info)}")
    started = dt.datetime.now(dt.UTC)
    layout = Layout(args.instances, args.worklist_items, dt.date.today())
    own = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="xvactor-query-")) if own else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    session = Session(args, layout, work)
    try:
        prepare(session)
        runs = measure(session)
    finally:
        for server in session.servers.values():
            stop_process(server.proc)
        if args.keep:
            log(f"work dir kept: {work}")
        elif own:
            shutil.rmtree(work, ignore_errors=True)
    summary = summarize(runs)
    git = info["git"]
    header = (
        f"# C-FIND benchmark, {started:%Y-%m-%d %H:%M} UTC\n\n{info['nproc']} CPUs, "
        f"{info['dcmtk']}, {info['orthanc']}, git {git['commit'][:10]}"
        f"{' (dirty)' if git['dirty'] else ''}. {layout.instances:,} instances "
        f"({layout.studies:,} studies, {layout.patients:,} patients), "
        f"{layout.worklist_items:,} worklist items; client findscu -v; "
        f"median of {args.repeat} after one warm-up."
    )
    verdicts = print_report(summary, header)
    if not args.no_json:
        report = {"machine": info, "summary": summary, "verdicts": verdicts}
        write_json(session, started, runs, report)
    bad = [r for r in runs if r.status != "ok"]
    if bad:
        log(f"!!! {len(bad)} run(s) not ok (excluded from the medians) !!!")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
