"""Sweeps and comparisons: one workload, several concurrencies, several targets, one run.

``--sweep 1,2,4,8`` runs the workload at each concurrency; ``--compare`` adds targets.
Runs are ordered concurrency, then repeat, then target, so targets alternate and slow
drift of a noisy machine hits them alike.  Each (target, concurrency) cell is summarised
by the median over its repeats (the benchmarks' convention), and each target's rate is
divided by the first target's at the same concurrency.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from xvactor.bench.runner import Progress, RunResult, Workload, run_load
from xvactor.bench.wire import Target

__all__ = ["Cell", "Plan", "ratios", "run_plan", "summarize"]


@dataclass(frozen=True)
class Plan:
    """Targets (the first is the reference), concurrencies, repeats, worker processes."""

    targets: Sequence[Target]
    concurrency: Sequence[int]
    repeat: int = 1
    processes: int | None = None


@dataclass(frozen=True)
class Cell:
    """The median figures of one target at one concurrency."""

    target: str
    associations: int
    runs: int
    good_runs: int
    per_second: float
    mb_per_second: float
    associations_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    setup_p50_ms: float


def run_plan(
    plan: Plan,
    workload: Workload,
    *,
    progress: Callable[[Target, int, int], Progress | None] | None = None,
    between: Callable[[RunResult], None] | None = None,
    done: Callable[[RunResult], None] | None = None,
) -> list[RunResult]:
    """Run every cell of ``plan``; ``progress(target, n, repeat)`` may give a display.

    ``between`` is called after each run (a benchmark empties receivers' directories
    there); ``done`` too, before it (to print a line per run).
    """
    results: list[RunResult] = []
    for associations in plan.concurrency:
        for repeat in range(1, plan.repeat + 1):
            for target in plan.targets:
                display = progress(target, associations, repeat) if progress else None
                result = run_load(
                    target,
                    workload,
                    associations,
                    processes=plan.processes,
                    repeat=repeat,
                    progress=display,
                )
                results.append(result)
                if done is not None:
                    done(result)
                if between is not None:
                    between(result)
    return results


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarize(results: Sequence[RunResult]) -> list[Cell]:
    """One :class:`Cell` per (target, concurrency), in the order first seen.

    Medians are over the good runs (no errors, all successes); a cell whose runs all
    failed shows the medians of all of them.
    """
    keys = list(dict.fromkeys((r.target, r.associations) for r in results))
    cells = []
    for target, associations in keys:
        runs = [r for r in results if (r.target, r.associations) == (target, associations)]
        good = [r for r in runs if r.ok] or runs
        summaries = [r.tally.latency.summary() for r in good]
        cells.append(
            Cell(
                target=target,
                associations=associations,
                runs=len(runs),
                good_runs=sum(r.ok for r in runs),
                per_second=_median([r.per_second for r in good]),
                mb_per_second=_median([r.mb_per_second for r in good]),
                associations_per_second=_median([r.associations_per_second for r in good]),
                p50_ms=_median([float(s["p50_ms"]) for s in summaries]),
                p90_ms=_median([float(s["p90_ms"]) for s in summaries]),
                p99_ms=_median([float(s["p99_ms"]) for s in summaries]),
                max_ms=_median([float(s["max_ms"]) for s in summaries]),
                setup_p50_ms=_median([float(r.tally.setup.summary()["p50_ms"]) for r in good]),
            )
        )
    return cells


def ratios(cells: Sequence[Cell]) -> list[dict[str, float | int | str]]:
    """Each target's rate over the first target's, at each concurrency."""
    if not cells:
        return []
    reference = cells[0].target
    base = {c.associations: c.per_second for c in cells if c.target == reference}
    rows: list[dict[str, float | int | str]] = []
    for cell in cells:
        if cell.target == reference or not base.get(cell.associations):
            continue
        rows.append(
            {
                "target": cell.target,
                "reference": reference,
                "associations": cell.associations,
                "ratio": round(cell.per_second / base[cell.associations], 3),
            }
        )
    return rows
