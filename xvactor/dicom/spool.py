"""Receive C-STORE datasets straight into the node's spool, as a Part 10 file, once.

pynetdicom's chunked receive (``STORE_RECV_CHUNKED_DATASET``) writes each dataset to a
temporary file in the system temp directory behind a File Meta it encodes with pydicom,
flushing after every PDV; the node then had to copy it behind its own File Meta.  Here the
P-DATA fragments of a C-STORE-RQ go directly, in the order received, into
``<data>/.spool/<uuid>.dcm`` behind our File Meta (PS3.10 Section 7.1): the dataset bytes
are written once, never held in memory whole, and the file is already what the node keeps.

``install(assoc, spool)`` replaces ``assoc.dimse.receive_primitive`` with a version that
mirrors pynetdicom 3.0's ``DIMSEMessage.decode_msg`` (PS3.7 Section 9.3, PS3.8 Annex E),
differing in what happens to a C-STORE-RQ:

* its command set is read by ``commands.decode_c_store_rq`` instead of through a pydicom
  dataset (every other command, and a C-STORE-RQ that function does not take, is decoded
  by pynetdicom as before and served by pynetdicom's association thread);
* its data fragments go straight into the spool file;
* once complete, it does not go through pynetdicom's association thread and Storage SCP
  at all: the DUL thread hands a ``SpooledStore`` to ``SpoolSettings.on_store``, which
  stores it and sends the C-STORE-RSP itself.  The peer is waiting for that response (no
  asynchronous operations are negotiated, PS3.7 Annex D.3.3.3), so nothing else is pending
  on the association meanwhile.  The caller unlinks the spool name afterwards, so
  ``on_store`` must have linked the file into place (or it is discarded).  A small
  dataset (``SpoolSettings.keep_up_to``) never becomes a spool file: it arrives in
  ``SpooledStore.head``.

A write error (disk full) does not abort the association: the rest of the dataset is read
and dropped, and the request reaches ``on_store`` carrying the error, which answers with a
status (PS3.4 B.2.3: 0xA7xx Out of Resources).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, cast

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dimse_messages import _MESSAGE_TYPES, C_STORE_RQ, DIMSEMessage
from pynetdicom.dimse_primitives import C_CANCEL, N_EVENT_REPORT
from pynetdicom.dsutils import decode
from pynetdicom.pdu_primitives import P_DATA

from xvactor.dicom.commands import StoreRequest, decode_c_store_rq
from xvactor.dicom.part10 import FileMeta, encode_file_meta
from xvactor.dicom.spoolfile import SpoolFile

__all__ = ["SPOOL_ERROR", "SpoolSettings", "SpooledStore", "install"]

LOGGER = logging.getLogger("xvactor.spool")

SPOOL_ERROR = "_xv_spool_error"
"""Attribute of a C-STORE request primitive holding the OSError that stopped its spooling."""

_STORE_REQUEST = "_xv_store_request"
"""Attribute of a C-STORE-RQ message read by ``decode_c_store_rq`` (answered by
``on_store``); such a message has no pydicom command dataset."""


@dataclass(frozen=True)
class SpooledStore:
    """A complete C-STORE-RQ whose dataset is spooled (or failed to spool)."""

    context_id: int
    message_id: int
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    path: Path | None
    error: BaseException | None
    data: bytes | None = None
    """The dataset, when it was spooled in memory instead of to ``path``."""
    head: bytes | None = None
    """The first bytes of the file at ``path`` (``None``: read them from it)."""
    size: int = 0
    """The size of the file at ``path`` (with ``head``)."""
    on_disk: bool = True
    """Whether the file at ``path`` exists (false: kept whole in ``head``)."""


@dataclass(frozen=True)
class SpoolSettings:
    """Where datasets are spooled, what our File Meta says, who answers C-STOREs."""

    directory: Path
    implementation_class_uid: str
    implementation_version_name: str
    on_store: Callable[[Association, SpooledStore], None]
    """Stores a completed C-STORE-RQ and sends its C-STORE-RSP (on the DUL thread)."""
    in_memory: Callable[[Association], bool] = lambda _assoc: False
    """Whether this association's datasets must not touch the disk as received (they are
    to be de-identified first): they are then kept in memory, in ``SpooledStore.data``."""
    direct_io: bool = True
    """Write large datasets around the page cache (``xvactor.dicom.spoolfile``)."""
    keep_up_to: int = 0
    """Files no larger than this are kept in memory, never written to the spool (the
    catalog holds them, ``xvactor.storage.pending``)."""


class _MemorySpool(BytesIO):
    """An in-memory spool (the dataset only, no File Meta)."""

    name = "<memory>"


def _create(path: Path, direct_io: bool = True, keep_up_to: int = 0) -> BinaryIO:
    """Create a spool file (a seam: tests put a full disk here)."""
    return cast(BinaryIO, SpoolFile(path, direct_io=direct_io, keep_up_to=keep_up_to))


def _open_spool(
    message: DIMSEMessage, assoc: Association, settings: SpoolSettings, request: StoreRequest
) -> None:
    """Create the spool file for a C-STORE-RQ whose command set just completed."""
    context = assoc._accepted_cx[cast(int, message.context_id)]
    meta = FileMeta(
        sop_class_uid=request.affected_sop_class_uid,
        sop_instance_uid=request.affected_sop_instance_uid,
        transfer_syntax_uid=str(context.transfer_syntax[0]),
        implementation_class_uid=settings.implementation_class_uid,
        implementation_version_name=settings.implementation_version_name,
        source_ae_title=str(assoc.requestor.ae_title),
    )
    if settings.in_memory(assoc):
        message._data_set_file = cast(Any, _MemorySpool())
        return
    path = settings.directory / f"{uuid.uuid4().hex}.dcm"
    try:
        spool = _create(path, settings.direct_io, settings.keep_up_to)
    except OSError as exc:
        _fail(message, exc)
        return
    message._data_set_file = cast(Any, spool)  # pynetdicom only calls .name and .close()
    message._data_set_path = path
    try:
        spool.write(encode_file_meta(meta))
    except (OSError, UnicodeEncodeError) as exc:
        _fail(message, exc)  # removes the file just made


def _fail(message: DIMSEMessage, exc: BaseException) -> None:
    """Stop spooling this dataset: remove the file, remember why, read on."""
    LOGGER.warning("cannot spool C-STORE dataset: %s", exc)
    spool = cast("BinaryIO | None", message._data_set_file)
    if spool is not None:
        if isinstance(spool, SpoolFile):
            spool.discard()  # nothing more of it is written
        else:
            spool.close()
        if not isinstance(spool, _MemorySpool):
            Path(spool.name).unlink(missing_ok=True)
    message._data_set_file = None
    message._data_set_path = None
    setattr(message, SPOOL_ERROR, exc)


def _decode(
    message: DIMSEMessage, primitive: P_DATA, assoc: Association, settings: SpoolSettings
) -> bool:
    """``DIMSEMessage.decode_msg``, spooling C-STORE-RQ data; ``True`` when complete."""
    for context_id, data in primitive.presentation_data_value_list:
        control_header = data[0]
        if control_header & 1:  # command fragment
            message.encoded_command_set.write(data[1:])
            if control_header & 2:  # last command fragment
                message.context_id = context_id
                request = decode_c_store_rq(message.encoded_command_set.getvalue())
                if request is not None:  # our C-STORE path: no pydicom command dataset
                    message.__class__ = C_STORE_RQ
                    setattr(message, _STORE_REQUEST, request)
                    if not request.data_set_present:
                        return True
                    _open_spool(message, assoc, settings, request)
                    continue
                message.command_set = decode(message.encoded_command_set, True, True)
                message.__class__ = _MESSAGE_TYPES[cast(int, message.command_set.CommandField)][1]
                if message.command_set.CommandDataSetType == 0x0101:
                    return True
            continue
        # data fragment
        spool = cast("BinaryIO | None", message._data_set_file)
        if spool is not None:
            try:
                spool.write(data[1:])
                if control_header & 2:
                    spool.flush()  # the handler reads the file by its path
            except OSError as exc:
                _fail(message, exc)
        elif not hasattr(message, SPOOL_ERROR):
            cast(BytesIO, message.data_set).write(data[1:])
        if control_header & 2:
            return True
    return False


def _spooled(message: DIMSEMessage, assoc: Association, request: StoreRequest) -> SpooledStore:
    context_id = cast(int, message.context_id)
    spool = cast("BinaryIO | None", message._data_set_file)
    data = spool.getvalue() if isinstance(spool, _MemorySpool) else None
    head: bytes | None = None
    size = 0
    on_disk = spool is not None and not isinstance(spool, _MemorySpool)
    if spool is not None:
        spool.close()
        if isinstance(spool, SpoolFile):
            head, size, on_disk = spool.head, spool.size, spool.on_disk
    return SpooledStore(
        context_id=context_id,
        message_id=request.message_id,
        sop_class_uid=request.affected_sop_class_uid,
        sop_instance_uid=request.affected_sop_instance_uid,
        transfer_syntax_uid=str(assoc._accepted_cx[context_id].transfer_syntax[0]),
        path=cast("Path | None", message._data_set_path),
        error=getattr(message, SPOOL_ERROR, None),
        data=data,
        head=head,
        size=size,
        on_disk=on_disk,
    )


def _receive_primitive(assoc: Association, settings: SpoolSettings, primitive: P_DATA) -> None:
    """``DIMSEServiceProvider.receive_primitive`` over ``_decode``."""
    dimse = assoc.dimse
    if dimse.message is None:
        dimse.message = DIMSEMessage()
    message = dimse.message
    if not _decode(message, primitive, assoc, settings):
        return
    store: StoreRequest | None = getattr(message, _STORE_REQUEST, None)
    if store is not None:
        # Not through EVT_DIMSE_RECV: its handlers read the pydicom command dataset, which
        # this path never builds.
        dimse.message = None
        settings.on_store(assoc, _spooled(message, assoc, store))
        return
    evt.trigger(assoc, evt.EVT_DIMSE_RECV, {"message": message})
    context_id = cast(int, message.context_id)
    try:
        request: Any = message.message_to_primitive()
    except Exception:
        LOGGER.exception("received an invalid DIMSE message")
        dimse.dul.event_queue.put("Evt19")
        return
    error = getattr(message, SPOOL_ERROR, None)
    if error is not None:
        setattr(request, SPOOL_ERROR, error)
    if isinstance(request, C_CANCEL) and len(dimse.cancel_req) < 10:
        dimse.cancel_req[cast(int, request.MessageIDBeingRespondedTo)] = request
    elif isinstance(request, N_EVENT_REPORT) and request.is_valid_request:
        # pynetdicom serves these on their own thread so the DUL is never blocked.
        threading.Thread(target=assoc._serve_request, args=(request, context_id)).start()
    else:
        dimse.msg_queue.put((context_id, request))
    dimse.message = None


def install(assoc: Association, settings: SpoolSettings) -> None:
    """Spool ``assoc``'s C-STORE datasets into ``settings.directory``."""
    assoc.dimse.receive_primitive = lambda primitive: _receive_primitive(  # type: ignore[method-assign]
        assoc, settings, primitive
    )
