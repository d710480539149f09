"""C-STORE ingest benchmark: xvactor against plain pynetdicom, Orthanc and DCMTK storescp.

One invocation measures every receiver in the same session, so the ratios it prints are
comparable even on a noisy VM (absolute figures vary 10-20% run to run). Sender: DCMTK
``storescu`` (TCP_NODELAY=1), N parallel processes for N associations. See
benchmarks/README.md for what each column means.

    python benchmarks/ingest.py --repeat 3
    python benchmarks/ingest.py --quick --receivers pynetdicom,orthanc,storescp

Progress goes to stderr; the markdown tables go to stdout; raw figures go to
benchmarks/results/ingest-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import json
import os
import platform
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from common import find_orthanc, first_line
from disk_ceiling import write_durably

from xvactor.bench.report import git_info, package_version

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
PLAIN_SCP = BENCH_DIR / "plain_pynetdicom_scp.py"

ALL_SIZES = ("tiny", "ct", "dx")
DISK = "disk"
"""Not a receiver: the same files written from memory and fsynced, no network, no DICOM
(``disk_ceiling.py``): the most any durable receiver can reach on this disk."""
ALL_RECEIVERS = ("xvactor", "pynetdicom", "orthanc", "storescp", DISK)
# xvactor with one setting changed, for A/B comparisons in one run (not run by default).
XVACTOR_VARIANTS = {
    "xvactor-stock-reactor": 'reactor = "pynetdicom"\n',
    "xvactor-1proc": "receive_processes = 0\n",
    "xvactor-noinline": "inline_max_kb = 0\n",
}
DEFAULT_COUNTS = {"tiny": 400, "ct": 300, "dx": 20}
QUICK_COUNTS = {"tiny": 40, "ct": 30, "dx": 3}
SENDER_AE = "BENCHSCU"
RECEIVER_AE = {
    "xvactor": "XVACTOR",
    **dict.fromkeys(XVACTOR_VARIANTS, "XVACTOR"),
    "pynetdicom": "PLAINSCP",
    "orthanc": "ORTHANC",
    "storescp": "STORESCP",
}
INSTANCES_PER_SERIES = 100
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0
SAMPLE_INTERVAL = 0.1
# after the senders finish, wait (at most SETTLE_MAX s) until the receiver uses less than
# SETTLE_CPU_S of CPU per SETTLE_WINDOW s, so deferred work (indexing...) is counted too.
SETTLE_MAX = 10.0
SETTLE_WINDOW = 0.5
SETTLE_CPU_S = 0.02
CLK_TCK = os.sysconf("SC_CLK_TCK")
TRUNCATE_ABOVE = 64 * 1024
"""Finished runs' files above this size are truncated to free the disk (release_space)."""
EXCLUDED_DIR_PREFIXES = ("spool", "tmp", "temp", ".tmp", ".spool", "incoming", "staging")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------
# test data


@dataclass(frozen=True)
class SizeSpec:
    name: str
    rows: int
    cols: int
    bits_allocated: int
    bits_stored: int
    modality: str
    sop_class: str


def size_specs() -> dict[str, SizeSpec]:
    from pynetdicom.sop_class import (
        CTImageStorage,
        DigitalXRayImageStorageForPresentation,
        SecondaryCaptureImageStorage,
    )

    return {
        "tiny": SizeSpec("tiny", 64, 64, 8, 8, "OT", str(SecondaryCaptureImageStorage)),
        "ct": SizeSpec("ct", 512, 512, 16, 12, "CT", str(CTImageStorage)),
        "dx": SizeSpec("dx", 3000, 3000, 16, 14, "DX", str(DigitalXRayImageStorageForPresentation)),
    }


def _sc_attrs(ds: Any) -> None:
    ds.ConversionType = "WSD"
    ds.PatientOrientation = ""


def _ct_attrs(ds: Any) -> None:
    from pydicom.uid import generate_uid

    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = "HFS"
    ds.KVP = "120"
    ds.SliceThickness = "1.0"
    ds.AcquisitionNumber = 1
    ds.ImagePositionPatient = [-250.0, -250.0, 0.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.9765625, 0.9765625]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"


def _dx_attrs(ds: Any) -> None:
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.PatientOrientation = ["A", "R"]
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.ImageLaterality = "U"
    ds.DetectorType = "DIRECT"
    ds.ImagerPixelSpacing = [0.143, 0.143]
    ds.PixelIntensityRelationship = "LOG"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    ds.WindowCenter = "8192"
    ds.WindowWidth = "16384"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"


MODALITY_ATTRS: dict[str, Callable[[Any], None]] = {
    "OT": _sc_attrs,
    "CT": _ct_attrs,
    "DX": _dx_attrs,
}


def build_template(spec: SizeSpec) -> Any:
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    now = dt.datetime.now()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = spec.sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID

    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = {
        "OT": ["DERIVED", "SECONDARY"],
        "CT": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "DX": ["ORIGINAL", "PRIMARY"],
    }[spec.modality]
    ds.SOPClassUID = spec.sop_class
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
    ds.AccessionNumber = f"BENCH{spec.name.upper()}"
    ds.Modality = spec.modality
    ds.Manufacturer = "xvactor ingest benchmark"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = f"xvactor ingest benchmark ({spec.name})"
    ds.PatientName = "BENCH^INGEST"
    ds.PatientID = "XVACTOR-BENCH"
    ds.PatientBirthDate = ""
    ds.PatientSex = "O"
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    MODALITY_ATTRS[spec.modality](ds)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.cols
    ds.BitsAllocated = spec.bits_allocated
    ds.BitsStored = spec.bits_stored
    ds.HighBit = spec.bits_stored - 1
    ds.PixelRepresentation = 0

    rng = np.random.default_rng(20240611)
    dtype = np.uint8 if spec.bits_allocated == 8 else np.uint16
    pixels = rng.integers(0, 1 << spec.bits_stored, size=(spec.rows, spec.cols), dtype=dtype)
    ds.add_new(0x7FE00010, "OB" if spec.bits_allocated == 8 else "OW", pixels.tobytes())
    return ds


def generate_files(spec: SizeSpec, count: int, out_dir: Path) -> list[Path]:
    """Write `count` distinct instances (fresh SOP Instance UIDs) of one size."""
    from pydicom import dcmwrite
    from pydicom.uid import generate_uid

    out_dir.mkdir(parents=True, exist_ok=True)
    ds = build_template(spec)
    paths: list[Path] = []
    for i in range(count):
        if i % INSTANCES_PER_SERIES == 0:
            ds.SeriesInstanceUID = generate_uid()
            ds.SeriesNumber = i // INSTANCES_PER_SERIES + 1
        uid = generate_uid()
        ds.SOPInstanceUID = uid
        ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.InstanceNumber = i % INSTANCES_PER_SERIES + 1
        if spec.modality == "CT":
            ds.ImagePositionPatient = [-250.0, -250.0, float(i)]
        path = out_dir / f"{spec.name}-{i:06d}.dcm"
        dcmwrite(path, ds, enforce_file_format=True)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------
# tools


def find_dcmtk(tool: str, override_dir: str | None) -> str:
    """Return DCMTK's `tool`, skipping same-named programs (pynetdicom's apps install
    `storescu`/`storescp` console scripts that can shadow DCMTK on PATH)."""
    candidates: list[str] = []
    if override_dir:
        candidates.append(str(Path(override_dir) / tool))
    candidates += [str(Path(d) / tool) for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    candidates += [f"/usr/bin/{tool}", f"/usr/local/bin/{tool}"]
    for cand in candidates:
        if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
            continue
        try:
            out = subprocess.run(
                [cand, "--version"], capture_output=True, text=True, timeout=20, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if "dcmtk" in (out.stdout + out.stderr).lower():
            return cand
    raise SystemExit(f"DCMTK {tool} not found (pynetdicom's {tool} is not a substitute)")


def machine_info(tools: Tools) -> dict[str, Any]:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "mem_total_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pydicom": package_version("pydicom"),
        "pynetdicom": package_version("pynetdicom"),
        "numpy": package_version("numpy"),
        "xvactor": package_version("xvactor"),
        "dcmtk": first_line([tools.storescu, "--version"]).strip("$ ").replace("dcmtk: ", "DCMTK "),
        "orthanc": (
            "Orthanc " + first_line([tools.orthanc, "--version"]).split()[-1]
            if tools.orthanc
            else "not found"
        ),
        "git": git_info(),
    }


@dataclass
class Tools:
    storescu: str
    storescp: str
    orthanc: str | None
    xvactor_cmd: list[str]


# --------------------------------------------------------------------------------------
# /proc accounting


def _read_stat(pid: int) -> tuple[int, int, int, int] | None:
    """(ppid, state-is-zombie, self ticks, children ticks) from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state); utime=14, stime=15, cutime=16, cstime=17 (1-based)
    ppid = int(fields[1])
    own = int(fields[11]) + int(fields[12])
    children = int(fields[13]) + int(fields[14])
    return ppid, int(fields[0] == "Z"), own, children


def _read_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = _read_stat(int(entry))
        if st is not None:
            children.setdefault(st[0], []).append(int(entry))
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        kids = children.get(pid, [])
        out.extend(kids)
        todo.extend(kids)
    return out


class ProcMonitor:
    """CPU (utime+stime) and peak RSS (VmHWM) of a process tree over an interval.

    CPU = delta of the root's own + reaped-children ticks, plus the own+reaped-children
    ticks of descendants still present at the end (zombies included), minus what the
    descendants present at the start had already used. A child reaped mid-run moves its
    ticks into the root's cutime/cstime, so nothing is lost or counted twice.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self.hwm_kb = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._base = 0

    def _snapshot(self) -> int:
        for _ in range(5):
            first = _read_stat(self.root)
            if first is None:
                return 0
            total = first[2] + first[3]
            for pid in _descendants(self.root):
                st = _read_stat(pid)
                if st is not None:
                    total += st[2] + st[3]
            again = _read_stat(self.root)
            if again is not None and again[3] == first[3]:
                return total  # no child reaped while we were reading
        return total

    def _sample_hwm(self) -> None:
        for pid in [self.root, *_descendants(self.root)]:
            self.hwm_kb = max(self.hwm_kb, _read_hwm_kb(pid))

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            self._sample_hwm()

    def start(self) -> None:
        self._base = self._snapshot()
        self._sample_hwm()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def cpu_seconds(self) -> float:
        return (self._snapshot() - self._base) / CLK_TCK

    def stop(self) -> tuple[float, float]:
        """Return (cpu seconds, peak RSS MiB)."""
        self._sample_hwm()
        cpu = self.cpu_seconds()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return cpu, self.hwm_kb / 1024


# --------------------------------------------------------------------------------------
# receivers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            return False
        return True


def count_files(root: Path, suffix: str | None = None, exclude_tmp: bool = False) -> int:
    n = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if exclude_tmp:
            dirnames[:] = [d for d in dirnames if not d.lower().startswith(EXCLUDED_DIR_PREFIXES)]
        for name in filenames:
            if suffix is None or name.lower().endswith(suffix):
                n += 1
        del dirpath
    return n


@dataclass
class Started:
    proc: subprocess.Popen[bytes]
    port: int
    counter: Callable[[], int]
    ready_ports: list[int]
    stderr_path: Path
    stdout_path: Path
    note: str = ""


def _spawn(
    cmd: list[str], run_dir: Path, extra_env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Path, Path]:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    if extra_env:
        env.update(extra_env)
    out_path = run_dir / "receiver.stdout"
    err_path = run_dir / "receiver.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=run_dir,
            env=env,
            start_new_session=True,
        )
    return proc, out_path, err_path


def start_xvactor(tools: Tools, run_dir: Path, assoc: int, extra: str = "") -> Started:
    del assoc
    port = free_port()
    data_dir = run_dir / "xvactor-data"
    data_dir.mkdir()
    cfg = run_dir / "xvactor.toml"
    cfg.write_text(
        f'ae_title = "{RECEIVER_AE["xvactor"]}"\n'
        f"data_dir = {json.dumps(str(data_dir))}\n"
        f"{extra}"
        "[[listeners]]\n"
        'host = "127.0.0.1"\n'
        f"port = {port}\n"
    )
    pythonpath = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH")) if p)
    proc, out, err = _spawn(
        [*tools.xvactor_cmd, "serve", "--config", str(cfg)],
        run_dir,
        {"PYTHONPATH": pythonpath},
    )
    return Started(
        proc,
        port,
        lambda: count_files(data_dir / "studies", ".dcm"),
        [port],
        err,
        out,
    )


def start_pynetdicom(tools: Tools, run_dir: Path, assoc: int) -> Started:
    del tools, assoc
    port = free_port()
    store = run_dir / "store"
    store.mkdir()
    proc, out, err = _spawn(
        [sys.executable, str(PLAIN_SCP), str(port), str(store), RECEIVER_AE["pynetdicom"]],
        run_dir,
    )
    return Started(proc, port, lambda: count_files(store, ".dcm"), [port], err, out)


def orthanc_config(run_dir: Path, dicom_port: int, http_port: int) -> dict[str, Any]:
    return {
        "Name": "xvactor-ingest-bench",
        "StorageDirectory": str(run_dir / "orthanc-storage"),
        "IndexDirectory": str(run_dir / "orthanc-index"),
        "StorageCompression": False,
        "MaximumStorageSize": 0,
        "MaximumPatientCount": 0,
        "Plugins": [],
        "LuaScripts": [],
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "SslEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": RECEIVER_AE["orthanc"],
        "DicomPort": dicom_port,
        "DicomCheckCalledAet": False,
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowEcho": True,
        "UnknownSopClassAccepted": True,
        "DicomModalities": {},
        "DicomScpTimeout": 60,
        "MaximumPduLength": 131072,
        "SaveJobs": False,
        "StableAge": 3600,
        "HttpsVerifyPeers": False,
    }


def start_orthanc(tools: Tools, run_dir: Path, assoc: int) -> Started:
    del assoc
    if tools.orthanc is None:
        raise RuntimeError("Orthanc binary not found")
    dicom_port = free_port()
    http_port = free_port()
    while http_port == dicom_port:
        http_port = free_port()
    cfg = run_dir / "orthanc.json"
    cfg.write_text(json.dumps(orthanc_config(run_dir, dicom_port, http_port), indent=2))
    proc, out, err = _spawn([tools.orthanc, str(cfg)], run_dir)
    storage = run_dir / "orthanc-storage"

    def counter() -> int:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{http_port}/statistics", timeout=30
            ) as resp:
                return int(json.load(resp)["CountInstances"])
        except (OSError, ValueError, KeyError):
            return count_files(storage)  # REST failed: count attachments instead

    return Started(proc, dicom_port, counter, [dicom_port, http_port], err, out)


def start_storescp(tools: Tools, run_dir: Path, assoc: int) -> Started:
    port = free_port()
    store = run_dir / "store"
    store.mkdir()
    cmd = [
        tools.storescp,
        "-aet",
        RECEIVER_AE["storescp"],
        "+B",
        "-dhl",
        "-pdu",
        "131072",
        "-od",
        str(store),
    ]
    if assoc > 1:
        cmd.append("--fork")
    cmd.append(str(port))
    proc, out, err = _spawn(cmd, run_dir)
    note = "--fork" if assoc > 1 else ""
    return Started(proc, port, lambda: count_files(store), [port], err, out, note)


STARTERS: dict[str, Callable[[Tools, Path, int], Started]] = {
    "xvactor": start_xvactor,
    "pynetdicom": start_pynetdicom,
    "orthanc": start_orthanc,
    "storescp": start_storescp,
    **{
        name: functools.partial(start_xvactor, extra=extra)
        for name, extra in XVACTOR_VARIANTS.items()
    },
}


def stderr_summary(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    if not lines:
        return "(no stderr output)"
    if lines[0].startswith("Traceback") and len(lines) > 1:
        return f"{lines[0]} ... {lines[-1]}"
    return lines[0]


def wait_ready(started: Started, deadline: float) -> str | None:
    """None when every port accepts connections; else the reason it never did."""
    pending = list(started.ready_ports)
    while pending:
        if started.proc.poll() is not None:
            return (
                f"exited with code {started.proc.returncode}: {stderr_summary(started.stderr_path)}"
            )
        if time.monotonic() > deadline:
            why = stderr_summary(started.stderr_path)
            return f"not listening after {STARTUP_TIMEOUT:.0f} s: {why}"
        if port_open(pending[0]):
            pending.pop(0)
            continue
        time.sleep(0.05)
    return None


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the receiver's process group (it was started in its own session), then
    SIGKILL it if it does not exit."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=STOP_TIMEOUT)
    # leftovers of the group (e.g. storescp --fork children)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------
# one run


@dataclass
class RunResult:
    repeat: int
    receiver: str
    size: str
    assoc: int
    status: str  # ok | mismatch | failed | timeout | sender-error | skipped
    sent: int = 0
    received: int | None = None
    received_after_settle: int | None = None
    bytes_sent: int = 0
    wall_s: float | None = None
    inst_per_s: float | None = None
    mb_per_s: float | None = None
    cpu_s: float | None = None
    cpu_s_at_senders_done: float | None = None
    cpu_s_per_100: float | None = None
    peak_rss_mb: float | None = None
    note: str = ""
    sender_exit_codes: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    receiver: str
    size: str
    assoc: int
    repeat: int
    files: list[Path]
    nbytes: int


@dataclass(frozen=True)
class Settings:
    tools: Tools
    work: Path
    timeout: float
    keep: bool


def start_senders(
    tools: Tools, job: Job, *, port: int, log_dir: Path
) -> list[subprocess.Popen[bytes]]:
    env = dict(os.environ)
    env["TCP_NODELAY"] = "1"
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(job.assoc):
        share = job.files[i :: job.assoc]
        if not share:
            continue
        cmd = [
            tools.storescu,
            "-aet",
            SENDER_AE,
            "-aec",
            RECEIVER_AE[job.receiver],
            "-xe",
            "-R",
            "-nh",
            "-ta",
            "30",
            "-td",
            "120",
            "127.0.0.1",
            str(port),
            *map(str, share),
        ]
        with (log_dir / f"storescu-{i}.log").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env
                )
            )
    return procs


def settle(monitor: ProcMonitor, deadline: float) -> None:
    last = monitor.cpu_seconds()
    while time.monotonic() < deadline:
        time.sleep(SETTLE_WINDOW)
        now = monitor.cpu_seconds()
        if now - last < SETTLE_CPU_S:
            return
        last = now


def sender_tail(log_dir: Path) -> str:
    for path in sorted(log_dir.glob("storescu-*.log")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return f"{path.name}: {lines[-1].strip()}"
    return ""


def _verdict(res: RunResult, started: Started, run_dir: Path) -> None:
    if started.proc.poll() is not None:
        res.status = "failed"
        res.note = f"receiver died (code {started.proc.returncode}): " + stderr_summary(
            started.stderr_path
        )
    elif res.received_after_settle != res.sent:
        # Counted after settling: xvactor acknowledges a small instance once the catalog
        # holds it durably and writes its file at its name a few ms later.
        res.status = "mismatch"
        late = (
            f"; {res.received_after_settle} after settling"
            if res.received_after_settle != res.received
            else ""
        )
        res.note = (
            f"COUNT MISMATCH: sent {res.sent}, received {res.received}{late}. "
            f"{sender_tail(run_dir)}"
        ).strip()
    elif any(res.sender_exit_codes):
        res.status = "sender-error"
        res.note = f"storescu exit codes {res.sender_exit_codes}: {sender_tail(run_dir)}"
    else:
        res.status = "ok"


def _measure(
    cfg: Settings,
    job: Job,
    *,
    started: Started,
    res: RunResult,
    run_dir: Path,
    senders: list[subprocess.Popen[bytes]],
) -> None:
    """Send job.files to the ready receiver and fill in res. `senders` receives the
    storescu processes so the caller can kill them whatever happens."""
    monitor = ProcMonitor(started.proc.pid)
    monitor.start()
    deadline = time.monotonic() + cfg.timeout
    t0 = time.perf_counter()
    senders += start_senders(cfg.tools, job, port=started.port, log_dir=run_dir)
    for p in senders:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            res.status = "timeout"
            res.note = f"run exceeded {cfg.timeout:g} s; killed"
            monitor.stop()
            return
    wall = time.perf_counter() - t0
    res.cpu_s_at_senders_done = monitor.cpu_seconds()
    res.received = started.counter()
    settle(monitor, time.monotonic() + SETTLE_MAX)
    res.received_after_settle = started.counter()
    cpu, rss = monitor.stop()
    res.sender_exit_codes = [p.returncode for p in senders]
    res.wall_s = wall
    res.inst_per_s = res.sent / wall
    res.mb_per_s = res.bytes_sent / 1e6 / wall
    res.cpu_s = cpu
    res.cpu_s_per_100 = cpu / res.sent * 100
    res.peak_rss_mb = rss
    _verdict(res, started, run_dir)


def run_disk(cfg: Settings, job: Job) -> RunResult:
    """The disk ceiling for ``job``: its files written durably by ``job.assoc`` threads."""
    res = RunResult(
        job.repeat, DISK, job.size, job.assoc, "failed", sent=len(job.files), bytes_sent=job.nbytes
    )
    run_dir = cfg.work / "runs" / f"r{job.repeat}-{DISK}-{job.size}-a{job.assoc}"
    try:
        payloads = [f.read_bytes() for f in job.files]  # read before the clock starts
        got = write_durably(payloads, job.assoc, run_dir)
    except OSError as exc:
        res.note = f"could not run: {exc}"
        return res
    finally:
        if not cfg.keep:
            release_space(run_dir)
        os.sync()
    res.received = res.received_after_settle = got.files
    res.wall_s = got.wall_s
    res.inst_per_s = res.sent / got.wall_s
    res.mb_per_s = res.bytes_sent / 1e6 / got.wall_s
    res.cpu_s = got.cpu_s
    res.cpu_s_per_100 = got.cpu_s / res.sent * 100
    if got.error or got.files != res.sent:
        res.status = "failed"
        res.note = got.error or f"wrote {got.files} of {res.sent}"
    else:
        res.status = "ok"
    return res


def run_one(cfg: Settings, job: Job) -> RunResult:
    if job.receiver == DISK:
        return run_disk(cfg, job)
    res = RunResult(
        job.repeat,
        job.receiver,
        job.size,
        job.assoc,
        "failed",
        sent=len(job.files),
        bytes_sent=job.nbytes,
    )
    run_dir = cfg.work / "runs" / f"r{job.repeat}-{job.receiver}-{job.size}-a{job.assoc}"
    run_dir.mkdir(parents=True)
    started: Started | None = None
    senders: list[subprocess.Popen[bytes]] = []
    try:
        try:
            started = STARTERS[job.receiver](cfg.tools, run_dir, job.assoc)
        except (OSError, RuntimeError) as exc:
            res.note = f"could not start: {exc}"
            return res
        res.note = started.note
        why = wait_ready(started, time.monotonic() + STARTUP_TIMEOUT)
        if why is not None:
            res.note = f"failed to start: {why}"
            return res
        _measure(cfg, job, started=started, res=res, run_dir=run_dir, senders=senders)
        return res
    finally:
        for p in senders:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=STOP_TIMEOUT)
        if started is not None:
            stop_process(started.proc)
        if not cfg.keep:
            release_space(run_dir)
        os.sync()  # the next run must not pay for this run's writeback


def release_space(run_dir: Path) -> None:
    """Give a finished run's disk space back without deleting any inode.

    On ext4 without a journal (this VM's root file system) the inode allocator skips every
    inode freed in the last 60 s (300 s more while its table block is dirty), checking
    each one in turn: after a run's few thousand files were deleted, each file the next
    receiver creates cost 0.5-0.7 ms of kernel CPU (``recently_deleted`` in
    ``find_inode_bit``, seen with perf), a tax on whichever receiver ran next.  So files
    are truncated here (freeing their blocks) and the directories removed at the end.
    """
    for path in run_dir.rglob("*"):
        with contextlib.suppress(OSError):
            if path.is_file() and not path.is_symlink() and path.stat().st_size > TRUNCATE_ABOVE:
                os.truncate(path, 0)


# --------------------------------------------------------------------------------------
# report


def median_of(values: Iterator[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def summarize(results: list[RunResult]) -> dict[tuple[str, str, int], dict[str, Any]]:
    keys: list[tuple[str, str, int]] = []
    for r in results:
        key = (r.receiver, r.size, r.assoc)
        if key not in keys:
            keys.append(key)
    out: dict[tuple[str, str, int], dict[str, Any]] = {}
    for key in keys:
        runs = [r for r in results if (r.receiver, r.size, r.assoc) == key]
        ok = [r for r in runs if r.status == "ok"]
        notes = sorted({f"{r.status}: {r.note}" if r.status != "ok" else r.note for r in runs})
        out[key] = {
            "runs": len(runs),
            "ok": len(ok),
            "inst_per_s": median_of(r.inst_per_s for r in ok),
            "mb_per_s": median_of(r.mb_per_s for r in ok),
            "cpu_s_per_100": median_of(r.cpu_s_per_100 for r in ok),
            "peak_rss_mb": median_of(r.peak_rss_mb for r in ok),
            "notes": [n for n in notes if n],
            "bad": sum(r.status not in ("ok", "skipped") for r in runs),
        }
    return out


def fmt(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


def print_report(
    summary: dict[tuple[str, str, int], dict[str, Any]],
    receivers: Sequence[str],
    sizes: Sequence[str],
    assocs: Sequence[int],
) -> None:
    print(
        "| receiver | size | assoc | inst/s | MB/s | CPU s per 100 inst | peak RSS MB | runs ok "
        "| notes |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for size in sizes:
        for assoc in assocs:
            for rcv in receivers:
                s = summary.get((rcv, size, assoc))
                if s is None:
                    continue
                notes = "; ".join(s["notes"]).replace("|", "/")
                if s["bad"]:
                    notes = f"**{s['bad']} bad run(s)** {notes}"
                print(
                    f"| {rcv} | {size} | {assoc} | {fmt(s['inst_per_s'])} | "
                    f"{fmt(s['mb_per_s'])} | {fmt(s['cpu_s_per_100'], 3)} | "
                    f"{fmt(s['peak_rss_mb'])} | {s['ok']}/{s['runs']} | {notes[:300]} |"
                )
    print()
    print_ratios(summary, sizes, assocs)


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}"


def print_ratios(
    summary: dict[tuple[str, str, int], dict[str, Any]],
    sizes: Sequence[str],
    assocs: Sequence[int],
) -> None:
    def get(rcv: str, size: str, assoc: int, key: str) -> float | None:
        s = summary.get((rcv, size, assoc))
        return None if s is None else s[key]

    print("## Ratios (medians; throughput = inst/s ratio, CPU = CPU-per-instance ratio)")
    print()
    print(
        "| size | assoc | xvactor/pynetdicom | xvactor/Orthanc | xvactor/storescp "
        "| CPU xvactor/pynetdicom | CPU xvactor/Orthanc | CPU xvactor/storescp "
        "| xvactor/disk |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for size in sizes:
        for assoc in assocs:
            x = get("xvactor", size, assoc, "inst_per_s")
            xc = get("xvactor", size, assoc, "cpu_s_per_100")
            cells = [
                ratio(x, get(o, size, assoc, "inst_per_s"))
                for o in ("pynetdicom", "orthanc", "storescp")
            ]
            cells += [
                ratio(xc, get(o, size, assoc, "cpu_s_per_100"))
                for o in ("pynetdicom", "orthanc", "storescp")
            ]
            cells.append(ratio(x, get(DISK, size, assoc, "inst_per_s")))
            print(f"| {size} | {assoc} | " + " | ".join(cells) + " |")
    print()
    if "ct" in sizes and 1 in assocs:
        print("Scaling with associations, CT (inst/s at N assoc / at 1 assoc):")
        print()
        print("| receiver | " + " | ".join(f"{n}/1" for n in assocs if n != 1) + " |")
        print("|---|" + "---:|" * len([n for n in assocs if n != 1]))
        for rcv in (*ALL_RECEIVERS, *XVACTOR_VARIANTS):
            if ("ct" not in sizes) or summary.get((rcv, "ct", 1)) is None:
                continue
            base = get(rcv, "ct", 1, "inst_per_s")
            cells = [ratio(get(rcv, "ct", n, "inst_per_s"), base) for n in assocs if n != 1]
            print(f"| {rcv} | " + " | ".join(cells) + " |")
        print()


# --------------------------------------------------------------------------------------
# main


def parse_counts(items: list[str], base: dict[str, int]) -> dict[str, int]:
    counts = dict(base)
    for item in items:
        for part in item.split(","):
            name, _, value = part.partition("=")
            if name not in ALL_SIZES or not value.isdigit() or int(value) < 1:
                raise SystemExit(f"bad --count {part!r}: use SIZE=N with SIZE in {ALL_SIZES}")
            counts[name] = int(value)
    return counts


def csv_list(value: str, allowed: Sequence[str]) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"{bad or value!r} not in {list(allowed)}")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--sizes",
        type=lambda v: csv_list(v, ALL_SIZES),
        default=list(ALL_SIZES),
        help="comma list of tiny,ct,dx (default: all)",
    )
    p.add_argument(
        "--associations",
        type=lambda v: [int(x) for x in v.split(",") if x],
        default=[1, 4],
        help="comma list of association counts (default: 1,4)",
    )
    p.add_argument(
        "--receivers",
        type=lambda v: csv_list(v, (*ALL_RECEIVERS, *XVACTOR_VARIANTS)),
        default=list(ALL_RECEIVERS),
        help="comma list of xvactor,pynetdicom,orthanc,storescp,disk (default: all; "
        "disk is the disk's own ceiling, not a receiver)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="runs per cell; the median is reported (default 3, --quick: 1)",
    )
    p.add_argument(
        "--count",
        action="append",
        default=[],
        metavar="SIZE=N",
        help="instances per size, e.g. --count ct=500,dx=10 "
        f"(default {DEFAULT_COUNTS}; --quick {QUICK_COUNTS})",
    )
    p.add_argument("--quick", action="store_true", help="small counts, 1 repeat: smoke run")
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="per-run limit in seconds; the run is killed and reported (default 600)",
    )
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where test files and receiver storage go (default: a new temp dir)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir and receiver output")
    p.add_argument(
        "--xvactor-cmd",
        default=None,
        help="command that starts xvactor (default: '<this python> -m xvactor')",
    )
    p.add_argument("--dcmtk-bin", default=None, help="directory of DCMTK storescu/storescp")
    p.add_argument("--orthanc", default=None, help="Orthanc binary (default: found on PATH)")
    p.add_argument("--no-json", action="store_true", help="do not write benchmarks/results")
    args = p.parse_args(argv)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 3
    if args.repeat < 1 or any(a < 1 for a in args.associations):
        p.error("--repeat and --associations must be >= 1")
    args.counts = parse_counts(args.count, QUICK_COUNTS if args.quick else DEFAULT_COUNTS)
    return args


def generate_all(sizes: Sequence[str], counts: dict[str, int], work: Path) -> dict[str, Any]:
    specs = size_specs()
    data: dict[str, tuple[list[Path], int]] = {}
    for size in sizes:
        t = time.perf_counter()
        files = generate_files(specs[size], counts[size], work / "data" / size)
        nbytes = sum(f.stat().st_size for f in files)
        data[size] = (files, nbytes)
        os.sync()  # flush the new files now, not during the first measured run
        log(
            f"generated {len(files)} {size} files, {nbytes / 1e6:.1f} MB "
            f"({nbytes / len(files) / 1e3:.1f} KB each) in {time.perf_counter() - t:.1f} s"
        )
    return data


def log_result(r: RunResult, repeats: int) -> None:
    head = f"[{r.repeat + 1}/{repeats}] {r.receiver:10} {r.size:4} a{r.assoc}:"
    if r.status == "ok":
        log(
            f"{head} {r.inst_per_s:8.1f} inst/s {r.mb_per_s:7.1f} MB/s "
            f"cpu {r.cpu_s_per_100:.3f} s/100 rss {fmt(r.peak_rss_mb, 0)} MB {r.note}"
        )
    else:
        log(f"{head} *** {r.status.upper()} *** {r.note}")


def run_matrix(args: argparse.Namespace, cfg: Settings, data: dict[str, Any]) -> list[RunResult]:
    receivers: list[str] = args.receivers
    results: list[RunResult] = []
    broken: dict[str, str] = {}
    for rep in range(args.repeat):
        # rotate the receiver order each repeat so no receiver always runs first
        shift = rep % len(receivers)
        order = receivers[shift:] + receivers[:shift]
        for size in args.sizes:
            files, nbytes = data[size]
            for assoc in args.associations:
                for rcv in order:
                    if rcv in broken:
                        results.append(
                            RunResult(
                                rep, rcv, size, assoc, "skipped", len(files), note=broken[rcv]
                            )
                        )
                        continue
                    r = run_one(cfg, Job(rcv, size, assoc, rep, files, nbytes))
                    results.append(r)
                    log_result(r, args.repeat)
                    if r.status == "failed" and "start" in r.note:
                        broken[rcv] = "not run: this receiver failed to start earlier"
    return results


def print_header(args: argparse.Namespace, info: dict[str, Any], started_at: dt.datetime) -> None:
    git = info["git"]
    print(f"# C-STORE ingest benchmark, {started_at:%Y-%m-%d %H:%M} UTC")
    print()
    print(
        f"{info['nproc']} CPUs, Python {info['python']}, pydicom {info['pydicom']}, "
        f"pynetdicom {info['pynetdicom']}, {info['dcmtk']}, {info['orthanc']}, "
        f"git {git['commit'][:10]}{' (dirty)' if git['dirty'] else ''}. "
        "Sender: DCMTK storescu, TCP_NODELAY=1, one process per association. Counts: "
        + ", ".join(f"{s} {args.counts[s]}" for s in args.sizes)
        + f"; median of {args.repeat} run(s)."
    )
    print()


def print_bad(results: list[RunResult]) -> None:
    bad = [r for r in results if r.status not in ("ok", "skipped")]
    if not bad:
        return
    print(f"**{len(bad)} run(s) did not complete cleanly; they are excluded from the medians:**")
    print()
    for r in bad:
        print(
            f"- {r.receiver} {r.size} a{r.assoc} repeat {r.repeat + 1}: "
            f"{r.status.upper()}: {r.note}"
        )
    print()


def write_json(
    args: argparse.Namespace,
    info: dict[str, Any],
    started_at: dt.datetime,
    data: dict[str, Any],
    results: list[RunResult],
) -> None:
    summary = summarize(results)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"ingest-{started_at:%Y%m%dT%H%M%SZ}.json"
    doc = {
        "started_utc": started_at.isoformat(),
        "machine": info,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "settings": {
            "sender": "DCMTK storescu -xe -R -nh, TCP_NODELAY=1, one process per association",
            "storescp": "+B -dhl -pdu 131072 (--fork when assoc > 1), no fsync",
            "orthanc_config": orthanc_config(Path("<run dir>"), 0, 0),
            "plain_pynetdicom": "max PDU 262144, encoded_dataset() + fsync per file",
            "settle": {"max_s": SETTLE_MAX, "window_s": SETTLE_WINDOW, "cpu_s": SETTLE_CPU_S},
        },
        "files": {s: {"count": len(data[s][0]), "bytes": data[s][1]} for s in data},
        "summary": [
            {"receiver": k[0], "size": k[1], "assoc": k[2], **v} for k, v in summary.items()
        ],
        "runs": [asdict(r) for r in results],
    }
    path.write_text(json.dumps(doc, indent=2))
    log(f"wrote {path}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    tools = Tools(
        storescu=find_dcmtk("storescu", args.dcmtk_bin),
        storescp=find_dcmtk("storescp", args.dcmtk_bin),
        orthanc=find_orthanc(args.orthanc),
        xvactor_cmd=(
            shlex.split(args.xvactor_cmd) if args.xvactor_cmd else [sys.executable, "-m", "xvactor"]
        ),
    )
    if "orthanc" in args.receivers and tools.orthanc is None:
        log("Orthanc not found: it will be reported as failed")
    info = machine_info(tools)
    log(f"machine: {json.dumps(info)}")

    own_tmp = args.workdir is None
    work = Path(tempfile.mkdtemp(prefix="xvactor-ingest-")) if own_tmp else args.workdir
    work.mkdir(parents=True, exist_ok=True)
    started_at = dt.datetime.now(dt.UTC)
    try:
        data = generate_all(args.sizes, args.counts, work)
        results = run_matrix(args, Settings(tools, work, args.timeout, args.keep), data)
    finally:
        if args.keep:
            log(f"work dir kept: {work}")
        elif own_tmp:
            shutil.rmtree(work, ignore_errors=True)
        else:
            shutil.rmtree(work / "runs", ignore_errors=True)

    print_header(args, info, started_at)
    print_report(summarize(results), args.receivers, args.sizes, args.associations)
    print_bad(results)
    mismatches = [r for r in results if r.status == "mismatch"]
    if mismatches:
        log(f"!!! {len(mismatches)} run(s) with a received-count MISMATCH (see above) !!!")
    if not args.no_json:
        write_json(args, info, started_at, data, results)
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
