"""Every message of the node's actors round-trips through msgpack (they may be persisted
or cross a process boundary later)."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xvactor.actors.catalog import (
    CountInstances,
    FindInstance,
    InstanceCount,
    InstanceFound,
)
from xvactor.actors.listener import GetAddresses, ListenerAddresses
from xvactor.actors.storage import DeidentifyAndStore, InstanceStored
from xvactor.dicom.records import InstanceRecord
from xvactor.runtime import Message

text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=64)

records = st.builds(
    InstanceRecord,
    **{
        field: text
        for field in InstanceRecord.__struct_fields__
        if field not in ("size", "dataset_offset", "received_at", "header")
    },
    size=st.integers(min_value=0, max_value=2**40),
    dataset_offset=st.integers(min_value=0, max_value=2**20),
    received_at=st.floats(allow_nan=False, allow_infinity=False),
    header=st.binary(max_size=256),
)

EXAMPLES: list[Message] = [
    CountInstances(),
    InstanceCount(count=3),
    FindInstance(sop_instance_uid="1.2.3"),
    InstanceFound(sop_instance_uid="1.2.3", path="studies/a/b/c.dcm", size=10),
    GetAddresses(),
    ListenerAddresses(addresses=(("127.0.0.1", 104),)),
    DeidentifyAndStore(
        dataset=b"\x08\x00\x18\x00\x06\x00\x00\x001.2.3\x00",
        affected_sop_class_uid="1.2.840.10008.5.1.4.1.1.2",
        affected_sop_instance_uid="1.2.3",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        calling_ae_title="MODALITY",
    ),
    InstanceStored(sop_instance_uid="1.2.3", path="p", duplicate=True),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Message) -> None:
    decoded = msgspec.msgpack.decode(msgspec.msgpack.encode(message), type=type(message))
    assert decoded == message


@given(records)
def test_instance_record_round_trip(record: InstanceRecord) -> None:
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(record), type=InstanceRecord) == record
