"""C-MOVE sub-operations routed to the move destination's sender actor.

The Move Destination (an AE title, PS3.4 C.4.2.1.2) is looked up among the configured
destinations; an unknown title is 0xA801.  The sub-operations then go to that
destination's sender as one ``SendNow`` batch, so the rule "one association at a time to
a destination, further requests queued" holds for moves as for everything else sent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from xvactor.config import Destination, NodeConfig
from xvactor.dicom.qr_scp import ResultStream, RetrieveItem, SubOperationResult
from xvactor.dicom.status import MoveDestinationUnknown

__all__ = ["DestinationRouter", "SendBatch"]

SendBatch = Callable[
    [Destination, Sequence[RetrieveItem], str, int], ResultStream[SubOperationResult]
]
"""Starts ``items`` on the destination's sender: (destination, items, originator AE
title, originator Message ID) -> one result per item, in order."""


class DestinationRouter:
    """Finds the move destination and hands the sub-operations to its sender."""

    def __init__(self, config: NodeConfig, send: SendBatch) -> None:
        self._by_ae_title = {d.ae_title.strip(): d for d in config.destinations}
        self._send = send

    def destination(self, ae_title: str) -> Destination:
        """The configured destination with this AE title.

        Raises
        ------
        MoveDestinationUnknown
            No destination has that AE title.
        """
        destination = self._by_ae_title.get(ae_title.strip())
        if destination is None:
            raise MoveDestinationUnknown(f"Move destination {ae_title.strip()!r} unknown")
        return destination

    def move(
        self,
        move_destination: str,
        items: Sequence[RetrieveItem],
        *,
        originator_ae_title: str,
        originator_message_id: int,
    ) -> ResultStream[SubOperationResult]:
        """Send ``items`` to ``move_destination`` through its sender."""
        destination = self.destination(move_destination)
        return self._send(destination, items, originator_ae_title, originator_message_id)
