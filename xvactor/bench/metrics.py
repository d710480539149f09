"""What a load run counts: latency histograms, statuses, errors, throughput over time.

:class:`Histogram` is HDR-style: latencies in microseconds are rounded down to 8
significant bits (relative error below 0.4%), so memory stays bounded (a few thousand
buckets) however long the run, and histograms from several processes merge by adding
counts.  Minimum and maximum are kept exactly.

:class:`Tally` is what one load worker accumulates and sends back: plain ints, dicts and
lists, so it crosses a process boundary as is and merges by addition.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["BIN_SECONDS", "Histogram", "Tally"]

_SIGNIFICANT_BITS = 8
BIN_SECONDS = 0.25
"""Width of the throughput-over-time bins."""


def _bucket(value: int) -> int:
    shift = max(0, value.bit_length() - _SIGNIFICANT_BITS)
    return (value >> shift) << shift


def _width(bucket: int) -> int:
    return 1 << max(0, bucket.bit_length() - _SIGNIFICANT_BITS)


@dataclass
class Histogram:
    """Latencies in microseconds, bucketed; :meth:`percentile` answers in seconds."""

    counts: dict[int, int] = field(default_factory=dict)
    count: int = 0
    total_us: int = 0
    min_us: int = 0
    max_us: int = 0

    def record(self, seconds: float) -> None:
        """Add one latency."""
        value = max(0, round(seconds * 1e6))
        bucket = _bucket(value)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        if not self.count or value < self.min_us:
            self.min_us = value
        self.max_us = max(self.max_us, value)
        self.count += 1
        self.total_us += value

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s samples to this histogram."""
        if not other.count:
            return
        for bucket, n in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + n
        self.min_us = other.min_us if not self.count else min(self.min_us, other.min_us)
        self.max_us = max(self.max_us, other.max_us)
        self.count += other.count
        self.total_us += other.total_us

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100) in seconds (nearest rank); 0 when empty.

        The answer is the middle of the sample's bucket, clipped to the exact minimum and
        maximum: within half a bucket (< 0.4%) of the exact sorted-sample percentile.
        """
        if not self.count:
            return 0.0
        if not 0 <= q <= 100:
            raise ValueError(f"percentile {q} outside 0-100")
        rank = max(1, math.ceil(q / 100 * self.count))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                middle = bucket + (_width(bucket) - 1) / 2
                return min(max(middle, self.min_us), self.max_us) / 1e6
        return self.max_us / 1e6

    @property
    def mean(self) -> float:
        """Mean latency in seconds."""
        return self.total_us / self.count / 1e6 if self.count else 0.0

    def summary(self) -> dict[str, float | int]:
        """count, and p50/p90/p99/max/mean in milliseconds."""
        return {
            "count": self.count,
            "p50_ms": round(self.percentile(50) * 1e3, 3),
            "p90_ms": round(self.percentile(90) * 1e3, 3),
            "p99_ms": round(self.percentile(99) * 1e3, 3),
            "max_ms": round(self.max_us / 1e3, 3),
            "mean_ms": round(self.mean * 1e3, 3),
        }

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (bucket keys as strings)."""
        return {
            "counts": {str(k): v for k, v in sorted(self.counts.items())},
            "count": self.count,
            "total_us": self.total_us,
            "min_us": self.min_us,
            "max_us": self.max_us,
        }


@dataclass
class Tally:
    """Counts of one worker (or, merged, of a whole run).

    Attributes
    ----------
    attempts : int
        Requests started (C-STORE, C-ECHO or C-FIND).
    ok : int
        Requests answered with a success or warning status.
    bytes : int
        Data set bytes of the successful C-STOREs.
    statuses : dict of int to int
        Final response statuses by code.
    errors : dict of str to int
        Failures without a response (and association failures) by kind.
    associations : int
        Associations established.
    latency, setup, first : Histogram
        Request latency (last response), association set-up, and for C-FIND the time to
        the first response.
    bins : dict of int to list of int
        Bin number (of :data:`BIN_SECONDS` since the run's start) -> [completed ok, bytes].
    matches : int
        C-FIND pending responses (matches) received.
    span : float
        Seconds from the run's start to the last final response.
    examples : dict of str to str
        The first message of each error kind.
    """

    attempts: int = 0
    ok: int = 0
    bytes: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    associations: int = 0
    latency: Histogram = field(default_factory=Histogram)
    setup: Histogram = field(default_factory=Histogram)
    first: Histogram = field(default_factory=Histogram)
    bins: dict[int, list[int]] = field(default_factory=dict)
    matches: int = 0
    span: float = 0.0
    examples: dict[str, str] = field(default_factory=dict)

    def completed(self, status: int, seconds: float, size: int, since_start: float) -> None:
        """Record a final response with ``status`` after ``seconds``."""
        self.statuses[status] = self.statuses.get(status, 0) + 1
        self.latency.record(seconds)
        self.span = max(self.span, since_start)
        if status == 0 or status & 0xF000 == 0xB000 or status in {0x0107, 0x0116}:
            self.ok += 1
            self.bytes += size
            slot = self.bins.setdefault(int(since_start / BIN_SECONDS), [0, 0])
            slot[0] += 1
            slot[1] += size

    def failed(self, kind: str, message: str = "") -> None:
        """Record a failure without a response; the first message of each kind is kept."""
        self.errors[kind] = self.errors.get(kind, 0) + 1
        if message:
            self.examples.setdefault(kind, message)

    def merge(self, other: Tally) -> None:
        """Add ``other``'s counts to this tally."""
        self.attempts += other.attempts
        self.ok += other.ok
        self.bytes += other.bytes
        self.associations += other.associations
        self.matches += other.matches
        self.span = max(self.span, other.span)
        self.statuses = dict(Counter(self.statuses) + Counter(other.statuses))
        self.errors = dict(Counter(self.errors) + Counter(other.errors))
        for kind, message in other.examples.items():
            self.examples.setdefault(kind, message)
        self.latency.merge(other.latency)
        self.setup.merge(other.setup)
        self.first.merge(other.first)
        for key, (count, size) in other.bins.items():
            slot = self.bins.setdefault(key, [0, 0])
            slot[0] += count
            slot[1] += size
