"""Who may associate, and for which services: the accepted clients of the DM options.

Four kinds of accepted client, as the conformance target lists them: anonymous (no AE
title, no address), address only, AE only, and definitive (both).  The most specific
definition that matches the peer wins:

1. definitive (AE title and address), the narrower network first;
2. AE title only;
3. address only, the narrower network first;
4. anonymous.

Ties keep configuration order.  A peer that matches nothing is rejected at association
time (PS3.8 Section 7.1.1.9: rejected-permanent, service-user, "calling AE title not
recognized").  A matched peer is offered only the presentation contexts of the services it
may use; the others are refused at negotiation with "abstract syntax not supported"
(PS3.8 Section 9.3.3.2), which DCMTK tools report as "no presentation context", and
nothing is stored or returned.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from pynetdicom.presentation import PresentationContext

from xvactor.config import Client, Service
from xvactor.dicom.contexts import STORAGE_SOP_CLASSES

__all__ = ["match_client", "permitted_contexts", "service_of"]

_VERIFICATION = "1.2.840.10008.1.1"
_COMMITMENT = "1.2.840.10008.1.20.1"
_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"
_QR_PREFIX = "1.2.840.10008.5.1.4.1.2."
_PRINT_PREFIX = "1.2.840.10008.5.1.1."
_STORAGE = frozenset(STORAGE_SOP_CLASSES)


def service_of(sop_class_uid: str) -> Service | None:
    """The service a SOP Class belongs to, for permissions (``None``: not one of ours)."""
    if sop_class_uid == _VERIFICATION:
        return Service.ECHO
    if sop_class_uid == _COMMITMENT:
        return Service.COMMITMENT
    if sop_class_uid == _WORKLIST_FIND:
        return Service.QUERY
    if sop_class_uid.startswith(_QR_PREFIX):
        # 1.2.840.10008.5.1.4.1.2.<model>.<1 FIND | 2 MOVE | 3 GET>
        return Service.QUERY if sop_class_uid.endswith(".1") else Service.RETRIEVE
    if sop_class_uid.startswith(_PRINT_PREFIX):
        return Service.PRINT
    if sop_class_uid in _STORAGE:
        return Service.STORE
    return None


def _network(client: Client) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if client.address is None:
        return None
    return ipaddress.ip_network(client.address, strict=False)


def _rank(client: Client, calling_ae_title: str, address: str) -> tuple[int, int] | None:
    """How specifically ``client`` matches the peer, or ``None`` if it does not."""
    if client.ae_title is not None and client.ae_title.strip() != calling_ae_title:
        return None
    network = _network(client)
    if network is not None:
        try:
            if ipaddress.ip_address(address) not in network:
                return None
        except ValueError:
            return None
    prefix = network.prefixlen if network is not None else 0
    if client.ae_title is not None and network is not None:
        return (3, prefix)
    if client.ae_title is not None:
        return (2, 0)
    if network is not None:
        return (1, prefix)
    return (0, 0)


def match_client(clients: Sequence[Client], calling_ae_title: str, address: str) -> Client | None:
    """The accepted-client definition that applies to this peer, if any."""
    calling = calling_ae_title.strip()
    best: tuple[tuple[int, int], Client] | None = None
    for client in clients:
        rank = _rank(client, calling, address)
        if rank is not None and (best is None or rank > best[0]):
            best = (rank, client)
    return best[1] if best is not None else None


def permitted_contexts(
    contexts: Iterable[PresentationContext], allowed: Iterable[Service]
) -> list[PresentationContext]:
    """The supported contexts whose service ``allowed`` contains."""
    permitted = set(allowed)
    return [cx for cx in contexts if service_of(str(cx.abstract_syntax)) in permitted]
