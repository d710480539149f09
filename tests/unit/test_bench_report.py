"""Report contents: figures per run, medians per cell, ratios, the HTML picture, CLI usage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xvactor import cli_bench
from xvactor.bench.html import latency_curve, render
from xvactor.bench.metrics import Tally
from xvactor.bench.plan import ratios, summarize
from xvactor.bench.report import document, run_figures, summary_text
from xvactor.bench.runner import RunResult, Workload
from xvactor.bench.wire import Target


def _result(
    target: str, associations: int, repeat: int, rate: int, *, fail: bool = False
) -> RunResult:
    tally = Tally()
    for i in range(rate):
        tally.attempts += 1
        tally.completed(0x0000, 0.001 * (1 + i % 10), 5000, i / rate)
    tally.setup.record(0.004)
    tally.associations = associations
    if fail:
        tally.attempts += 1
        tally.failed("timeout", "no answer from X")
    return RunResult(target, associations, 1, repeat, 1.0, tally)


RESULTS = [
    _result("a", 1, 1, 100), _result("b", 1, 1, 50),
    _result("a", 1, 2, 120), _result("b", 1, 2, 60, fail=True),
    _result("a", 1, 3, 110), _result("b", 1, 3, 55),
    _result("a", 2, 1, 200), _result("b", 2, 1, 300),
]  # fmt: skip


def test_cells_are_medians_of_good_runs_and_ratios_compare_to_the_first_target() -> None:
    cells = summarize(RESULTS)
    assert [(c.target, c.associations) for c in cells] == [("a", 1), ("b", 1), ("a", 2), ("b", 2)]
    assert cells[0].per_second == pytest.approx(110)
    assert (cells[1].runs, cells[1].good_runs) == (3, 2)
    assert cells[1].per_second == pytest.approx(52.5)  # the failed run is left out
    assert cells[0].mb_per_second == pytest.approx(110 * 5000 / 1e6)
    assert [r["ratio"] for r in ratios(cells)] == pytest.approx([52.5 / 110, 1.5], abs=1e-3)


def test_run_figures_hold_what_the_issue_asks_for() -> None:
    figures = run_figures(RESULTS[3])
    assert figures["per_second"] == 60
    assert figures["statuses"] == {"0x0000": 60}
    assert figures["errors"] == {"timeout": 1}
    assert figures["error_examples"] == {"timeout": "no answer from X"}
    assert not figures["ok"]
    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms"):
        assert key in figures["latency_ms"]
        assert key in figures["association_setup_ms"]
    assert figures["latency_ms"]["max_ms"] == 10
    assert sum(p["per_second"] for p in figures["timeline"]) * 0.25 == pytest.approx(60)


def test_document_and_html() -> None:
    workload = Workload("store", count=10, description={"size": "tiny"})
    report = document("xvactor bench store ...", workload, [Target("h", 1, "A")], RESULTS)
    json.dumps(report)
    assert report["machine"]["nproc"] >= 1
    assert report["machine"]["python"]
    assert report["workload"]["size"] == "tiny"
    assert len(report["runs"]) == 8
    assert len(report["cells"]) == 4
    page = render(report)
    assert page.count("<svg") == 3  # throughput, latency, rate by concurrency
    assert "<script" not in page
    assert "src=" not in page and "href=" not in page  # self-contained
    curve = latency_curve(report["runs"][0]["latency_histogram_us"])
    assert curve[0][0] == 0 and curve[-1][0] == 100
    assert curve[-1][1] >= curve[0][1]


def test_summary_text() -> None:
    single = summary_text("store", [RESULTS[3]])
    assert "60 of 61 succeeded" in single
    assert "timeout: 1" in single and "no answer from X" in single
    table = summary_text("store", RESULTS)
    assert "| a | 1 | 110.0 |" in table
    assert "b at 2: 1.50" in table
    assert "! b x1 run 2" in table


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["store", "--aec", "X"], "give PEER PORT"),
        (["store", "h", "1", "--to", "x", "--aec", "X"], "not both"),
        (["store", "h", "1", "--compare", "nonsense"], "no --config"),
        (["store", "h", "1", "--aec", "WAY-TOO-LONG-AE-TITLE"], "not an AE title"),
        (["store", "h", "1", "--files", "/nonexistent/x.dcm"], "no such file"),
        (["find", "h", "1", "--query", "PatientID=X"], "QueryRetrieveLevel"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_bench.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("xvactor bench: ") and message in err
    assert err.count("\n") == 1


def test_unknown_destination(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[[destinations]]\nname = "pacs"\nae_title = "PACS"\nhost = "h"\nport = 1\n')
    assert cli_bench.main(["echo", "--to", "other", "--config", str(config)]) == 2
    assert "unknown destination 'other' (known: pacs)" in capsys.readouterr().err
