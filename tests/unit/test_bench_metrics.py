"""Histogram percentiles against exact sorted samples; tallies merge by addition."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xvactor.bench.metrics import BIN_SECONDS, Histogram, Tally


def _exact(samples: list[int], q: float) -> int:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=120_000_000), min_size=1, max_size=400),
    st.sampled_from([0, 1, 50, 90, 99, 99.9, 100]),
)
def test_percentile_within_half_a_bucket_of_the_exact_one(samples: list[int], q: float) -> None:
    histogram = Histogram()
    for us in samples:
        histogram.record(us / 1e6)
    exact = _exact(samples, q)
    got = histogram.percentile(q) * 1e6
    assert abs(got - exact) <= max(1.0, exact / 256), (got, exact)
    assert histogram.count == len(samples)
    assert histogram.max_us == max(samples)
    assert histogram.min_us == min(samples)


@given(st.lists(st.integers(0, 10**7), max_size=100), st.lists(st.integers(0, 10**7), max_size=100))
def test_merge_equals_recording_everything(left: list[int], right: list[int]) -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for us in left:
        a.record(us / 1e6)
        both.record(us / 1e6)
    for us in right:
        b.record(us / 1e6)
        both.record(us / 1e6)
    a.merge(b)
    assert a == both


def test_summary_and_bounds() -> None:
    histogram = Histogram()
    assert histogram.percentile(50) == 0.0
    for ms in range(1, 101):
        histogram.record(ms / 1e3)
    summary = histogram.summary()
    assert summary["count"] == 100
    assert summary["p50_ms"] == pytest.approx(50, rel=0.01)
    assert summary["p99_ms"] == pytest.approx(99, rel=0.01)
    assert summary["max_ms"] == 100
    assert summary["mean_ms"] == pytest.approx(50.5, rel=0.001)
    with pytest.raises(ValueError, match="outside"):
        histogram.percentile(101)


def test_memory_is_bounded() -> None:
    histogram = Histogram()
    for us in range(0, 60_000_000, 97):
        histogram.record(us / 1e6)
    assert len(histogram.counts) < 4000


def test_tally_counts_statuses_errors_and_bins() -> None:
    tally = Tally()
    tally.completed(0x0000, 0.001, 1000, 0.1)
    tally.completed(0xB000, 0.002, 1000, BIN_SECONDS + 0.1)
    tally.completed(0xA700, 0.003, 1000, BIN_SECONDS + 0.2)
    tally.failed("timeout", "no answer from X")
    tally.failed("timeout", "second message")
    other = Tally()
    other.completed(0x0000, 0.004, 500, 0.2)
    other.failed("refused", "connection refused")
    tally.merge(other)
    assert tally.ok == 3
    assert tally.bytes == 2500
    assert tally.statuses == {0x0000: 2, 0xB000: 1, 0xA700: 1}
    assert tally.errors == {"timeout": 2, "refused": 1}
    assert tally.examples == {"timeout": "no answer from X", "refused": "connection refused"}
    assert tally.bins == {0: [2, 1500], 1: [1, 1000]}
    assert tally.span == pytest.approx(BIN_SECONDS + 0.2)
    assert tally.latency.count == 4
