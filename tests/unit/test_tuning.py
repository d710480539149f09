"""Process settings for a receiving node."""

from __future__ import annotations

import sys

import pytest

from xvactor.node import RECEIVE_SWITCH_INTERVAL, tune_receiving_process


def test_a_receiving_process_hands_the_gil_over_sooner() -> None:
    before = sys.getswitchinterval()
    try:
        tune_receiving_process()
        assert sys.getswitchinterval() == pytest.approx(RECEIVE_SWITCH_INTERVAL)
        assert before > RECEIVE_SWITCH_INTERVAL
    finally:
        sys.setswitchinterval(before)
