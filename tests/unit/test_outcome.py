"""The outbound C-STORE classifier (one table) and the retry schedule."""

from __future__ import annotations

import pytest

from xvactor.dicom.outcome import (
    LOCAL_NO_CONTEXT,
    LOCAL_TRANSPORT,
    LOCAL_UNREADABLE,
    Attempt,
    Problem,
    Verdict,
    backoff,
    classify,
)

CASES = [
    # (attempt, verdict, recorded status)
    (Attempt(status=0x0000), Verdict.SUCCESS, 0x0000),
    (Attempt(status=0xB000, error_comment="coerced"), Verdict.WARNING, 0xB000),
    (Attempt(status=0xB007), Verdict.WARNING, 0xB007),
    (Attempt(status=0x0107), Verdict.WARNING, 0x0107),
    (Attempt(status=0x0001), Verdict.WARNING, 0x0001),
    (Attempt(status=0xA700, error_comment="disk full"), Verdict.RETRY_LATER, 0xA700),
    (Attempt(status=0xA7FF), Verdict.RETRY_LATER, 0xA7FF),
    (Attempt(status=0xA900, error_comment="mismatch"), Verdict.FAILED, 0xA900),
    (Attempt(status=0xC000), Verdict.FAILED, 0xC000),
    (Attempt(status=0x0111), Verdict.FAILED, 0x0111),
    (Attempt(status=0x0122), Verdict.FAILED, 0x0122),
    (Attempt(status=0xFE00), Verdict.FAILED, 0xFE00),
    (Attempt(status=0xFF00), Verdict.FAILED, 0xFF00),
    (Attempt(status=None), Verdict.RETRY, LOCAL_TRANSPORT),
    (Attempt(problem=Problem.CONNECTION, error_comment="refused"), Verdict.RETRY, LOCAL_TRANSPORT),
    (Attempt(problem=Problem.NO_RESPONSE), Verdict.RETRY, LOCAL_TRANSPORT),
    (Attempt(problem=Problem.NO_CONTEXT), Verdict.REFUSED, LOCAL_NO_CONTEXT),
    (Attempt(problem=Problem.UNREADABLE), Verdict.REFUSED, LOCAL_UNREADABLE),
]


@pytest.mark.parametrize(("attempt", "verdict", "status"), CASES)
def test_classify(attempt: Attempt, verdict: Verdict, status: int) -> None:
    outcome = classify(attempt)
    assert outcome.verdict is verdict
    assert outcome.status == status
    assert outcome.error_comment == attempt.error_comment or not attempt.error_comment


@pytest.mark.parametrize(
    ("verdict", "delivered", "retryable"),
    [
        (Verdict.SUCCESS, True, False),
        (Verdict.WARNING, True, False),
        (Verdict.RETRY, False, True),
        (Verdict.RETRY_LATER, False, True),
        (Verdict.FAILED, False, False),
        (Verdict.REFUSED, False, False),
    ],
)
def test_verdict_properties(verdict: Verdict, delivered: bool, retryable: bool) -> None:
    assert verdict.delivered is delivered
    assert verdict.retryable is retryable


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [backoff(n, initial=1.0, maximum=10.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff(10_000, initial=1.0, maximum=300.0) == 300.0
