"""Run one load: start the worker processes, start them together, collect their tallies.

Associations are spread round robin over ``processes`` worker processes (default: one per
core, at most one per association), because one Python process does not keep more than
a few hundred requests per second in flight (the GIL).  Workers are subprocesses
(``python -m xvactor.bench.worker``) that say when they are ready (templates copied); the
run's clock starts for all of them at one shared ``time.monotonic()`` instant (the same
clock in every process on Linux), so process start-up is not measured.

Elapsed time is from that instant to the last response; rates are per that time.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xvactor.bench.instances import new_run_number
from xvactor.bench.metrics import BIN_SECONDS, Tally
from xvactor.bench.wire import Target
from xvactor.bench.worker import Job, Workload

__all__ = ["Progress", "RunResult", "Workload", "default_processes", "run_load"]

_START_DELAY = 0.1
_READY_TIMEOUT = 60.0
_INBOX = 256
"""Worker messages waiting for the runner; when full, a worker's forwarding thread waits,
then its pipe fills and the worker itself waits (the runner reads continuously)."""

Progress = Callable[[float, int, int, int, int], None]
"""Called about twice a second with (seconds, attempts, ok, bytes, errors)."""


@dataclass
class RunResult:
    """One run: a target, a concurrency, a repeat number, and what was counted."""

    target: str
    associations: int
    processes: int
    repeat: int
    elapsed: float
    tally: Tally
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No worker failed, no request failed, every status a success or warning."""
        return (
            not self.problems
            and not self.tally.errors
            and self.tally.ok == sum(self.tally.statuses.values())
            and self.tally.ok == self.tally.attempts
        )

    @property
    def per_second(self) -> float:
        """Successful requests per second."""
        return self.tally.ok / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        """Data set megabytes (10^6 bytes) stored per second."""
        return self.tally.bytes / 1e6 / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def associations_per_second(self) -> float:
        """Associations established per second."""
        return self.tally.associations / self.elapsed if self.elapsed > 0 else 0.0

    def timeline(self) -> list[dict[str, float]]:
        """Throughput per :data:`BIN_SECONDS` bin: start second, per second, MB/s."""
        if not self.tally.bins:
            return []
        last = max(self.tally.bins)
        rows = []
        for index in range(last + 1):
            count, size = self.tally.bins.get(index, [0, 0])
            rows.append(
                {
                    "t": round(index * BIN_SECONDS, 3),
                    "per_second": count / BIN_SECONDS,
                    "mb_per_second": round(size / 1e6 / BIN_SECONDS, 3),
                }
            )
        return rows


def default_processes(associations: int) -> int:
    """One worker process per core, at most one per association."""
    return max(1, min(associations, os.cpu_count() or 1))


class _Worker:
    """One worker subprocess, its pipes, and a thread that forwards its messages."""

    def __init__(self, job: Job, worker: int, inbox: queue.Queue[tuple[Any, ...]]) -> None:
        self.worker = worker
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xvactor.bench.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        assert self.process.stdin is not None
        pickle.dump((job, worker), self.process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self.process.stdin.flush()
        self._reader = threading.Thread(target=self._forward, args=(inbox,), daemon=True)
        self._reader.start()

    def _forward(self, inbox: queue.Queue[tuple[Any, ...]]) -> None:
        stream = self.process.stdout
        assert stream is not None
        while True:
            try:
                # Our own child on a private pipe, not untrusted input.
                message = pickle.load(stream)  # noqa: S301
            except (EOFError, OSError, pickle.UnpicklingError):
                inbox.put(("eof", self.worker))
                return
            inbox.put(message)

    def send(self, line: str) -> None:
        """Write a control line (``GO <start>``, ``STOP``); ignored once the worker ended."""
        stdin = self.process.stdin
        with contextlib.suppress(OSError, ValueError):
            if stdin is not None:
                stdin.write(line.encode("ascii") + b"\n")
                stdin.flush()

    def last_error(self) -> str:
        """The last line the worker wrote to stderr."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else f"exit status {self.process.poll()}"

    def stop(self) -> None:
        """Close its input, wait briefly, kill if needed, release the pipes."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()


def run_load(
    target: Target,
    workload: Workload,
    associations: int,
    *,
    processes: int | None = None,
    repeat: int = 1,
    progress: Progress | None = None,
) -> RunResult:
    """Run ``workload`` with ``associations`` parallel associations against ``target``.

    Never raises for network outcomes: they are counted.  Ctrl-C stops the run early
    (the requests in flight finish) and returns what was counted.
    """
    if associations < 1:
        raise ValueError("at least one association")
    nproc = max(1, min(processes or default_processes(associations), associations))
    run = new_run_number()
    inbox: queue.Queue[tuple[Any, ...]] = queue.Queue(maxsize=_INBOX)
    workers: list[_Worker] = []
    problems: list[str] = []
    total = Tally()
    try:
        for worker in range(nproc):
            job = Job(
                target=target,
                run=run,
                slots=tuple(range(worker, associations, nproc)),
                associations=associations,
                workload=workload,
            )
            workers.append(_Worker(job, worker, inbox))
        running = _await_ready(inbox, workers, problems)
        start = time.monotonic() + _START_DELAY
        for worker_ in workers:
            worker_.send("STOP" if problems else f"GO {start!r}")
        if not problems:
            _collect(
                inbox,
                workers=workers,
                expected=running,
                start=start,
                target=target,
                total=total,
                problems=problems,
                progress=progress,
            )
    finally:
        for worker_ in workers:
            worker_.stop()
    return RunResult(str(target), associations, nproc, repeat, total.span, total, problems)


def _await_ready(
    inbox: queue.Queue[tuple[Any, ...]], workers: list[_Worker], problems: list[str]
) -> int:
    ready = 0
    deadline = time.monotonic() + _READY_TIMEOUT
    while ready + len(problems) < len(workers):
        try:
            message = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            problems.append(f"workers not ready within {_READY_TIMEOUT:g} s")
            break
        if message[0] == "ready":
            ready += 1
        elif message[0] == "failed":
            problems.append(f"worker {message[1]}: {message[2]}")
        elif message[0] == "eof":
            problems.append(f"worker {message[1]} ended: {workers[message[1]].last_error()}")
    return ready


def _collect(
    inbox: queue.Queue[tuple[Any, ...]],
    *,
    workers: list[_Worker],
    expected: int,
    start: float,
    target: Target,
    total: Tally,
    problems: list[str],
    progress: Progress | None,
) -> None:
    latest: dict[int, tuple[int, int, int, int]] = {}
    done = 0
    silence = 3 * target.timeout + 30
    while done < expected:
        try:
            message = inbox.get(timeout=silence)
        except queue.Empty:
            problems.append(f"no word from the workers for {silence:g} s")
            return
        except KeyboardInterrupt:
            for worker in workers:
                worker.send("STOP")
            continue
        kind, worker_id = message[0], message[1]
        if kind == "progress":
            latest[worker_id] = message[2:]
            if progress is not None:
                sums = [sum(values) for values in zip(*latest.values(), strict=True)]
                progress(time.monotonic() - start, *sums)
        elif kind == "done":
            total.merge(message[2])
            done += 1
        elif kind == "eof":
            problems.append(f"worker {worker_id} ended: {workers[worker_id].last_error()}")
            done += 1
