"""The sender actor: everything a node sends to one destination goes through it.

* Exactly one association at a time to its destination; work is sent in order: first
  ``SendNow`` batches (C-MOVE sub-operations, not persisted), then the outbox
  (``xvactor.sender.queue``), oldest first.
* Association reuse: queued work goes over the open association; it is released after
  ``idle_release`` seconds without work, and renegotiated only when an item needs a
  ``(SOP class, transfer syntax)`` pair it did not propose.
* Each attempt is classified by :func:`xvactor.dicom.outcome.classify`; retryable outbox
  items wait ``backoff(attempts)`` (the head of the queue waits, so order holds) up to
  ``retry_limit`` attempts, then fail.  Failed items are listed and can be re-queued.
* Nothing polls: delivery runs when a message or a timer wakes the actor (``Wake``), in
  slices of at most :data:`SLICE` seconds so that a stop never waits long.  The blocking
  calls run under the ``associate``, ``dimse`` and ``outbox`` thread limiters.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, assert_never

import anyio
import msgspec
from anyio.abc import ObjectSendStream

from xvactor.dicom.outcome import (
    LOCAL_TRANSPORT,
    Attempt,
    Outcome,
    Problem,
    Verdict,
    backoff,
    classify,
)
from xvactor.dicom.scu import AssociationFailed, AssociationPort, StoreAssociation, contexts_for
from xvactor.runtime import (
    Actor,
    ActorDead,
    ActorRef,
    Limiters,
    MailboxFull,
    Message,
    run_blocking,
)
from xvactor.sender.queue import Outbox, QueuedItem, SendItem, State
from xvactor.sender.timer import Timer, TimerHandle

__all__ = [
    "SLICE",
    "Enqueue",
    "Enqueued",
    "FailedItems",
    "GetStatus",
    "ListFailed",
    "Requeue",
    "Requeued",
    "SendItem",
    "SendNow",
    "SendResult",
    "SenderActor",
    "SenderInbox",
    "SenderSettings",
    "SenderStatus",
    "Wake",
    "enqueue",
    "list_failed",
    "requeue",
    "send_now",
    "status",
]

LOGGER = logging.getLogger("xvactor.sender")

SLICE = 0.5
"""Longest run of sending before the actor lets a stop (or a restart) in."""
_LOOKAHEAD = 64
T = TypeVar("T")


class SendResult(Message, frozen=True, tag=True, kw_only=True):
    """The result of one ``SendNow`` item."""

    sop_instance_uid: str
    status: int
    """The C-STORE-RSP status, or a local 0xA7xx/0xC0xx status (``xvactor.dicom.outcome``)."""
    error_comment: str = ""
    outcome: str = ""
    """The classifier's verdict name (:class:`~xvactor.dicom.outcome.Verdict`)."""


class SendNow(Message, frozen=True, tag=True, kw_only=True):
    """Send these now, in order, on this destination's association; not persisted (C-MOVE sub-operations)."""  # noqa: E501

    items: tuple[SendItem, ...]
    results: object
    """An anyio ``MemoryObjectSendStream[SendResult]``: one result per item, in order, then
    closed.  When its receiving end is closed (C-CANCEL), sending stops before the next
    item.  A stream closed early means the sender stopped: the remaining items failed."""
    move_originator_ae_title: str = ""
    move_originator_message_id: int = 0


class Enqueue(Message, frozen=True, tag=True, kw_only=True):
    """Command: queue ``items`` durably; answered once the rows are committed."""

    items: tuple[SendItem, ...]


class Enqueued(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``Enqueue``: the outbox ids, in order."""

    ids: tuple[int, ...]


class ListFailed(Message, frozen=True, tag=True, kw_only=True):
    """Query: the failed items."""


class FailedItems(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``ListFailed``."""

    items: tuple[QueuedItem, ...]


class Requeue(Message, frozen=True, tag=True, kw_only=True):
    """Command: put failed items back in the queue (``ids=None``: all of them)."""

    ids: tuple[int, ...] | None = None


class Requeued(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``Requeue``: how many items went back."""

    count: int


class GetStatus(Message, frozen=True, tag=True, kw_only=True):
    """Query: the queue's counts and whether an association is open."""


class SenderStatus(Message, frozen=True, tag=True, kw_only=True):
    """Reply to ``GetStatus``."""

    queued: int
    failed: int
    associated: bool
    associations: int
    """Associations opened by this incarnation so far."""


class Wake(Message, frozen=True, tag=True, kw_only=True):
    """Event: there may be work (new items, a retry due, an idle association to release)."""


SenderInbox = SendNow | Enqueue | ListFailed | Requeue | GetStatus | Wake


@dataclass(frozen=True)
class SenderSettings:
    """What a sender needs from the configuration (``[sender]``)."""

    idle_release: float = 5.0
    retry_initial: float = 1.0
    retry_max: float = 300.0
    retry_limit: int = 20


@dataclass
class _Batch:
    message: SendNow
    stream: ObjectSendStream[SendResult]
    items: deque[SendItem] = field(default_factory=deque)


class SenderActor(Actor[SenderInbox]):
    """Sends to one destination (see the module docstring).

    Parameters
    ----------
    this : ActorRef
        Its own ref (it wakes itself).
    port : AssociationPort
        Opens associations to the destination.
    outbox : callable
        Returns the destination's outbox; called on every (re)start.
    settings : SenderSettings
        Idle release and retry schedule.
    limiters : Limiters
        With ``associate``, ``dimse`` and ``outbox`` kinds.
    timer : callable
        Returns the :class:`~xvactor.sender.timer.Timer`; called in ``started()``.
    """

    concurrency: ClassVar[int] = 4
    """Asks are answered while a delivery slice runs (one at a time, under a lock)."""

    def __init__(
        self,
        this: ActorRef[SenderInbox],
        *,
        port: AssociationPort,
        outbox: Callable[[], Outbox],
        settings: SenderSettings,
        limiters: Limiters,
        timer: Callable[[], Timer],
    ) -> None:
        self._this = this
        self._port = port
        self._outbox_factory = outbox
        self._settings = settings
        self._limiters = limiters
        self._timer_factory = timer
        self._outbox: Outbox | None = None
        self._timer: Timer | None = None
        self._alarm: TimerHandle | None = None
        self._assoc: StoreAssociation | None = None
        self._needs: list[tuple[str, str]] = []
        self._last_used = 0.0
        self._associations = 0
        self._urgent: deque[_Batch] = deque()
        self._head: deque[QueuedItem] = deque()
        self._lock = anyio.Lock()
        self._wake_pending = False

    # --- lifecycle ------------------------------------------------------------------------

    async def started(self) -> None:
        """Open the outbox, requeue what a crash left ``sending``, and start if work waits."""
        self._timer = self._timer_factory()
        outbox = await run_blocking(self._limiters, "outbox", self._outbox_factory)
        self._outbox = outbox
        recovered = await self._db(outbox.recover, self._timer.now())
        if recovered:
            LOGGER.info("%s: %d interrupted item(s) back in the queue", self._this.name, recovered)
        if await self._db(outbox.count, State.QUEUED):
            self._kick()

    async def stopping(self) -> None:
        """Release the association, end pending ``SendNow`` streams, close the outbox."""
        if self._alarm is not None:
            self._alarm.cancel()
        for batch in self._urgent:
            _abandon(batch, "Sender stopped")
        self._urgent.clear()
        await self._close_association()
        if self._outbox is not None:
            await run_blocking(self._limiters, "outbox", self._outbox.close)

    async def receive(self, message: SenderInbox) -> object:
        """Dispatch one message."""
        outbox = self._ready()
        match message:
            case Wake():
                await self._deliver()
                return None
            case SendNow():
                stream: ObjectSendStream[SendResult] = message.results  # type: ignore[assignment]
                self._urgent.append(_Batch(message, stream, deque(message.items)))
                self._kick()
                return None
            case Enqueue(items=items):
                ids = await run_blocking(
                    self._limiters, "outbox", outbox.add, list(items), self._now()
                )
                self._kick()
                return Enqueued(ids=tuple(ids))
            case ListFailed():
                failed = await self._db(outbox.items, State.FAILED)
                return FailedItems(items=tuple(failed))
            case Requeue(ids=ids):
                count = await self._db(outbox.requeue, ids, self._now())
                self._head.clear()
                self._kick()
                return Requeued(count=count)
            case GetStatus():
                return SenderStatus(
                    queued=await self._db(outbox.count, State.QUEUED),
                    failed=await self._db(outbox.count, State.FAILED),
                    associated=self._assoc is not None,
                    associations=self._associations,
                )
            case _:
                assert_never(message)

    # --- helpers --------------------------------------------------------------------------

    def _ready(self) -> Outbox:
        if self._outbox is None or self._timer is None:
            raise RuntimeError("sender is not started")
        return self._outbox

    def _now(self) -> float:
        assert self._timer is not None
        return self._timer.now()

    async def _db(self, func: Callable[..., T], *args: Any) -> T:
        """Run an outbox call: on a thread for SQLite, inline for memory."""
        outbox = self._ready()
        if not outbox.blocking:
            return func(*args)
        return await run_blocking(self._limiters, "outbox", functools.partial(func, *args))

    def _kick(self) -> None:
        """Make sure a ``Wake`` is on its way."""
        if self._wake_pending:
            return
        self._wake_pending = True
        try:
            self._this.try_tell(Wake())
        except (MailboxFull, ActorDead):
            # A full mailbox holds messages whose handlers kick again; a dead one, no future.
            self._wake_pending = False

    # --- delivery -------------------------------------------------------------------------

    async def _deliver(self) -> None:
        self._wake_pending = False
        async with self._lock:
            deadline = anyio.current_time() + SLICE
            while await self._step():
                if anyio.current_time() >= deadline:
                    self._kick()  # let a stop or other messages in, then carry on
                    return
            await self._idle()

    async def _step(self) -> bool:
        """Send the next item if one is due; ``False`` when nothing is."""
        while self._urgent:
            batch = self._urgent[0]
            if not batch.items or _cancelled(batch.stream):
                self._urgent.popleft()
                await batch.stream.aclose()
                continue
            await self._send_urgent(batch)
            return True
        if not self._head:
            self._head.extend(await self._db(self._ready().head, _LOOKAHEAD))
        if not self._head or self._head[0].next_attempt_at > self._now():
            return False
        await self._send_queued(self._head[0])
        return True

    async def _idle(self) -> None:
        """Nothing due: release an association idle long enough, or set the next alarm."""
        now = self._now()
        due: list[float] = []
        if self._assoc is not None:
            release_at = self._last_used + self._settings.idle_release
            if release_at <= now:
                await self._close_association()
            else:
                due.append(release_at)
        if self._head:
            due.append(self._head[0].next_attempt_at)
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
        if due:
            assert self._timer is not None
            self._alarm = self._timer.call_later(max(0.0, min(due) - now), self._kick)

    async def _attempt(self, item: SendItem, originator: tuple[str, int]) -> Outcome:
        need = (item.sop_class_uid, item.transfer_syntax_uid)
        assoc = self._assoc
        if assoc is not None and (not assoc.established or need not in assoc.proposed):
            await self._close_association()  # lost, or renegotiation needed
            assoc = None
        if assoc is None:
            needs = [need, *self._needs, *self._upcoming()]
            try:
                assoc = await run_blocking(
                    self._limiters, "associate", self._port.open, contexts_for(needs)
                )
            except AssociationFailed as exc:
                LOGGER.warning("%s: %s", self._this.name, exc)
                return classify(Attempt(problem=Problem.CONNECTION, error_comment=str(exc)))
            self._assoc = assoc
            self._needs = list(dict.fromkeys(needs))
            self._associations += 1
        send = functools.partial(
            assoc.send,
            item,
            move_originator_ae_title=originator[0],
            move_originator_message_id=originator[1],
        )
        attempt = await run_blocking(self._limiters, "dimse", send)
        self._last_used = self._now()
        if attempt.problem is Problem.NO_RESPONSE:
            self._assoc = None  # aborted by send()
        return classify(attempt)

    def _upcoming(self) -> list[tuple[str, str]]:
        items = [i for batch in self._urgent for i in batch.items]
        items += [q.item for q in self._head]
        return [(i.sop_class_uid, i.transfer_syntax_uid) for i in items[:_LOOKAHEAD]]

    async def _send_urgent(self, batch: _Batch) -> None:
        message = batch.message
        item = batch.items.popleft()
        originator = (message.move_originator_ae_title, message.move_originator_message_id)
        with anyio.CancelScope(shield=True):
            outcome = await self._attempt(item, originator)
        failed_too = [item]
        if outcome.verdict is Verdict.RETRY:
            # Transport failure: the C-MOVE requester retries, so the batch ends here.
            failed_too += list(batch.items)
            batch.items.clear()
        for each in failed_too:
            result = SendResult(
                sop_instance_uid=each.sop_instance_uid,
                status=outcome.status if outcome.verdict is not Verdict.RETRY else LOCAL_TRANSPORT,
                error_comment=outcome.error_comment,
                outcome=outcome.verdict.value,
            )
            try:
                await batch.stream.send(result)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                batch.items.clear()  # the requester went away (C-CANCEL)
                break

    async def _send_queued(self, queued: QueuedItem) -> None:
        outbox = self._ready()
        with anyio.CancelScope(shield=True):
            await self._db(outbox.mark_sending, queued.id, self._now())
            outcome = await self._attempt(queued.item, ("", 0))
            attempts = queued.attempts + 1
            state, next_at = _next_state(outcome, attempts, self._settings, self._now())
            await self._db(
                functools.partial(
                    outbox.record,
                    queued.id,
                    state=state,
                    attempts=attempts,
                    next_attempt_at=next_at,
                    status=outcome.status,
                    comment=outcome.error_comment,
                    outcome=outcome.verdict.value,
                    now=self._now(),
                )
            )
        if self._head and self._head[0].id == queued.id:
            self._head.popleft()
            if state == State.QUEUED:
                self._head.appendleft(
                    msgspec.structs.replace(
                        queued,
                        state=state,
                        attempts=attempts,
                        next_attempt_at=next_at,
                        last_status=outcome.status,
                        last_comment=outcome.error_comment,
                        outcome=outcome.verdict.value,
                    )
                )
        if state == State.FAILED:
            LOGGER.warning(
                "%s: %s failed (0x%04X %s)",
                self._this.name,
                queued.item.sop_instance_uid,
                outcome.status,
                outcome.error_comment,
            )

    async def _close_association(self) -> None:
        assoc, self._assoc = self._assoc, None
        if assoc is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await run_blocking(self._limiters, "associate", assoc.release)
            except Exception:
                LOGGER.exception("%s: release failed", self._this.name)


def _next_state(
    outcome: Outcome, attempts: int, settings: SenderSettings, now: float
) -> tuple[str, float]:
    """The state an outbox item goes to after an attempt, and when it is due again."""
    if outcome.verdict.delivered:
        return State.SENT, 0.0
    if outcome.verdict.retryable and attempts < settings.retry_limit:
        delay = backoff(attempts, initial=settings.retry_initial, maximum=settings.retry_max)
        return State.QUEUED, now + delay
    return State.FAILED, 0.0


def _cancelled(stream: ObjectSendStream[SendResult]) -> bool:
    statistics = getattr(stream, "statistics", None)
    if statistics is None:
        return False
    return bool(statistics().open_receive_streams == 0)


def _abandon(batch: _Batch, comment: str) -> None:
    """Report the rest of a batch as failed without waiting, then close its stream."""
    for item in batch.items:
        try:
            batch.stream.send_nowait(  # type: ignore[attr-defined]
                SendResult(
                    sop_instance_uid=item.sop_instance_uid,
                    status=LOCAL_TRANSPORT,
                    error_comment=comment,
                    outcome=Verdict.RETRY.value,
                )
            )
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            break
    batch.stream.close()  # type: ignore[attr-defined]


# Client functions: nobody builds a sender's messages by hand.


async def send_now(
    ref: ActorRef[SenderInbox],
    items: Sequence[SendItem],
    results: ObjectSendStream[SendResult],
    *,
    move_originator_ae_title: str = "",
    move_originator_message_id: int = 0,
) -> None:
    """Hand a batch to the sender; its results arrive on ``results`` (then it is closed)."""
    await ref.tell(
        SendNow(
            items=tuple(items),
            results=results,
            move_originator_ae_title=move_originator_ae_title,
            move_originator_message_id=move_originator_message_id,
        )
    )


async def enqueue(
    ref: ActorRef[SenderInbox], items: Sequence[SendItem], *, timeout: float
) -> tuple[int, ...]:
    """Queue ``items`` durably; returns their ids once committed."""
    reply = await ref.ask(Enqueue(items=tuple(items)), expect=Enqueued, timeout=timeout)
    return reply.ids


async def list_failed(ref: ActorRef[SenderInbox], *, timeout: float) -> tuple[QueuedItem, ...]:
    """The failed items of this destination."""
    reply = await ref.ask(ListFailed(), expect=FailedItems, timeout=timeout)
    return reply.items


async def requeue(
    ref: ActorRef[SenderInbox], ids: Sequence[int] | None = None, *, timeout: float
) -> int:
    """Put failed items (all if ``ids`` is ``None``) back in the queue; returns how many."""
    message = Requeue(ids=None if ids is None else tuple(ids))
    reply = await ref.ask(message, expect=Requeued, timeout=timeout)
    return reply.count


async def status(ref: ActorRef[SenderInbox], *, timeout: float) -> SenderStatus:
    """The sender's queue counts and association state."""
    return await ref.ask(GetStatus(), expect=SenderStatus, timeout=timeout)
