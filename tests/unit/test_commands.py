"""Hand-encoded command sets equal pynetdicom's encoding of the same message."""

from __future__ import annotations

import pytest
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE

from xvactor.dicom.commands import encode_c_store_rsp, pdv_command_last


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
