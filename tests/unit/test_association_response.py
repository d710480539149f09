"""The peer's A-ASSOCIATE response, also when pynetdicom's requestor dropped it."""

from __future__ import annotations

import queue
from types import SimpleNamespace
from typing import Any, cast

from pynetdicom.association import Association
from pynetdicom.pdu_primitives import A_ABORT, A_ASSOCIATE

from xvactor.dicom.scu import association_response


def association(recorded: object, queued: object) -> Association:
    """An association that recorded ``recorded`` and whose DUL still holds ``queued``."""
    items: queue.Queue[Any] = queue.Queue()
    if queued is not None:
        items.put(queued)

    def receive_pdu(wait: bool = False) -> Any:
        try:
            return items.get(block=wait)
        except queue.Empty:
            return None

    fake = SimpleNamespace(
        acceptor=SimpleNamespace(primitive=recorded), dul=SimpleNamespace(receive_pdu=receive_pdu)
    )
    return cast(Association, fake)


def rejection() -> A_ASSOCIATE:
    primitive = A_ASSOCIATE()
    primitive.result, primitive.result_source, primitive.diagnostic = 0x01, 0x01, 0x07
    return primitive


def test_the_recorded_response_is_used() -> None:
    recorded = rejection()
    assert association_response(association(recorded, None)) is recorded


def test_a_rejection_left_in_the_dul_queue_is_found() -> None:
    left = rejection()
    found = association_response(association(None, left))
    assert found is left and found.result == 0x01


def test_nothing_or_an_abort_is_no_response() -> None:
    assert association_response(association(None, None)) is None
    assert association_response(association(None, A_ABORT())) is None
