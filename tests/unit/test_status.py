"""The one boundary from exceptions to DIMSE statuses (table-driven)."""

from __future__ import annotations

import errno

import pytest

from xvactor.dicom.status import (
    CannotUnderstand,
    DuplicateInstance,
    OutOfResources,
    Status,
    StatusReply,
    status_for,
)
from xvactor.runtime import ActorDead, AskTimeout, MailboxFull


@pytest.mark.parametrize(
    ("exc", "status", "comment"),
    [
        (None, Status.SUCCESS, None),
        (CannotUnderstand("bad"), 0xC000, "bad"),
        (OutOfResources("disk"), 0xA700, "disk"),
        (DuplicateInstance("dup"), 0x0111, "dup"),
        (AskTimeout("slow"), 0xA700, "Node saturated, retry later"),
        (MailboxFull("full"), 0xA700, "Node saturated, retry later"),
        (ActorDead("gone"), 0xA700, "Node is shutting down, retry later"),
        (OSError(errno.ENOSPC, "No space left on device"), 0xA700, "Out of disk space"),
        (OSError(errno.EIO, "Input/output error"), 0xA700, "Storage I/O error: Input/output error"),
        (ZeroDivisionError("x"), 0x0110, "Internal error: ZeroDivisionError"),
    ],
)
def test_status_for(exc: BaseException | None, status: int, comment: str | None) -> None:
    assert status_for(exc) == StatusReply(status, comment)


def test_error_comment_is_at_most_64_characters() -> None:
    reply = status_for(CannotUnderstand("x" * 200))
    assert reply.error_comment is not None
    assert len(reply.error_comment) == 64
