"""The catalog writers' turn: one at a time, the next woken as soon as the holder lets go."""

from __future__ import annotations

import threading
from pathlib import Path

from xvactor.catalog.turn import WriteTurn


def test_a_second_writer_waits_for_the_first_to_let_go(tmp_path: Path) -> None:
    database = tmp_path / "catalog.sqlite"
    first, second = WriteTurn(database), WriteTurn(database)
    order: list[str] = []
    waiting = threading.Event()

    def take_second() -> None:
        waiting.set()
        with second:
            order.append("second")

    try:
        with first:
            thread = threading.Thread(target=take_second)
            thread.start()
            assert waiting.wait(5)
            thread.join(0.2)
            assert thread.is_alive(), "the second writer did not wait"
            order.append("first")
        thread.join(5)
        assert not thread.is_alive()
        assert order == ["first", "second"]
    finally:
        first.close()
        second.close()
    assert (tmp_path / "catalog.sqlite-turn").exists()
