"""Destinations as the client takes them: configured, named, or ad hoc.

A destination is a :class:`xvactor.config.Destination`, the name of one in the client's
configuration, or an ad hoc ``(host, port, ae_title)``.  :func:`peer_for` turns it into the
:class:`xvactor.dicom.scu.Peer` one association needs, with our calling AE title (the
destination's ``local_ae_title`` or the client's) and the configured timeouts.
"""

from __future__ import annotations

from xvactor.client.errors import UnknownDestination
from xvactor.config import Destination, NodeConfig
from xvactor.dicom.scu import Peer

__all__ = ["DestinationLike", "peer_for", "resolve"]

#: What the client's verbs accept as ``dest``.
DestinationLike = Destination | str | tuple[str, int, str]


def resolve(dest: DestinationLike, config: NodeConfig) -> Destination:
    """Return the :class:`Destination` that ``dest`` designates.

    Raises
    ------
    UnknownDestination
        A name that ``config`` does not define.
    ValueError
        A malformed ad hoc tuple.
    """
    if isinstance(dest, Destination):
        return dest
    if isinstance(dest, str):
        for known in config.destinations:
            if known.name == dest:
                return known
        names = ", ".join(d.name for d in config.destinations) or "none configured"
        raise UnknownDestination(f"unknown destination {dest!r} (known: {names})")
    host, port, ae_title = dest
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"{port!r} is not a TCP port")
    if not ae_title or len(ae_title) > 16:
        raise ValueError(f"{ae_title!r} is not an AE title (1-16 characters)")
    return Destination(name=f"{ae_title}@{host}:{port}", ae_title=ae_title, host=host, port=port)


def peer_for(destination: Destination, config: NodeConfig, ae_title: str) -> Peer:
    """Return the association parameters for ``destination``.

    Parameters
    ----------
    destination : Destination
        The remote AE.
    config : NodeConfig
        Timeouts and the largest PDU.
    ae_title : str
        The client's AE title, used unless the destination sets ``local_ae_title``.
    """
    return Peer.for_destination(destination, config, calling_ae_title=ae_title)
