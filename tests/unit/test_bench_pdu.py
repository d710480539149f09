"""The bench's hand-made PDUs and command sets, checked with pynetdicom's and pydicom's decoders."""

from __future__ import annotations

from io import BytesIO

import pytest
from pydicom.filereader import read_dataset
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, MaximumLengthNotification
from pynetdicom.presentation import PresentationContext as PynetdicomContext

from xvactor.bench import pdu
from xvactor.bench.dimse import c_echo_rq, c_find_rq, c_store_rq, decode_response

CT = "1.2.840.10008.5.1.4.1.1.2"
ELE = "1.2.840.10008.1.2.1"
ILE = "1.2.840.10008.1.2"


def test_associate_rq_decodes_with_pynetdicom() -> None:
    contexts = [pdu.PresentationContext(1, CT, (ELE,)), pdu.PresentationContext(3, CT, (ILE, ELE))]
    raw = pdu.encode_associate_rq("CALLED", "CALLING", contexts, max_pdu=131072,
                                  implementation_class_uid="1.2.3.4",
                                  implementation_version_name="BENCH")  # fmt: skip
    decoded = A_ASSOCIATE_RQ()
    decoded.decode(raw)
    assert decoded.called_ae_title == "CALLED"
    assert decoded.calling_ae_title == "CALLING"
    assert decoded.application_context_name == pdu.APPLICATION_CONTEXT
    proposed = [
        (cx.context_id, cx.abstract_syntax, [str(ts) for ts in cx.transfer_syntax])
        for cx in decoded.presentation_context
    ]
    assert proposed == [(1, CT, [ELE]), (3, CT, [ILE, ELE])]
    info = decoded.user_information
    assert info.maximum_length == 131072
    assert info.implementation_class_uid == "1.2.3.4"
    assert info.implementation_version_name == "BENCH"


def test_associate_ac_from_pynetdicom_decodes() -> None:
    primitive = A_ASSOCIATE()
    primitive.application_context_name = pdu.APPLICATION_CONTEXT
    primitive.called_ae_title = "CALLED"
    primitive.calling_ae_title = "CALLING"
    primitive.result = 0
    accepted = PynetdicomContext()
    accepted.context_id, accepted.abstract_syntax = 1, CT
    accepted.transfer_syntax = [ELE]
    accepted.result = 0
    refused = PynetdicomContext()
    refused.context_id, refused.abstract_syntax = 3, CT
    refused.transfer_syntax = [ILE]
    refused.result = 4
    primitive.presentation_context_definition_results_list = [accepted, refused]
    length = MaximumLengthNotification()
    length.maximum_length_received = 16384
    primitive.user_information = [length]
    ac = A_ASSOCIATE_AC()
    ac.from_primitive(primitive)
    raw = ac.encode()
    assert raw[0] == pdu.ASSOCIATE_AC
    accept = pdu.decode_associate_ac(raw[6:])
    assert accept.max_pdu == 16384
    assert accept.accepted == {1: ELE}
    assert accept.refused == {3: "transfer-syntaxes-not-supported"}
    with pytest.raises(ValueError, match="too short"):
        pdu.decode_associate_ac(raw[6:40])


def test_pdv_headers_and_iteration() -> None:
    body_pdu = pdu.pdv_headers(4, 5, 0x03) + b"abcd"
    assert body_pdu[0] == pdu.P_DATA_TF
    assert int.from_bytes(body_pdu[2:6], "big") == len(body_pdu) - 6
    assert list(pdu.iter_pdvs(body_pdu[6:])) == [(5, 0x03, b"abcd")]
    with pytest.raises(ValueError, match="overruns"):
        list(pdu.iter_pdvs(body_pdu[6:-1]))
    assert pdu.decode_associate_rj(bytes((0, 1, 1, 7))).reason == 7


def _command(raw: bytes) -> dict[str, object]:
    ds = read_dataset(BytesIO(raw), is_implicit_VR=True, is_little_endian=True)
    assert ds.CommandGroupLength == len(raw) - 12
    return {elem.keyword: elem.value for elem in ds}


def test_command_sets_decode_with_pydicom() -> None:
    uid = "1.2.826.0.1.3680043.8.498.1.1001.1000000000001"
    store = _command(c_store_rq(7, CT, uid))
    assert store["AffectedSOPClassUID"] == CT
    assert store["AffectedSOPInstanceUID"] == uid
    assert (store["CommandField"], store["MessageID"], store["CommandDataSetType"]) == (1, 7, 0)
    echo = _command(c_echo_rq(9))
    assert (echo["CommandField"], echo["CommandDataSetType"]) == (0x30, 0x0101)
    find = _command(c_find_rq(2, "1.2.840.10008.5.1.4.1.2.2.1"))
    assert find["CommandField"] == 0x20


def test_response_decoding() -> None:
    def element(tag: int, value: bytes) -> bytes:
        return (
            (0).to_bytes(2, "little")
            + tag.to_bytes(2, "little")
            + len(value).to_bytes(4, "little")
            + value
        )

    raw = (
        element(0x0100, (0x8001).to_bytes(2, "little"))
        + element(0x0120, (7).to_bytes(2, "little"))
        + element(0x0800, (0x0101).to_bytes(2, "little"))
        + element(0x0900, (0xA700).to_bytes(2, "little"))
        + element(0x0902, b"Out of space")
    )
    response = decode_response(raw)
    assert response.command_field == 0x8001
    assert response.message_id_being_responded_to == 7
    assert response.status == 0xA700
    assert not response.has_data_set
    assert response.error_comment == "Out of space"
    with pytest.raises(ValueError, match="Status"):
        decode_response(raw[:30])
