"""The one pure classification of an outbound C-STORE attempt, and the retry schedule.

Every attempt a sender makes ends in exactly one :class:`Verdict`, decided here and nowhere
else from what happened on the wire:

====================================================  =============================
what happened                                         verdict
====================================================  =============================
no association, no response, association aborted      ``retry`` (backoff, capped)
status 0xA7xx (Refused: Out of Resources)             ``retry_later`` (backoff)
status 0x0000                                         ``success``
warning status (0x0001, 0x0107, 0x0116, 0xBxxx)       ``warning`` (a success)
any other status (failure, cancel, a stray pending)   ``failed``
no acceptable presentation context                    ``refused`` (never retried)
file unreadable or not what it claims to be           ``refused`` (never retried)
====================================================  =============================

Status ranges are those of PS3.7 Annex C and PS3.4 Table B.2-1 (Storage Service Class).
Local outcomes carry a status too, so every result has one: 0xA700 for a transport
failure (what a C-MOVE SCP reports for a sub-operation it could not perform) and the
"Cannot understand" range 0xC000 (unreadable file) / 0xC001 (no acceptable presentation
context) for local refusals.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "LOCAL_NO_CONTEXT",
    "LOCAL_TRANSPORT",
    "LOCAL_UNREADABLE",
    "Attempt",
    "Outcome",
    "Problem",
    "Verdict",
    "backoff",
    "classify",
]

LOCAL_TRANSPORT = 0xA700
"""Status recorded for an attempt that got no C-STORE response (Out of Resources)."""
LOCAL_UNREADABLE = 0xC000
"""Status recorded for a file that cannot be read or parsed (Cannot understand)."""
LOCAL_NO_CONTEXT = 0xC001
"""Status recorded when the peer accepted no presentation context we can use."""

_WARNINGS = frozenset({0x0001, 0x0107, 0x0116})


class Problem(enum.StrEnum):
    """What went wrong locally, before or instead of a C-STORE response."""

    CONNECTION = "connection"
    """No association: refused, unreachable, rejected, or aborted during negotiation."""
    NO_RESPONSE = "no_response"
    """The association was aborted or the DIMSE timeout passed before the response."""
    NO_CONTEXT = "no_context"
    """The peer accepted no presentation context for the SOP class and any syntax we can send."""
    UNREADABLE = "unreadable"
    """The file is missing, unreadable, or not a Part 10 file of the announced instance."""


class Verdict(enum.StrEnum):
    """What a sender does with an item after one attempt."""

    SUCCESS = "success"
    WARNING = "warning"
    """Stored with a warning status: a success, the warning is recorded."""
    RETRY = "retry"
    """Transport failure: retried after an exponential backoff, up to the retry limit."""
    RETRY_LATER = "retry_later"
    """The peer is out of resources (0xA7xx): retried after a backoff, up to the limit."""
    FAILED = "failed"
    """The peer refused this instance: failed with its status and ErrorComment."""
    REFUSED = "refused"
    """Cannot be sent at all (no context, bad file): failed at once, never retried."""

    @property
    def delivered(self) -> bool:
        """Whether the peer stored the instance."""
        return self in (Verdict.SUCCESS, Verdict.WARNING)

    @property
    def retryable(self) -> bool:
        """Whether the item goes back to the queue for another attempt."""
        return self in (Verdict.RETRY, Verdict.RETRY_LATER)


@dataclass(frozen=True)
class Attempt:
    """What one attempt produced: a response status, or a local problem.

    Attributes
    ----------
    status : int or None
        The C-STORE-RSP Status (0000,0900), ``None`` if no response arrived.
    error_comment : str
        The response's Error Comment (0000,0902), or a description of the problem.
    problem : Problem or None
        Set when no response could be had.
    """

    status: int | None = None
    error_comment: str = ""
    problem: Problem | None = None


@dataclass(frozen=True)
class Outcome:
    """The verdict on an attempt, with the status and comment to record and report."""

    verdict: Verdict
    status: int
    error_comment: str = ""


def classify(attempt: Attempt) -> Outcome:
    """Classify one C-STORE attempt (the table in this module's docstring).

    Parameters
    ----------
    attempt : Attempt
        What the attempt produced.

    Returns
    -------
    Outcome
        The verdict, and the status and ErrorComment to record (local problems get the
        local statuses of this module).
    """
    comment = attempt.error_comment
    match attempt.problem:
        case Problem.CONNECTION | Problem.NO_RESPONSE:
            return Outcome(Verdict.RETRY, LOCAL_TRANSPORT, comment)
        case Problem.NO_CONTEXT:
            return Outcome(Verdict.REFUSED, LOCAL_NO_CONTEXT, comment)
        case Problem.UNREADABLE:
            return Outcome(Verdict.REFUSED, LOCAL_UNREADABLE, comment)
        case None:
            pass
    status = attempt.status
    if status is None:
        return Outcome(Verdict.RETRY, LOCAL_TRANSPORT, comment or "No C-STORE response")
    if status == 0x0000:
        return Outcome(Verdict.SUCCESS, status, comment)
    if status in _WARNINGS or 0xB000 <= status <= 0xBFFF:
        return Outcome(Verdict.WARNING, status, comment)
    if 0xA700 <= status <= 0xA7FF:
        return Outcome(Verdict.RETRY_LATER, status, comment)
    return Outcome(Verdict.FAILED, status, comment)


def backoff(attempts: int, *, initial: float, maximum: float) -> float:
    """Delay before the next attempt after ``attempts`` failed ones: doubling, capped.

    Parameters
    ----------
    attempts : int
        Failed attempts so far (>= 1).
    initial : float
        Delay after the first failure, in seconds.
    maximum : float
        The cap, in seconds.

    Returns
    -------
    float
        ``min(initial * 2 ** (attempts - 1), maximum)``.
    """
    exponent = max(0, attempts - 1)
    if exponent >= 64:  # 2**64 s is beyond any cap; avoid float overflow
        return maximum
    return float(min(initial * 2.0**exponent, maximum))
