"""The live progress line of ``xvactor bench`` (stderr, only on a terminal)."""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["LiveLine"]


class LiveLine:
    """A progress callback that rewrites one line: elapsed, count, rate, MB/s, errors.

    The rate is over the last update interval, so the line shows the current throughput.
    """

    def __init__(self, label: str, stream: TextIO | None = None, *, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or self.stream.isatty()
        self.label = label
        self._last = (0.0, 0, 0)
        self._width = 0

    def __call__(self, seconds: float, attempts: int, ok: int, size: int, errors: int) -> None:
        """Show the state at ``seconds`` since the start."""
        if not self.enabled:
            return
        then, ok_then, size_then = self._last
        span = seconds - then
        rate = (ok - ok_then) / span if span > 0 else 0.0
        mbps = (size - size_then) / 1e6 / span if span > 0 else 0.0
        self._last = (seconds, ok, size)
        text = f"{self.label} {seconds:6.1f} s  {ok} ok  {rate:8.1f}/s  {mbps:7.1f} MB/s"
        if errors:
            text += f"  {errors} errors"
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        """End the line (if anything was written)."""
        if self.enabled and self._width:
            self.stream.write("\n")
            self.stream.flush()
