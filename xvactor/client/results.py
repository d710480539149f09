"""What the client's verbs return: per-instance store results and retrieve summaries."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Self

from xvactor.dicom.qr_scu import RetrieveOutcome
from xvactor.dicom.status import Status

__all__ = [
    "GetResult",
    "MoveResult",
    "ReceivedFile",
    "RetrieveResult",
    "StoreProgress",
    "StoreResult",
]


@dataclass(frozen=True)
class ReceivedFile:
    """An instance received during a C-MOVE or C-GET."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: Path | None
    """Where it was written (``None`` when only handed to a callback)."""
    size: int


@dataclass(frozen=True)
class RetrieveResult:
    """The end of a C-MOVE or C-GET (PS3.4 C.4.2.1.5, C.4.3.1.5) and what we received.

    A C-MOVE to a third AE receives nothing here; ``completed`` counts what the peer sent.
    """

    status: int
    error_comment: str
    completed: int
    failed: int
    warning: int
    remaining: int
    failed_sop_instances: tuple[str, ...]
    cancelled: bool
    received: tuple[ReceivedFile, ...]

    @property
    def ok(self) -> bool:
        """Success with no failed or warning sub-operation."""
        return self.status == Status.SUCCESS and self.failed == 0 and self.warning == 0

    @classmethod
    def from_outcome(cls, outcome: RetrieveOutcome, received: tuple[ReceivedFile, ...]) -> Self:
        """Combine the peer's final response with what our handler received."""
        return cls(
            status=outcome.status,
            error_comment=outcome.error_comment,
            completed=outcome.completed,
            failed=outcome.failed,
            warning=outcome.warning,
            remaining=outcome.remaining,
            failed_sop_instances=outcome.failed_sop_instances,
            cancelled=outcome.cancelled,
            received=received,
        )


class MoveResult(RetrieveResult):
    """The result of :meth:`xvactor.client.Client.move`."""


class GetResult(RetrieveResult):
    """The result of :meth:`xvactor.client.Client.get`."""


@dataclass(frozen=True)
class StoreResult:
    """One instance of a :meth:`xvactor.client.Client.store` call.

    ``status`` is the C-STORE response status (``None`` if none came); ``outcome`` is the
    classification of the sender (``"success"``, ``"warning"``, ``"failed"``, ...).
    """

    path: str | None
    sop_instance_uid: str
    status: int | None
    error_comment: str
    outcome: str

    @property
    def ok(self) -> bool:
        """Stored (success or warning)."""
        return self.outcome in ("success", "warning")


@dataclass(frozen=True)
class StoreProgress:
    """A progress event of a store call: one more instance has its result."""

    done: int
    total: int
    bytes_done: int
    result: StoreResult
