"""The audit record of one association: one structured line, written when it ends.

``key=value`` pairs (values with spaces quoted), so a log shipper can parse them: who
(calling AE title, address), to whom (called AE title), what was decided and why (the
accepted-client definition, its services, the services refused at negotiation, the
rejection reason), and what was done (C-ECHO and C-STORE counts).  No patient data:
instances are counted, not named.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field

__all__ = ["AssociationRecord"]


def _value(text: str) -> str:
    return json.dumps(text, ensure_ascii=False) if not text or " " in text or '"' in text else text


@dataclass
class AssociationRecord:
    """What one association asked for, what was decided, and what it did."""

    address: str
    calling: str = "-"
    called: str = "-"
    outcome: str = "connected"
    client: str = "-"
    allowed: tuple[str, ...] = ()
    refused: tuple[str, ...] = ()
    """Services whose presentation contexts were refused at negotiation."""
    reason: str = ""
    """Why the association was rejected, if it was."""
    slot: int | None = None
    anonymize: bool = False
    echoes: int = 0
    stored: int = 0
    failed: int = 0
    counts_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count_store(self, success: bool) -> None:
        """Count one C-STORE outcome (warnings count as stored)."""
        with self.counts_lock:
            if success:
                self.stored += 1
            else:
                self.failed += 1

    def count_echo(self) -> None:
        """Count one C-ECHO."""
        with self.counts_lock:
            self.echoes += 1

    def line(self) -> str:
        """The audit line."""
        fields = {
            "calling": self.calling,
            "address": self.address,
            "called": self.called,
            "outcome": self.outcome,
            "client": self.client,
            "allowed": ",".join(self.allowed) or "-",
            "refused": ",".join(self.refused) or "-",
            "anonymized": "yes" if self.anonymize else "no",
            "echo": str(self.echoes),
            "stored": str(self.stored),
            "failed": str(self.failed),
        }
        if self.reason:
            fields["reason"] = self.reason
        return "association " + " ".join(f"{key}={_value(value)}" for key, value in fields.items())
