"""Accepted clients: which definition applies to a peer, and what it may use."""

from __future__ import annotations

import pytest
from pynetdicom.presentation import build_context

from xvactor.config import Client, Service
from xvactor.dicom.access import match_client, permitted_contexts, service_of

ANONYMOUS = Client(name="anonymous", allow=(Service.ECHO,))
LOOPBACK = Client(name="loopback", address="127.0.0.0/8", allow=(Service.ECHO, Service.STORE))
HOST = Client(name="host", address="127.0.0.1", allow=(Service.STORE,))
PACS_AE = Client(name="pacs-ae", ae_title="PACS", allow=(Service.QUERY,))
PACS_HERE = Client(name="pacs-here", ae_title="PACS", address="127.0.0.0/8", allow=())
PACS_EXACT = Client(name="pacs-exact", ae_title="PACS", address="127.0.0.1", allow=())
ALL = [ANONYMOUS, LOOPBACK, HOST, PACS_AE, PACS_HERE, PACS_EXACT]


@pytest.mark.parametrize(
    ("clients", "ae", "address", "expected"),
    [
        ([ANONYMOUS], "ANY", "10.1.2.3", ANONYMOUS),
        ([LOOPBACK], "ANY", "10.1.2.3", None),
        ([LOOPBACK], "ANY", "127.0.0.5", LOOPBACK),
        ([PACS_AE], "OTHER", "127.0.0.1", None),
        ([PACS_AE], "PACS  ", "10.0.0.1", PACS_AE),  # trailing spaces are not significant
        ([PACS_AE], "pacs", "10.0.0.1", None),  # AE titles are case sensitive
        (ALL, "ANY", "10.0.0.1", ANONYMOUS),
        (ALL, "ANY", "127.0.0.9", LOOPBACK),
        (ALL, "ANY", "127.0.0.1", HOST),  # the narrower network wins
        (ALL, "PACS", "10.0.0.1", PACS_AE),  # AE only beats address only and anonymous
        (ALL, "PACS", "127.0.0.9", PACS_HERE),  # definitive beats everything
        (ALL, "PACS", "127.0.0.1", PACS_EXACT),  # ... the narrower definitive first
        ([ANONYMOUS, Client(name="second")], "X", "1.2.3.4", ANONYMOUS),  # ties: config order
        ([Client(name="v6", address="::1")], "X", "::1", Client(name="v6", address="::1")),
        ([LOOPBACK], "X", "not-an-address", None),
    ],
)
def test_match_client(
    clients: list[Client], ae: str, address: str, expected: Client | None
) -> None:
    assert match_client(clients, ae, address) == expected


@pytest.mark.parametrize(
    ("uid", "service"),
    [
        ("1.2.840.10008.1.1", Service.ECHO),
        ("1.2.840.10008.5.1.4.1.1.2", Service.STORE),  # CT
        ("1.2.840.10008.5.1.4.1.1.1.1", Service.STORE),  # DX
        ("1.2.840.10008.5.1.4.1.1.88.11", Service.STORE),  # Basic Text SR
        ("1.2.840.10008.5.1.4.1.2.1.1", Service.QUERY),  # Patient Root FIND
        ("1.2.840.10008.5.1.4.1.2.2.2", Service.RETRIEVE),  # Study Root MOVE
        ("1.2.840.10008.5.1.4.1.2.3.3", Service.RETRIEVE),  # Patient/Study Only GET
        ("1.2.840.10008.5.1.4.31", Service.QUERY),  # Modality Worklist FIND
        ("1.2.840.10008.1.20.1", Service.COMMITMENT),
        ("1.2.840.10008.5.1.1.9", Service.PRINT),
        ("1.2.3.4", None),
    ],
)
def test_service_of(uid: str, service: Service | None) -> None:
    assert service_of(uid) is service


def test_permitted_contexts_keep_only_allowed_services() -> None:
    contexts = [build_context("1.2.840.10008.1.1"), build_context("1.2.840.10008.5.1.4.1.1.2")]
    kept = permitted_contexts(contexts, [Service.ECHO])
    assert [str(cx.abstract_syntax) for cx in kept] == ["1.2.840.10008.1.1"]
