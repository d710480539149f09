"""Hand-encoded command sets equal pynetdicom's encoding of the same message."""

from __future__ import annotations

from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_FIND_RSP, C_STORE_RSP
from pynetdicom.dimse_primitives import C_FIND, C_STORE

from xvactor.dicom.commands import (
    encode_c_find_rsp_pending,
    encode_c_store_rsp,
    pdv_command_last,
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
