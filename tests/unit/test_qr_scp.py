"""Pure parts of the Q/R SCP: extended negotiation, sub-operation counting and limits."""

from __future__ import annotations

import pytest
from pydicom.uid import UID

from xvactor.dicom.qr_scp import (
    SubOperationResult,
    _check_count,
    _Counts,
    extended_negotiation,
)
from xvactor.dicom.status import DicomServiceError, Status
from xvactor.sender.queue import SendItem

STUDY_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
STUDY_MOVE = UID("1.2.840.10008.5.1.4.1.2.2.2")


@pytest.mark.parametrize(
    ("asked", "answer"),
    [
        (b"\x01\x01\x01\x01", b"\x00\x01\x00\x00"),  # relational, fuzzy, timezone refused
        (b"\x00\x01", b"\x00\x01"),
        (b"\x01", b"\x00"),
        (b"\x00\x00\x00", b"\x00\x00\x00"),
    ],
)
def test_extended_negotiation_agrees_to_datetime_matching_only(asked: bytes, answer: bytes) -> None:
    assert extended_negotiation({STUDY_FIND: asked}) == {STUDY_FIND: answer}
    assert extended_negotiation({STUDY_MOVE: asked}) == {}


def test_counts_classify_sub_operations() -> None:
    counts = _Counts(remaining=4)
    for uid, status in (("1", 0x0000), ("2", 0xB007), ("3", 0xA700), ("4", 0xC000)):
        counts.add(SubOperationResult(uid, status))
    assert (counts.remaining, counts.completed, counts.warning, counts.failed) == (0, 1, 1, 2)
    assert counts.failed_uids == ["3", "4"]


def test_more_sub_operations_than_the_counts_can_carry_are_refused() -> None:
    item = SendItem(
        path="p", sop_class_uid="1.2", sop_instance_uid="1.2.3",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
    )  # fmt: skip
    _check_count([item] * 0xFFFF)
    with pytest.raises(DicomServiceError) as raised:
        _check_count([item] * 0x10000)
    assert raised.value.status == Status.UNABLE_TO_CALCULATE_MATCHES
