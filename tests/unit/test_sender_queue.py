"""The outbox: durable (SQLite) and in-memory variants behave the same."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from xvactor.sender.queue import (
    OUTBOX_FILE,
    SENT_RETENTION,
    DurableOutbox,
    MemoryOutbox,
    Outbox,
    QueuedItem,
    SendItem,
    State,
    pending_destinations,
)


def item(n: int) -> SendItem:
    return SendItem(
        path=f"/data/{n}.dcm",
        sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        sop_instance_uid=f"1.2.3.{n}",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )


@pytest.fixture(params=["durable", "memory"])
def make(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], Outbox]:
    if request.param == "durable":
        return lambda name: DurableOutbox(tmp_path / OUTBOX_FILE, name)
    return MemoryOutbox


def test_items_come_back_in_order_per_destination(make: Callable[[str], Outbox]) -> None:
    a, b = make("a"), make("b")
    ids = a.add([item(1), item(2), item(3)], now=1.0)
    b.add([item(9)], now=1.0)
    assert ids == sorted(ids)
    assert [q.item for q in a.head(10)] == [item(1), item(2), item(3)]
    assert [q.item for q in a.head(2)] == [item(1), item(2)]
    assert [q.item for q in b.head(10)] == [item(9)]
    assert a.count(State.QUEUED) == 3


def test_states_retry_failure_and_requeue(make: Callable[[str], Outbox]) -> None:
    box = make("a")
    first, second, third = box.add([item(1), item(2), item(3)], now=0.0)
    box.mark_sending(first, now=1.0)
    box.record(first, state=State.SENT, attempts=1, next_attempt_at=0, status=0,
               comment="", outcome="success", now=1.0)  # fmt: skip
    box.record(second, state=State.QUEUED, attempts=1, next_attempt_at=50.0, status=0xA700,
               comment="busy", outcome="retry_later", now=1.0)  # fmt: skip
    box.record(third, state=State.FAILED, attempts=1, next_attempt_at=0, status=0xA900,
               comment="bad", outcome="failed", now=1.0)  # fmt: skip
    head = box.head(10)
    assert [q.id for q in head] == [second]
    assert (head[0].attempts, head[0].next_attempt_at, head[0].last_status) == (1, 50.0, 0xA700)
    failed = box.items(State.FAILED)
    assert [(q.id, q.last_status, q.last_comment) for q in failed] == [(third, 0xA900, "bad")]
    assert box.requeue([third, 12345], now=2.0) == 1
    assert [q.id for q in box.head(10)] == [second, third]
    assert box.head(10)[1].attempts == 0
    assert box.count(State.FAILED) == 0


def test_requeue_all(make: Callable[[str], Outbox]) -> None:
    box = make("a")
    ids = box.add([item(1), item(2)], now=0.0)
    for i in ids:
        box.record(i, state=State.FAILED, attempts=3, next_attempt_at=0, status=0xA700,
                   comment="", outcome="retry", now=0.0)  # fmt: skip
    assert box.requeue(None, now=1.0) == 2
    assert box.count(State.QUEUED) == 2


def test_recover_puts_sending_back(make: Callable[[str], Outbox]) -> None:
    box = make("a")
    (first,) = box.add([item(1)], now=0.0)
    box.mark_sending(first, now=0.0)
    assert box.head(10) == []
    assert box.recover(now=1.0) == 1
    assert [q.id for q in box.head(10)] == [first]


def test_durable_rows_survive_a_new_connection(tmp_path: Path) -> None:
    path = tmp_path / OUTBOX_FILE
    box = DurableOutbox(path, "pacs")
    (first, second) = box.add([item(1), item(2)], now=0.0)
    box.mark_sending(first, now=0.0)
    # No close: as after a crash, the committed rows are all there is.
    again = DurableOutbox(path, "pacs")
    assert again.recover(now=1.0) == 1
    assert [q.id for q in again.head(10)] == [first, second]
    assert pending_destinations(path) == ["pacs"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()
    box.close()


def test_durable_refuses_an_unknown_schema(tmp_path: Path) -> None:
    path = tmp_path / OUTBOX_FILE
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(RuntimeError, match="schema version 99"):
        DurableOutbox(path, "x")


def test_queued_item_round_trips_msgpack() -> None:
    queued = QueuedItem(id=1, destination="d", item=item(1), state=State.QUEUED, attempts=2)
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(queued), type=QueuedItem) == queued


def test_durable_prunes_old_sent_rows_on_recover(tmp_path: Path) -> None:
    box = DurableOutbox(tmp_path / "outbox.sqlite", "a")
    old, recent, queued = box.add([item(1), item(2), item(3)], now=0.0)
    box.record(old, state=State.SENT, attempts=1, next_attempt_at=0, status=0,
               comment="", outcome="success", now=10.0)  # fmt: skip
    later = 10.0 + SENT_RETENTION
    box.record(recent, state=State.SENT, attempts=1, next_attempt_at=0, status=0,
               comment="", outcome="success", now=later)  # fmt: skip
    box.recover(now=later + 1.0)
    assert box.count(State.SENT) == 1  # the recent record stays, the old one is gone
    assert [q.id for q in box.head(10)] == [queued]
    box.close()
