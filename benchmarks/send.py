"""Send benchmark: ``xvactor store`` vs DCMTK ``storescu`` vs a plain pynetdicom loop.

Each sender sends the same files over one association to DCMTK ``storescp`` (bit
preserving, files discarded after each run); CT-sized (0.5 MB) and 5 KB objects; median of
``--runs`` runs, all in one process run so ratios compare like with like.  Results go to
``benchmarks/results/send-<timestamp>.json``.

    .venv/bin/python benchmarks/send.py [--count 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from xvactor.testing.datasets import make_sized, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP, dcmtk_env, require_tool

ELE = "1.2.840.10008.1.2.1"

STORE = """
import sys, argparse
from xvactor import cli_store
parser = argparse.ArgumentParser(); cli_store.add_parser(parser.add_subparsers())
sys.exit(cli_store.run(parser.parse_args(sys.argv[1:])))
"""

PYNETDICOM = """
import socket, sys
from pynetdicom import AE, evt
from pydicom import dcmread
def nodelay(event):
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
host, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
ae = AE(); ae.maximum_pdu_size = 262144; ae.dimse_timeout = 1
first = dcmread(files[0], stop_before_pixels=True)
ae.add_requested_context(first.SOPClassUID, [str(first.file_meta.TransferSyntaxUID)])
def associate():
    assoc = ae.associate(host, port, ae_title="STORESCP",
                         evt_handlers=[(evt.EVT_CONN_OPEN, nodelay)])
    assert assoc.is_established
    return assoc
assoc, lost = associate(), 0
for path in files:
    for _ in range(5):
        status = assoc.send_c_store(dcmread(path))
        if status and status.Status == 0:
            break
        # Stock send_c_store loses a response now and then (a reactor race): the
        # association is aborted after dimse_timeout; a plain loop re-associates, resends.
        lost += 1
        assoc = associate()
    else:
        sys.exit(f"cannot send {path}")
assoc.release()
print(lost)
"""


def corpus(directory: Path, size: str, count: int) -> list[str]:
    directory.mkdir(parents=True)
    return [
        str(write_in_transfer_syntax(make_sized(size), ELE, directory / f"{n:05}.dcm"))
        for n in range(count)
    ]


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Seconds one send takes.  A run that fails is repeated (up to 3 times): stock
    pynetdicom's send_c_store occasionally loses a response (a reactor race)."""
    for _ in range(2):
        try:
            return _timed(command, env)
        except SystemExit as exc:
            print(f"retrying after: {exc}", file=sys.stderr)
    return _timed(command, env)


def _timed(command: list[str], env: dict[str, str] | None) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=600, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{command[0]} failed: {done.stderr.strip()[-800:]}")
    if done.stdout.strip().isdigit() and int(done.stdout) > 0:
        print(f"pynetdicom loop: {done.stdout.strip()} lost responses", file=sys.stderr)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="xvactor-send-"))
    results: dict[str, dict[str, float]] = {}
    try:
        for size in ("ct", "tiny"):
            files = corpus(work / size, size, args.count)
            senders = {
                "xvactor store": lambda port, files=files: timed(
                    [sys.executable, "-c", STORE, "store", "127.0.0.1", str(port), *files,
                     "--aec", "STORESCP"]),
                "storescu": lambda port, files=files: timed(
                    [require_tool("storescu"), "-aec", "STORESCP", "127.0.0.1", str(port),
                     *files], env=dcmtk_env()),
                "pynetdicom loop": lambda port, files=files: timed(
                    [sys.executable, "-c", PYNETDICOM, "127.0.0.1", str(port), *files]),
            }  # fmt: skip
            times: dict[str, list[float]] = {name: [] for name in senders}
            for _ in range(args.runs):
                for name, send in senders.items():
                    out = work / "out"
                    with StoreSCP(out) as scp:
                        times[name].append(send(scp.port))
                    shutil.rmtree(out)
            results[size] = {name: args.count / statistics.median(t) for name, t in times.items()}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    record = {"count": args.count, "runs": args.runs, "per_second": results}
    out = Path(__file__).parent / "results" / f"send-{stamp}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print("| size | xvactor store /s | pynetdicom loop /s | storescu /s | vs loop | vs storescu |")
    print("|---|---:|---:|---:|---:|---:|")
    for size, rates in results.items():
        ours, loop, dcmtk = rates["xvactor store"], rates["pynetdicom loop"], rates["storescu"]
        print(f"| {size} | {ours:.0f} | {loop:.0f} | {dcmtk:.0f} | {ours / loop:.2f}x | "
              f"{ours / dcmtk:.2f}x |")  # fmt: skip
    print(f"written {out}")


if __name__ == "__main__":
    main()
