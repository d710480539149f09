"""Sweep with ``xvactor bench``: xvactor vs DCMTK storescp vs plain pynetdicom, one run.

Two measurements, both in one invocation so ratios compare like with like:

1. **Sweep**: the bench's store workload at each concurrency (``--sweep``) against three
   receivers started once: ``xvactor serve`` (default settings, 2 receive workers),
   DCMTK ``storescp --fork`` (writes files, no fsync) and ``plain_pynetdicom_scp.py``
   (writes + fsyncs).  Runs alternate between receivers; each cell is the median of
   ``--repeat`` runs of ``--duration`` seconds.  storescp's and pynetdicom's files are
   deleted after each run (xvactor's stay: its catalog owns them).
2. **Generator check** (issue 7): N DCMTK ``storescu`` processes (``--repeat M`` of one
   file) against ``storescp --fork --ignore`` vs ``xvactor bench store`` with N
   associations x M instances against the same receiver; the ratio should be >= 0.8.

    .venv/bin/python benchmarks/bench_sweep.py                  # ~6 min on 2 cores
    .venv/bin/python benchmarks/bench_sweep.py --quick          # ~1 min smoke run

Results: ``benchmarks/results/bench-<UTC timestamp>.json``; tables on stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xvactor.bench.display import LiveLine
from xvactor.bench.plan import Plan, run_plan
from xvactor.bench.report import document, machine_info
from xvactor.bench.runner import RunResult, Workload, run_load
from xvactor.bench.wire import Target
from xvactor.bench.workload import Geometry, synthetic_templates
from xvactor.testing.datasets import SIZES, make_sized, write_in_transfer_syntax
from xvactor.testing.dcmtk import StoreSCP, dcmtk_env, require_tool
from xvactor.testing.net import free_port, wait_for_port
from xvactor.testing.procs import ServeProcess

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
ELE = "1.2.840.10008.1.2.1"
CHECK_COUNT = {"tiny": 2000, "ct": 600, "dx": 10}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _empty(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            path.unlink(missing_ok=True)


def sweep(args: argparse.Namespace, work: Path, size: str) -> dict[str, Any]:
    geometry = Geometry(*SIZES[size])
    workload = Workload(
        "store",
        duration=args.duration,
        templates=synthetic_templates(geometry, 1),
        description={"size": size},
    )
    scp_dir, plain_dir = work / f"storescp-{size}", work / f"plain-{size}"
    plain_port = free_port()
    plain = subprocess.Popen(
        [sys.executable, str(BENCH_DIR / "plain_pynetdicom_scp.py"), str(plain_port),
         str(plain_dir), "PLAINSCP"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", plain_port, timeout=60)
        with (
            ServeProcess(work / f"xvactor-{size}", ae_title="XVACTOR") as node,
            StoreSCP(scp_dir, fork=True, extra_args=("-pdu", "131072")) as scp,
        ):
            targets = [
                Target("127.0.0.1", node.port, "XVACTOR", label="xvactor"),
                Target("127.0.0.1", scp.port, scp.ae_title, label="storescp"),
                Target("127.0.0.1", plain_port, "PLAINSCP", label="pynetdicom"),
            ]

            def between(result: RunResult) -> None:
                _empty(scp_dir)
                _empty(plain_dir)
                log(f"  {size} {result.target} x{result.associations} #{result.repeat}: "
                    f"{result.per_second:.0f}/s ok={result.ok}")  # fmt: skip

            plan = Plan(targets, args.sweep, args.repeat)
            results = run_plan(
                plan, workload, progress=lambda t, n, r: LiveLine(f"{t} x{n}"), between=between
            )
    finally:
        plain.terminate()
        plain.wait(20)
    return document("benchmarks/bench_sweep.py", workload, targets, results)


def _storescu_rate(path: Path, port: int, processes: int, count: int) -> float:
    command = [require_tool("storescu"), "-xe", "-R", "-nh", "-aec", "STORESCP", "-pdu",
               "131072", "--repeat", str(count), "127.0.0.1", str(port), str(path)]  # fmt: skip
    started = time.monotonic()
    running = [
        subprocess.Popen(
            command, env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(processes)
    ]
    codes = [p.wait(600) for p in running]
    elapsed = time.monotonic() - started
    if any(codes):
        raise SystemExit(f"storescu failed: exit codes {codes}")
    return processes * count / elapsed


def generator_check(args: argparse.Namespace, work: Path, size: str) -> list[dict[str, Any]]:
    count = max(10, int(CHECK_COUNT[size] * (0.2 if args.quick else 1)))
    path = write_in_transfer_syntax(make_sized(size), ELE, work / f"check-{size}.dcm")
    templates = synthetic_templates(Geometry(*SIZES[size]), 1)
    rows = []
    with StoreSCP(work / "ignored", fork=True, extra_args=("-pdu", "131072", "--ignore")) as scp:
        target = Target("127.0.0.1", scp.port, scp.ae_title, label="storescp --ignore")
        for n in args.sweep:
            ours, theirs = [], []
            for _ in range(args.repeat):
                theirs.append(_storescu_rate(path, scp.port, n, count))
                result = run_load(target, Workload("store", count=count, templates=templates), n)
                if not result.ok:
                    raise SystemExit(f"bench run failed: {result.tally.errors} {result.problems}")
                ours.append(result.per_second)
            row = {
                "size": size, "processes_or_associations": n, "count_each": count,
                "storescu_per_second": round(statistics.median(theirs), 1),
                "bench_per_second": round(statistics.median(ours), 1),
            }  # fmt: skip
            row["ratio"] = round(row["bench_per_second"] / row["storescu_per_second"], 2)
            log(f"  check {size} x{n}: storescu {theirs} bench {ours}")
            rows.append(row)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="tiny,ct", help="tiny,ct,dx (default tiny,ct)")
    parser.add_argument("--sweep", default="1,2,4,8", help="concurrencies (default 1,2,4,8)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (median)")
    parser.add_argument("--quick", action="store_true", help="1 s runs, 1 repeat")
    parser.add_argument("--no-check", action="store_true", help="skip the generator check")
    args = parser.parse_args()
    args.sweep = [int(n) for n in args.sweep.split(",")]
    if args.quick:
        args.duration, args.repeat = 1.0, 1
    sizes = [s for s in args.sizes.split(",") if s]
    work = Path(tempfile.mkdtemp(prefix="xvactor-bench-sweep-"))
    started = dt.datetime.now(dt.UTC)
    record: dict[str, Any] = {"machine": machine_info(), "started": started.isoformat()}
    record["machine"]["dcmtk"] = subprocess.run(
        [require_tool("storescu"), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()[0]
    record["settings"] = {"sweep": args.sweep, "duration_s": args.duration,
                          "repeat": args.repeat, "sizes": sizes}  # fmt: skip
    try:
        record["sweeps"] = {size: sweep(args, work, size) for size in sizes}
        if not args.no_check:
            record["generator_check"] = [
                row for size in sizes for row in generator_check(args, work, size)
            ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    RESULTS_DIR.mkdir(exist_ok=True)
    out = RESULTS_DIR / f"bench-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.write_text(json.dumps(record, indent=1) + "\n")
    print_tables(record)
    print(f"\nwritten {out.relative_to(BENCH_DIR.parent)}")
    return 0


def print_tables(record: dict[str, Any]) -> None:
    for size, doc in record["sweeps"].items():
        cells = summarize_doc(doc)
        names = list(dict.fromkeys(c["target"] for c in cells))
        print(f"\n### {size}: instances/s (median), p99 latency ms in brackets\n")
        print("| associations | " + " | ".join(names) + " | xvactor / storescp | "
              "xvactor / pynetdicom |")  # fmt: skip
        print("|---:|" + "---:|" * (len(names) + 2))
        for n in sorted({c["associations"] for c in cells}):
            row = {c["target"]: c for c in cells if c["associations"] == n}
            figures = [f"{row[t]['per_second']:.0f} ({row[t]['p99_ms']:.1f})" for t in names]
            x, s, p = (row[t]["per_second"] for t in ("xvactor", "storescp", "pynetdicom"))
            print(f"| {n} | " + " | ".join(figures) + f" | {x / s:.2f} | {x / p:.2f} |")
    if "generator_check" in record:
        print("\n### generator check: bench vs the same number of storescu processes\n")
        print("| size | N | storescu /s | bench /s | ratio |")
        print("|---|---:|---:|---:|---:|")
        for row in record["generator_check"]:
            print(f"| {row['size']} | {row['processes_or_associations']} | "
                  f"{row['storescu_per_second']:.0f} | {row['bench_per_second']:.0f} | "
                  f"{row['ratio']:.2f} |")  # fmt: skip


def summarize_doc(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The document's cells (medians per target and concurrency)."""
    cells: list[dict[str, Any]] = doc["cells"]
    return cells


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
