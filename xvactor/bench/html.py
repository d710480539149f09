"""A self-contained HTML picture of a bench report: inline SVG, no script, no network.

Three charts from the JSON :func:`xvactor.bench.report.document`: throughput over time
(one line per run), the latency distribution (latency at each percentile, per run), and for
sweeps the median rate per concurrency and target; then the summary table.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

__all__ = ["latency_curve", "render"]

_W, _H, _PAD = 720, 300, 48
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#17becf")
_PERCENTILES = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100)
_MAX_SERIES = 12


def latency_curve(histogram: dict[str, int]) -> list[tuple[float, float]]:
    """``(percentile, latency ms)`` points from a report's ``latency_histogram_us``."""
    buckets = sorted((int(k), n) for k, n in histogram.items())
    total = sum(n for _, n in buckets)
    if not total:
        return []
    points: list[tuple[float, float]] = []
    for q in _PERCENTILES:
        rank = max(1, math.ceil(q / 100 * total))
        seen = 0
        for value, n in buckets:
            seen += n
            if seen >= rank:
                points.append((q, value / 1e3))
                break
    return points


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=0.0)
    if top <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(top))
    for step in (1, 2, 5, 10):
        if top <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)


def _chart(
    title: str,
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    x_label: str,
    y_label: str,
    *,
    x_ticks: Sequence[float] | None = None,
) -> str:
    series = [(name, pts) for name, pts in series if pts][:_MAX_SERIES]
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x_min, x_max = (min(xs), max(xs)) if xs else (0.0, 1.0)
    x_max = x_max if x_max > x_min else x_min + 1
    y_max = _scale(ys)

    def px(x: float) -> float:
        return _PAD + (x - x_min) / (x_max - x_min) * (_W - 2 * _PAD)

    def py(y: float) -> float:
        return _H - _PAD - y / y_max * (_H - 2 * _PAD)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H + 20 * len(series)}"'
        f' role="img"><title>{html.escape(title)}</title>',
        f'<text x="{_W / 2}" y="18" text-anchor="middle" font-weight="bold">'
        f"{html.escape(title)}</text>",
        f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD}" y2="{_H - _PAD}" stroke="#000"/>',
        f'<line x1="{_PAD}" y1="{_PAD}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#000"/>',
    ]
    for i in range(5):
        y = y_max * i / 4
        parts.append(
            f'<text x="{_PAD - 4}" y="{py(y) + 4:.1f}" text-anchor="end" font-size="11">{y:g}'
            f'</text><line x1="{_PAD}" y1="{py(y):.1f}" x2="{_W - _PAD}" y2="{py(y):.1f}" '
            f'stroke="#ddd"/>'
        )
    ticks = x_ticks if x_ticks is not None else [x_min + (x_max - x_min) * i / 5 for i in range(6)]
    for x in ticks:
        parts.append(
            f'<text x="{px(x):.1f}" y="{_H - _PAD + 16}" text-anchor="middle" font-size="11">'
            f"{x:g}</text>"
        )
    parts.append(
        f'<text x="{_W / 2}" y="{_H - 8}" text-anchor="middle" font-size="12">'
        f'{html.escape(x_label)}</text><text x="12" y="{_H / 2}" font-size="12" '
        f'transform="rotate(-90 12 {_H / 2})" text-anchor="middle">{html.escape(y_label)}</text>'
    )
    for index, (name, pts) in enumerate(series):
        colour = _COLOURS[index % len(_COLOURS)]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}"/>'
        )
        if len(pts) < 12:
            parts.extend(
                f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts
            )
        legend_y = _H + 14 + 20 * index
        parts.append(
            f'<rect x="{_PAD}" y="{legend_y - 9}" width="12" height="4" fill="{colour}"/>'
            f'<text x="{_PAD + 18}" y="{legend_y}" font-size="12">{html.escape(name)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _run_name(run: dict[str, Any], many_repeats: bool) -> str:
    name = f"{run['target']} x{run['associations']}"
    return f"{name} #{run['repeat']}" if many_repeats else name


def render(report: dict[str, Any]) -> str:
    """The HTML page of ``report`` (a :func:`xvactor.bench.report.document`)."""
    runs = report.get("runs", [])
    many = any(run["repeat"] > 1 for run in runs)
    shown = [run for run in runs if run["repeat"] == 1] or runs
    unit = "requests/s"
    throughput = [
        (_run_name(r, many), [(p["t"], p["per_second"]) for p in r["timeline"]]) for r in shown
    ]
    latency = [(_run_name(r, many), latency_curve(r["latency_histogram_us"])) for r in shown]
    charts = [
        _chart("Throughput over time", throughput, "seconds since start", unit),
        _chart(
            "Latency distribution",
            latency,
            "percentile",
            "latency (ms)",
            x_ticks=(0, 25, 50, 75, 90, 99, 100),
        ),
    ]
    cells = report.get("cells", [])
    concurrencies = sorted({c["associations"] for c in cells})
    if len(concurrencies) > 1:
        targets = list(dict.fromkeys(c["target"] for c in cells))
        sweep = [
            (t, [(c["associations"], c["per_second"]) for c in cells if c["target"] == t])
            for t in targets
        ]
        charts.append(
            _chart("Median rate by concurrency", sweep, "associations", unit, x_ticks=concurrencies)
        )
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c[k]))}</td>" for k in _COLUMNS) + "</tr>"
        for c in cells
    )
    head = "".join(f"<th>{html.escape(k)}</th>" for k in _COLUMNS)
    workload = html.escape(", ".join(f"{k}={v}" for k, v in report.get("workload", {}).items()))
    machine = report.get("machine", {})
    about = html.escape(
        f"{machine.get('nproc')} CPUs {machine.get('cpu_model', '')}, Python "
        f"{machine.get('python')}, xvactor {machine.get('xvactor')} "
        f"{machine.get('git', {}).get('commit', '')[:12]}"
    )
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>xvactor bench</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:2px 8px;text-align:right}</style></head><body>"
        f"<h1>xvactor bench {html.escape(report.get('workload', {}).get('kind', ''))}</h1>"
        f"<p>{html.escape(report.get('command', ''))}</p><p>Workload: {workload}</p>"
        f"<p>Machine: {about}; started {html.escape(report.get('started', ''))}</p>"
        + "".join(f"<div>{chart}</div>" for chart in charts)
        + f"<h2>Summary (medians of runs)</h2><table><tr>{head}</tr>{rows}</table>"
        "</body></html>\n"
    )


_COLUMNS = (
    "target", "associations", "runs", "good_runs", "per_second", "mb_per_second",
    "p50_ms", "p90_ms", "p99_ms", "max_ms", "setup_p50_ms",
)  # fmt: skip
