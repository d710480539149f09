"""C-MOVE destinations: the Move Destination AE title mapped to its sender actor.

The Move Destination (an AE title, PS3.4 C.4.2.1.2) is looked up among the configured
destinations; an unknown title is 0xA801.  The sub-operations then go to that
destination's sender as one ``SendNow`` batch, so the rule "one association at a time to
a destination, further requests queued" holds for moves as for everything else sent.
"""

from __future__ import annotations

from collections.abc import Callable

from xvactor.actors.sender import SenderInbox
from xvactor.config import Destination, NodeConfig
from xvactor.dicom.status import MoveDestinationUnknown
from xvactor.runtime import ActorRef

__all__ = ["DestinationRouter"]


class DestinationRouter:
    """Finds a move destination and its sender."""

    def __init__(
        self, config: NodeConfig, sender_for: Callable[[str], ActorRef[SenderInbox]]
    ) -> None:
        self._by_ae_title = {d.ae_title.strip(): d for d in config.destinations}
        self._sender_for = sender_for

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

    def sender(self, ae_title: str) -> ActorRef[SenderInbox]:
        """The sender actor of the destination with this AE title."""
        return self._sender_for(self.destination(ae_title).name)
