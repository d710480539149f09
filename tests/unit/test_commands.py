"""Hand-encoded command sets equal pynetdicom's encoding of the same message."""

from __future__ import annotations

from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_FIND_RSP, C_STORE_RQ, C_STORE_RSP
from pynetdicom.dimse_primitives import C_FIND, C_STORE
from pynetdicom.dsutils import encode

from xvactor.dicom.commands import (
    StoreRequest,
    decode_c_store_rq,
    encode_c_find_rsp_pending,
    encode_c_store_rsp,
    pdv_command_last,
    pdv_headers,
    pdvs_dataset,
)


def pynetdicom_encoding(status: int, comment: str | None, uid: str) -> bytes:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 7
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rsp.AffectedSOPInstanceUID = uid
    rsp.Status = status
    if comment is not None:
        rsp.ErrorComment = comment
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    (p_data,) = list(message.encode_msg(1, 16384))
    ((context_id, pdv),) = p_data.presentation_data_value_list
    assert context_id == 1
    return bytes(pdv)


@pytest.mark.parametrize(
    ("status", "comment"),
    [(0x0000, None), (0xA700, "Out of disk space"), (0x0111, "odd"), (0xC000, "x" * 64)],
)
@pytest.mark.parametrize("uid", ["1.2.3.4", "1.2.3.45"], ids=["even", "odd"])
def test_c_store_rsp_equals_pynetdicoms(status: int, comment: str | None, uid: str) -> None:
    ours = pdv_command_last(
        encode_c_store_rsp(
            message_id=7,
            sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
            sop_instance_uid=uid,
            status=status,
            error_comment=comment,
        )
    )
    assert ours == pynetdicom_encoding(status, comment, uid)


@pytest.mark.parametrize("sop_class", ["1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.31"])
def test_pending_c_find_rsp_equals_pynetdicoms(sop_class: str) -> None:
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = 513
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = 0xFF00
    rsp.Identifier = BytesIO(b"\x08\x00\x52\x00\x06\x00\x00\x00STUDY ")
    message = C_FIND_RSP()
    message.primitive_to_message(rsp)
    command, data = (pdv for p_data in message.encode_msg(1, 16384)
                     for _, pdv in p_data.presentation_data_value_list)  # fmt: skip
    ours = pdv_command_last(encode_c_find_rsp_pending(message_id=513, sop_class_uid=sop_class))
    assert ours == bytes(command)
    assert pdvs_dataset(bytes(data)[1:], 0) == [bytes(data)]


def test_a_large_identifier_is_fragmented() -> None:
    pdvs = pdvs_dataset(b"x" * 10, 4)
    assert pdvs == [b"\x00xxxx", b"\x00xxxx", b"\x02xx"]


def pynetdicom_c_store_rq(
    *, message_id: int, uid: str, with_dataset: bool, originator: str | None = None
) -> bytes:
    """The command set pynetdicom writes for a C-STORE-RQ."""
    rq = C_STORE()
    rq.MessageID = message_id
    rq.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    rq.AffectedSOPInstanceUID = uid
    rq.Priority = 2
    if originator is not None:
        rq.MoveOriginatorApplicationEntityTitle = originator
        rq.MoveOriginatorMessageID = 3
    rq.DataSet = BytesIO(b"\x08\x00\x18\x00\x04\x00\x00\x001.2\x00" if with_dataset else b"")
    message = C_STORE_RQ()
    message.primitive_to_message(rq)
    command = message.command_set
    if not with_dataset:
        command.CommandDataSetType = 0x0101
    encoded = encode(command, True, True)
    assert encoded is not None
    return encoded


@pytest.mark.parametrize("uid", ["1.2.3.4", "1.2.3.45", "1." + "9" * 62], ids=["even", "odd", "64"])
@pytest.mark.parametrize("with_dataset", [True, False])
@pytest.mark.parametrize("originator", [None, "MOVESCU"])
def test_c_store_rq_reads_what_pynetdicom_writes(
    uid: str, with_dataset: bool, originator: str | None
) -> None:
    encoded = pynetdicom_c_store_rq(
        message_id=65535, uid=uid, with_dataset=with_dataset, originator=originator
    )
    request = decode_c_store_rq(encoded)
    assert request == StoreRequest(
        message_id=65535,
        affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        affected_sop_instance_uid=uid,
        data_set_present=with_dataset,
    )


def test_other_commands_and_unusual_command_sets_are_left_to_pynetdicom() -> None:
    good = pynetdicom_c_store_rq(message_id=1, uid="1.2.3", with_dataset=True)
    assert decode_c_store_rq(good) is not None
    # A C-STORE-RSP, a truncated set, a wrong group, a non-ASCII UID, a missing UID.
    rsp = encode_c_store_rsp(message_id=1, sop_class_uid="1.2", sop_instance_uid="1.3", status=0)
    assert decode_c_store_rq(rsp) is None
    assert decode_c_store_rq(good[:-3]) is None
    assert decode_c_store_rq(b"\x08\x00" + good[2:]) is None
    assert decode_c_store_rq(good.replace(b"1.2.3", b"1.\xe9.3")) is None
    no_instance = pynetdicom_c_store_rq(message_id=1, uid="", with_dataset=True)
    assert decode_c_store_rq(no_instance) is None
    assert decode_c_store_rq(b"") is None


@pytest.mark.parametrize("size", [0, 1, 300])
def test_pdv_headers_make_the_p_data_tf_pynetdicom_encodes(size: int) -> None:
    from pynetdicom.pdu import P_DATA_TF
    from pynetdicom.pdu_primitives import P_DATA

    pdv = b"\x03" + bytes(range(256)) * 2
    pdv = pdv[: size + 1]
    primitive = P_DATA()
    primitive.presentation_data_value_list = [[7, pdv]]  # type: ignore[list-item]
    pdu = P_DATA_TF()
    pdu.from_primitive(primitive)
    assert pdv_headers(len(pdv) - 1, 7, pdv[0]) + pdv[1:] == pdu.encode()
