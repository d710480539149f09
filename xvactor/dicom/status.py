"""DIMSE status codes and the one boundary that turns exceptions into them.

Status names follow PS3.7 Annex C (general statuses) and PS3.4 Table B.2-1 (Storage
Service Class).  Every inbound handler returns ``status_for(exc)`` for whatever went wrong,
so a peer always receives a status with an ErrorComment, never a dropped association.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass

from xvactor.runtime.errors import ActorDead, AskTimeout, MailboxFull

__all__ = [
    "CannotUnderstand",
    "DicomServiceError",
    "DuplicateInstance",
    "IdentifierDoesNotMatch",
    "MoveDestinationUnknown",
    "OutOfResources",
    "Status",
    "StatusReply",
    "UnableToProcess",
    "status_for",
]


class Status(enum.IntEnum):
    """DIMSE status codes used by xvactor (PS3.7 C, PS3.4 B.2-1)."""

    SUCCESS = 0x0000
    # PS3.7 C.4 general failures
    DUPLICATE_SOP_INSTANCE = 0x0111
    PROCESSING_FAILURE = 0x0110
    SOP_CLASS_NOT_SUPPORTED = 0x0122
    # PS3.4 B.2-1 Storage failures
    OUT_OF_RESOURCES = 0xA700
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    CANNOT_UNDERSTAND = 0xC000
    # PS3.4 B.2-1 Storage warnings
    COERCION_OF_DATA_ELEMENTS = 0xB000
    ELEMENTS_DISCARDED = 0xB006
    DATASET_DOES_NOT_MATCH_SOP_CLASS_WARNING = 0xB007
    # PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4: Query/Retrieve (and K.4.1.1.4 worklist)
    UNABLE_TO_CALCULATE_MATCHES = 0xA701
    UNABLE_TO_PERFORM_SUBOPERATIONS = 0xA702
    MOVE_DESTINATION_UNKNOWN = 0xA801
    IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    UNABLE_TO_PROCESS = 0xC000
    SUBOPERATIONS_COMPLETE_WITH_FAILURES = 0xB000
    CANCEL = 0xFE00
    PENDING = 0xFF00
    PENDING_OPTIONAL_KEYS_UNSUPPORTED = 0xFF01


class DicomServiceError(Exception):
    """A failure that carries the DIMSE status and ErrorComment the peer should see."""

    status: Status = Status.PROCESSING_FAILURE

    def __init__(self, error_comment: str, *, status: Status | None = None) -> None:
        super().__init__(error_comment)
        if status is not None:
            self.status = status
        # PS3.5: ErrorComment is LO, at most 64 characters.
        self.error_comment = error_comment[:64]


class OutOfResources(DicomServiceError):
    """Refused for lack of resources (disk, node saturated): the sender may retry later."""

    status = Status.OUT_OF_RESOURCES


class CannotUnderstand(DicomServiceError):
    """The dataset cannot be parsed or lacks what the node needs to file it."""

    status = Status.CANNOT_UNDERSTAND


class IdentifierDoesNotMatch(DicomServiceError):
    """A C-FIND/C-MOVE/C-GET Identifier the SOP Class cannot take (PS3.4 C.4.1.1.4)."""

    status = Status.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS


class UnableToProcess(DicomServiceError):
    """A query or retrieve the node cannot carry out (PS3.4 C.4.1.1.4, 0xC000)."""

    status = Status.UNABLE_TO_PROCESS


class MoveDestinationUnknown(DicomServiceError):
    """The Move Destination is not a configured destination (PS3.4 C.4.2.1.5)."""

    status = Status.MOVE_DESTINATION_UNKNOWN


class DuplicateInstance(DicomServiceError):
    """The SOP Instance is already stored and the duplicate policy is ``reject``."""

    status = Status.DUPLICATE_SOP_INSTANCE


@dataclass(frozen=True)
class StatusReply:
    """What an inbound handler returns to the peer."""

    status: int
    error_comment: str | None = None


def status_for(exc: BaseException | None) -> StatusReply:
    """Map an outcome to the status the peer sees (``None`` means success).

    This is the only place exceptions become statuses.
    """
    if exc is None:
        return StatusReply(Status.SUCCESS)
    if isinstance(exc, DicomServiceError):
        return StatusReply(exc.status, exc.error_comment)
    if isinstance(exc, AskTimeout | MailboxFull):
        return StatusReply(Status.OUT_OF_RESOURCES, "Node saturated, retry later")
    if isinstance(exc, ActorDead):
        return StatusReply(Status.OUT_OF_RESOURCES, "Node is shutting down, retry later")
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StatusReply(Status.OUT_OF_RESOURCES, "Out of disk space")
    if isinstance(exc, OSError):
        return StatusReply(Status.OUT_OF_RESOURCES, f"Storage I/O error: {exc.strerror}"[:64])
    return StatusReply(Status.PROCESSING_FAILURE, f"Internal error: {type(exc).__name__}"[:64])
