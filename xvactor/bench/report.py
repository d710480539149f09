"""The bench's results: a JSON document (machine, versions, workload, figures) and tables.

:func:`document` builds the JSON report; :func:`summary_text` the table printed at the end
(one run in detail, or the sweep/compare table with ratios).  Pure functions of the run
results, apart from :func:`machine_info`, which looks at the machine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from importlib import metadata
from pathlib import Path
from typing import Any

from xvactor.bench.plan import Cell, ratios, summarize
from xvactor.bench.runner import RunResult, Workload
from xvactor.bench.wire import Target

__all__ = ["document", "git_info", "machine_info", "package_version", "run_figures", "summary_text"]

_SOURCE = Path(__file__).resolve().parents[2]


def package_version(package: str) -> str:
    """The installed version of ``package``, or ``"not installed"``."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_info() -> dict[str, Any]:
    """The commit of the xvactor source tree and whether it has changes (``{}`` if none)."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", "-C", str(_SOURCE), *args],
                capture_output=True, text=True, timeout=10, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    if not commit:
        return {}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def machine_info() -> dict[str, Any]:
    """CPU, memory, kernel, Python and package versions, and the xvactor commit if known."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return {
        "hostname": platform.node(),
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "load_average": load,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "xvactor": package_version("xvactor"),
        "pydicom": package_version("pydicom"),
        "pynetdicom": package_version("pynetdicom"),
        "git": git_info(),
    }


def _statuses(statuses: dict[int, int]) -> dict[str, int]:
    return {f"0x{code:04X}": n for code, n in sorted(statuses.items())}


def run_figures(result: RunResult) -> dict[str, Any]:
    """Everything counted in one run, JSON-ready."""
    tally = result.tally
    return {
        "target": result.target,
        "associations": result.associations,
        "processes": result.processes,
        "repeat": result.repeat,
        "ok": result.ok,
        "elapsed_s": round(result.elapsed, 4),
        "attempts": tally.attempts,
        "succeeded": tally.ok,
        "bytes": tally.bytes,
        "per_second": round(result.per_second, 2),
        "mb_per_second": round(result.mb_per_second, 2),
        "associations_established": tally.associations,
        "associations_per_second": round(result.associations_per_second, 2),
        "latency_ms": tally.latency.summary(),
        "association_setup_ms": tally.setup.summary(),
        "first_response_ms": tally.first.summary() if tally.first.count else None,
        "matches": tally.matches,
        "statuses": _statuses(tally.statuses),
        "errors": dict(sorted(tally.errors.items())),
        "error_examples": dict(sorted(tally.examples.items())),
        "problems": result.problems,
        "timeline": result.timeline(),
        "latency_histogram_us": tally.latency.to_dict()["counts"],
    }


def document(
    command: str,
    workload: Workload,
    targets: Sequence[Target],
    results: Sequence[RunResult],
    *,
    started: dt.datetime | None = None,
) -> dict[str, Any]:
    """The JSON report of a bench invocation."""
    cells = summarize(results)
    return {
        "tool": "xvactor bench",
        "command": command,
        "started": (started or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "workload": {
            "kind": workload.kind,
            "count_per_association": workload.count,
            "duration_s": workload.duration,
            "rate_per_second": workload.rate,
            "new_association_per_request": workload.new_association,
            **workload.description,
        },
        "targets": [
            {"label": str(t), "host": t.host, "port": t.port, "ae_title": t.called_ae_title}
            for t in targets
        ],
        "runs": [run_figures(r) for r in results],
        "cells": [asdict(c) for c in cells],
        "ratios": ratios(cells),
    }


def _ms(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _detail(result: RunResult, kind: str) -> list[str]:
    tally = result.tally
    unit = {"store": "instances", "echo": "echoes", "find": "queries"}.get(kind, "requests")
    lines = [
        f"target            {result.target}",
        f"associations      {result.associations} ({result.processes} processes), "
        f"{tally.associations} established",
        f"{unit:<17} {tally.ok} of {tally.attempts} succeeded in {result.elapsed:.2f} s",
        f"rate              {result.per_second:.1f} {unit}/s"
        + (f", {result.mb_per_second:.1f} MB/s" if kind == "store" else "")
        + (f", {result.associations_per_second:.1f} associations/s" if kind == "echo" else ""),
    ]
    rows = [("latency", tally.latency), ("association set-up", tally.setup)]
    if tally.first.count:
        rows.insert(0, ("first response", tally.first))
    lines.append(f"{'':<19}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}  (ms)")
    for name, histogram in rows:
        s = histogram.summary()
        values = [float(s[k]) for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")]
        lines.append(f"{name:<19}" + "".join(f"{_ms(v):>9}" for v in values))
    if kind == "find":
        lines.append(f"matches           {tally.matches}")
    statuses = ", ".join(f"{k}: {v}" for k, v in _statuses(tally.statuses).items()) or "none"
    lines.append(f"statuses          {statuses}")
    errors = ", ".join(f"{k}: {v}" for k, v in sorted(tally.errors.items())) or "none"
    lines.append(f"errors            {errors}")
    lines.extend(f"  {kind:<15} {text}" for kind, text in sorted(tally.examples.items()))
    lines.extend(f"problem           {problem}" for problem in result.problems)
    return lines


def _table(cells: Sequence[Cell], kind: str) -> list[str]:
    header = "| target | assoc | /s | MB/s | p50 ms | p90 ms | p99 ms | max ms | runs ok |"
    if kind == "echo":
        header = header.replace("MB/s", "assoc/s")
    lines = [header, "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in cells:
        second = c.associations_per_second if kind == "echo" else c.mb_per_second
        lines.append(
            f"| {c.target} | {c.associations} | {c.per_second:.1f} | {second:.1f} | "
            f"{_ms(c.p50_ms)} | {_ms(c.p90_ms)} | {_ms(c.p99_ms)} | {_ms(c.max_ms)} | "
            f"{c.good_runs}/{c.runs} |"
        )
    return lines


def summary_text(kind: str, results: Sequence[RunResult]) -> str:
    """The end-of-run summary: details of a single run, or the table of cells and ratios."""
    if len(results) == 1:
        return "\n".join(_detail(results[0], kind))
    cells = summarize(results)
    lines = _table(cells, kind)
    rows = ratios(cells)
    if rows:
        lines += ["", f"ratios to {rows[0]['reference']} (rate / its rate):"]
        lines += [f"  {r['target']} at {r['associations']}: {r['ratio']:.2f}" for r in rows]
    bad = [r for r in results if not r.ok]
    for r in bad:
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(r.tally.errors.items()))
        detail = "; ".join(r.problems) or errors or f"statuses {_statuses(r.tally.statuses)}"
        lines.append(f"! {r.target} x{r.associations} run {r.repeat}: {detail}")
    return "\n".join(lines)
