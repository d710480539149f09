"""A load worker process: some of the run's associations, one thread each.

The parent (:mod:`xvactor.bench.runner`) starts workers as ``python -m
xvactor.bench.worker`` and talks to them over pipes (pickled job in, pickled messages out,
``GO``/``STOP`` lines in).  Unlike ``multiprocessing``'s ``spawn`` this never re-imports the
caller's ``__main__``.  This module and its imports stay free of pydicom and pynetdicom, so
a worker starts in milliseconds.  A
worker copies its templates, says ``ready``, waits for the shared start time, runs its
associations (each on :class:`xvactor.bench.wire.Association`), reports progress every
half second and sends its merged :class:`~xvactor.bench.metrics.Tally` at the end.

An association that fails is opened again for the next request; after
:data:`MAX_CONSECUTIVE_FAILURES` failures in a row its thread gives up (error kind
``gave-up``), so a dead target ends a run instead of spinning.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from xvactor.bench.dimse import c_echo_rq, c_find_rq, c_store_rq
from xvactor.bench.instances import InstanceStream, Template
from xvactor.bench.metrics import Tally
from xvactor.bench.pdu import PresentationContext
from xvactor.bench.schedule import Schedule
from xvactor.bench.wire import Association, Target, WireError, timed_open

__all__ = ["MAX_CONSECUTIVE_FAILURES", "Job", "Query", "Workload", "main", "run_worker"]

MAX_CONSECUTIVE_FAILURES = 3
PROGRESS_SECONDS = 0.5
_VERIFICATION = "1.2.840.10008.1.1"
_IMPLICIT = "1.2.840.10008.1.2"
_EXPLICIT = "1.2.840.10008.1.2.1"
_PENDING = (0xFF00, 0xFF01)


@dataclass(frozen=True)
class Workload:
    """What each association does; ``description`` goes into the report as is."""

    kind: str
    count: int | None = None
    duration: float | None = None
    rate: float | None = None
    new_association: bool = False
    templates: list[Template] = field(default_factory=list)
    queries: list[Query] = field(default_factory=list)
    description: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Query:
    """A C-FIND of the mix: SOP class and the Identifier in both little-endian syntaxes."""

    sop_class_uid: str
    implicit: bytes
    explicit: bytes
    label: str = ""


@dataclass(frozen=True)
class Job:
    """What every worker of a run is asked to do (its ``slots`` differ)."""

    target: Target
    run: int
    slots: tuple[int, ...]
    associations: int
    workload: Workload


def _contexts(job: Job) -> list[PresentationContext]:
    if job.workload.kind == "echo":
        return [PresentationContext(1, _VERIFICATION, (_EXPLICIT, _IMPLICIT))]
    if job.workload.kind == "find":
        classes = dict.fromkeys(q.sop_class_uid for q in job.workload.queries)
        return [
            PresentationContext(2 * i + 1, uid, (_EXPLICIT, _IMPLICIT))
            for i, uid in enumerate(classes)
        ]
    pairs = dict.fromkeys((t.sop_class_uid, t.transfer_syntax_uid) for t in job.workload.templates)
    return [PresentationContext(2 * i + 1, sop, (ts,)) for i, (sop, ts) in enumerate(pairs)]


class _Slot:
    """One association's loop."""

    def __init__(self, job: Job, slot: int, contexts: list[PresentationContext]) -> None:
        self.job = job
        self.slot = slot
        self.contexts = contexts
        self.tally = Tally()
        self.stream = (
            InstanceStream(job.workload.templates, job.run, slot)
            if job.workload.kind == "store"
            else None
        )
        self.assoc: Association | None = None
        self.ids: dict[str, dict[str, int]] = {}

    def _open(self) -> Association:
        assoc, seconds = timed_open(self.job.target, self.contexts)
        self.tally.associations += 1
        self.tally.setup.record(seconds)
        self.ids = {}
        for cx in self.contexts:
            syntax = assoc.accepted.get(cx.context_id)
            if syntax is not None:
                self.ids.setdefault(cx.abstract_syntax, {})[syntax] = cx.context_id
        return assoc

    def run(self, start: float, stop: threading.Event) -> None:
        job = self.job
        deadline = start + job.workload.duration if job.workload.duration is not None else None
        schedule = Schedule(
            start,
            job.workload.count,
            deadline,
            job.workload.rate,
            job.associations,
            self.slot % job.associations,
        )
        failures = 0
        for due in schedule:
            if stop.is_set() or failures >= MAX_CONSECUTIVE_FAILURES:
                break
            self.tally.attempts += 1
            try:
                if self.assoc is None:
                    self.assoc = self._open()
                self._request(self.assoc, due, start)
                failures = 0
            except WireError as exc:
                self.tally.failed(exc.kind, str(exc))
                failures += 1
                if self.assoc is not None:
                    self.assoc.abort()
                self.assoc = None
                continue
            if job.workload.new_association:
                self.assoc.release()
                self.assoc = None
        if failures >= MAX_CONSECUTIVE_FAILURES:
            self.tally.failed("gave-up")
        if self.assoc is not None:
            self.assoc.release()

    def _request(self, assoc: Association, due: float, start: float) -> None:
        # Open loop: latency counts from the due time (queueing included).
        begin = due if self.job.workload.rate is not None else time.monotonic()
        if self.job.workload.kind == "store":
            self._store(assoc, begin, start)
        elif self.job.workload.kind == "echo":
            context_id = self.ids[_VERIFICATION]
            cid = next(iter(context_id.values()))
            response = assoc.request(cid, c_echo_rq(assoc.next_message_id()))
            done = time.monotonic()
            self.tally.completed(response.status, done - begin, 0, done - start)
        else:
            self._find(assoc, begin, start)

    def _store(self, assoc: Association, begin: float, start: float) -> None:
        assert self.stream is not None
        template, uid, data = self.stream.next()
        cid = self.ids.get(template.sop_class_uid, {}).get(template.transfer_syntax_uid)
        if cid is None:
            self.tally.failed("no-context", f"no context for {template.sop_class_uid}")
            return
        command = c_store_rq(assoc.next_message_id(), template.sop_class_uid, uid)
        response = assoc.request(cid, command, data)
        done = time.monotonic()
        self.tally.completed(response.status, done - begin, len(data), done - start)

    def _find(self, assoc: Association, begin: float, start: float) -> None:
        query = self.job.workload.queries[self.tally.attempts % len(self.job.workload.queries)]
        syntaxes = self.ids.get(query.sop_class_uid, {})
        if not syntaxes:
            self.tally.failed("no-context", f"no context for {query.sop_class_uid}")
            return
        syntax, cid = next(iter(syntaxes.items()))
        identifier = query.implicit if syntax == _IMPLICIT else query.explicit
        first: list[float] = []

        def on_response(response: Any) -> bool:
            if not first:
                first.append(time.monotonic() - begin)
            if response.status in _PENDING:
                self.tally.matches += 1
                return True
            return False

        command = c_find_rq(assoc.next_message_id(), query.sop_class_uid)
        response = assoc.request(cid, command, memoryview(identifier), on_response)
        done = time.monotonic()
        self.tally.first.record(first[0] if first else done - begin)
        self.tally.completed(response.status, done - begin, 0, done - start)


def _progress(slots: list[_Slot]) -> tuple[int, int, int, int]:
    return (
        sum(s.tally.attempts for s in slots),
        sum(s.tally.ok for s in slots),
        sum(s.tally.bytes for s in slots),
        sum(sum(s.tally.errors.values()) for s in slots),
    )


class _Channel:
    """Pickled messages to the parent on stdout, one writer at a time."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def put(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            pickle.dump(message, self._stream, protocol=pickle.HIGHEST_PROTOCOL)
            self._stream.flush()


def _control(stream: BinaryIO, go: list[float], started: threading.Event,
             stop: threading.Event) -> None:  # fmt: skip
    """Read ``GO <start>`` then ``STOP`` lines from the parent; end of input means stop."""
    for line in stream:
        word, _, value = line.decode("ascii", "replace").partition(" ")
        if word.strip() == "GO":
            go.append(float(value))
            started.set()
        elif word.strip() == "STOP":
            break
    stop.set()
    started.set()


def run_worker(job: Job, worker: int, channel: _Channel, control: BinaryIO) -> None:
    """Run ``job.slots``, reporting on ``channel``; ``control`` brings GO and STOP.

    Messages: ``("ready", worker)``, ``("progress", worker, attempts, ok, bytes, errors)``
    and finally ``("done", worker, tally)`` or ``("failed", worker, message)``.
    """
    try:
        contexts = _contexts(job)
        slots = [_Slot(job, slot, contexts) for slot in job.slots]
    except Exception as exc:  # reported to the parent as one line
        channel.put(("failed", worker, f"{type(exc).__name__}: {exc}"))
        return
    go: list[float] = []
    started, stop = threading.Event(), threading.Event()
    threading.Thread(target=_control, args=(control, go, started, stop), daemon=True).start()
    channel.put(("ready", worker))
    started.wait()
    if not go:
        channel.put(("done", worker, Tally()))
        return
    start = go[0]
    if (delay := start - time.monotonic()) > 0:
        time.sleep(delay)
    threads = [threading.Thread(target=slot.run, args=(start, stop), daemon=True) for slot in slots]
    for thread in threads:
        thread.start()
    while alive := [thread for thread in threads if thread.is_alive()]:
        alive[0].join(PROGRESS_SECONDS)
        channel.put(("progress", worker, *_progress(slots)))
    total = Tally()
    for slot in slots:
        total.merge(slot.tally)
    channel.put(("done", worker, total))


def main() -> None:
    """Entry of ``python -m xvactor.bench.worker``: the job arrives pickled on stdin."""
    # The parent is the only writer of our stdin: a private pipe, not untrusted input.
    job, worker = pickle.load(sys.stdin.buffer)  # noqa: S301
    channel = _Channel(sys.stdout.buffer)
    run_worker(job, worker, channel, sys.stdin.buffer)


if __name__ == "__main__":
    main()
