"""Query/Retrieve and Modality Worklist SCP: the DIMSE exchange on an association's thread.

pynetdicom's own Q/R service class opens its own association for every C-MOVE, which
would bypass the destination's sender actor (one association at a time per destination),
and needs decoded datasets for C-GET.  So the node serves C-FIND, C-MOVE and C-GET here:
:func:`install` routes those requests of an association to :class:`QueryRetrieveSCP`,
which only speaks DIMSE.  What to answer comes from a :class:`QueryServices` (the node's
resolver and sender actors behind the loop bridge): identifiers travel as encoded bytes,
matches stream back while the catalog is read, and every exception becomes a status at
one place (:func:`~xvactor.dicom.status.status_for`).

* C-FIND (PS3.4 C.4.1, K.4.1): one Pending response per match, then Success; a C-CANCEL
  ends it with Cancel (0xFE00) before the next match.
* C-MOVE (PS3.4 C.4.2): the sub-operations go through the destination's sender; one
  Pending response per completed sub-operation with the Number of Remaining, Completed,
  Failed and Warning Sub-operations; the final response lists the Failed SOP Instance UIDs.
* C-GET (PS3.4 C.4.3): the C-STORE sub-operations run on this association, in a
  presentation context the requester accepted with the SCP role (PS3.7 D.3.3.4); a file
  whose transfer syntax it did not accept is converted first, or counted as failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.dsutils import encode
from pynetdicom.pdu_primitives import P_DATA

from xvactor.dicom.commands import encode_c_find_rsp_pending, pdv_command_last, pdvs_dataset
from xvactor.dicom.contexts import (
    FIND_SOP_CLASSES,
    GET_SOP_CLASSES,
    MODALITY_WORKLIST_FIND,
    MOVE_SOP_CLASSES,
)
from xvactor.dicom.status import DicomServiceError, Status, StatusReply, status_for
from xvactor.sender.queue import SendItem

__all__ = [
    "Prepared",
    "QueryRetrieveSCP",
    "QueryServices",
    "ResultStream",
    "SubOperationResult",
    "extended_negotiation",
    "install",
]

LOGGER = logging.getLogger("xvactor.qr")

T_co = TypeVar("T_co", covariant=True)

_FIND = frozenset((*FIND_SOP_CLASSES, MODALITY_WORKLIST_FIND))
_PDV_OVERHEAD = 6  # a PDV item's length (4), context ID (1) and control header (1)
_MOVE = frozenset(MOVE_SOP_CLASSES)
_GET = frozenset(GET_SOP_CLASSES)


class ResultStream(Protocol[T_co]):
    """Results that arrive while they are produced; ``close`` stops the producer."""

    def __iter__(self) -> Iterator[T_co]:
        """The results in order; a failure of the producer is raised here."""
        ...

    def close(self) -> None:
        """Stop early (C-CANCEL): the producer stops before its next result."""
        ...


@dataclass(frozen=True)
class SubOperationResult:
    """How one C-STORE sub-operation ended."""

    sop_instance_uid: str
    status: int
    error_comment: str = ""


@dataclass(frozen=True)
class Prepared:
    """An instance ready to be sent in one of the requester's accepted syntaxes."""

    source: Path | Dataset
    """The file itself (its syntax was accepted), or a converted copy or dataset."""
    temporary: bool = False
    """``source`` is a scratch file of this sub-operation: deleted once sent."""


class QueryServices(Protocol):
    """What the SCP needs from the node; every method may block (it runs on a thread)."""

    def find(
        self,
        sop_class_uid: str,
        transfer_syntax_uid: str,
        identifier: bytes,
        *,
        combined_datetime: bool = False,
    ) -> ResultStream[bytes]:
        """Matches for a C-FIND, each an Identifier encoded in ``transfer_syntax_uid``.

        ``combined_datetime``: date and time keys are matched together (PS3.4
        C.2.2.2.5.1), as agreed in Extended Negotiation.
        """
        ...

    def retrieve(
        self, sop_class_uid: str, transfer_syntax_uid: str, identifier: bytes
    ) -> Sequence[SendItem]:
        """The instances a C-MOVE or C-GET Identifier selects."""
        ...

    def check_move_destination(self, move_destination: str) -> None:
        """Raise ``MoveDestinationUnknown`` for an AE title that is not a destination."""
        ...

    def move(
        self,
        move_destination: str,
        items: Sequence[SendItem],
        *,
        originator_ae_title: str,
        originator_message_id: int,
    ) -> ResultStream[SubOperationResult]:
        """Send ``items`` through the destination's sender, one result per item."""
        ...

    def prepare(self, item: SendItem, accepted: Sequence[str]) -> Prepared:
        """``item`` in one of the ``accepted`` transfer syntaxes (for C-GET)."""
        ...


def _datetime_matching_agreed(application_information: bytes) -> bool:
    """Byte 2 of the requester's C-FIND extended negotiation: date-time matching asked.

    We agree to it whenever it is asked (:func:`extended_negotiation`).
    """
    return len(application_information) >= 2 and application_information[1] == 1


def extended_negotiation(requested: dict[UID, bytes]) -> dict[UID, bytes]:
    """Our answer to SOP Class Extended Negotiation (PS3.4 C.5.1.2.1, C.5.2.2.1).

    For the Q/R FIND SOP Classes: relational queries (byte 1) not supported; combined
    date-time matching (byte 2) supported; fuzzy semantic matching of person names
    (byte 3) and timezone adjustment (byte 4) not supported.  Other SOP Classes get no
    answer (their defaults apply).
    """
    answer: dict[UID, bytes] = {}
    for sop_class, information in requested.items():
        if str(sop_class) not in FIND_SOP_CLASSES or not information:
            continue
        agreed = bytearray(len(information[:4]))
        if _datetime_matching_agreed(information):
            agreed[1] = 1
        answer[sop_class] = bytes(agreed)
    return answer


def install(assoc: Association, services: QueryServices) -> None:
    """Serve ``assoc``'s C-FIND, C-MOVE and C-GET requests with ``services``."""
    scp = QueryRetrieveSCP(assoc, services)
    stock = assoc._serve_request

    def serve_request(msg: Any, context_id: int) -> None:
        if not scp.serve(msg, context_id):
            stock(msg, context_id)

    assoc._serve_request = serve_request  # type: ignore[method-assign]


@dataclass
class _Counts:
    remaining: int
    completed: int = 0
    failed: int = 0
    warning: int = 0
    failed_uids: list[str] = field(default_factory=list)

    def add(self, result: SubOperationResult) -> None:
        self.remaining -= 1
        category = _category(result.status)
        if category == "success":
            self.completed += 1
        elif category == "warning":
            self.warning += 1
        else:
            self.failed += 1
            self.failed_uids.append(result.sop_instance_uid)

    def fail_rest(self, uids: Iterable[str]) -> None:
        for uid in uids:
            self.failed += 1
            self.failed_uids.append(uid)
        self.remaining = 0


def _response(primitive: Callable[[], Any], req: Any) -> Any:
    """A response primitive to ``req`` (PS3.7 9.3: Message ID Being Responded To, SOP Class)."""
    rsp = primitive()
    rsp.MessageIDBeingRespondedTo = req.MessageID
    rsp.AffectedSOPClassUID = req.AffectedSOPClassUID
    return rsp


def _check_count(items: Sequence[SendItem]) -> None:
    """The sub-operation counts are US (PS3.7 Table 9.3-4): at most 65535 of them."""
    if len(items) > 0xFFFF:
        raise DicomServiceError(
            f"{len(items)} instances match: at most 65535 per request, narrow it",
            status=Status.UNABLE_TO_CALCULATE_MATCHES,
        )


def _category(status: int) -> str:
    """PS3.4 B.2.3 C-STORE status categories."""
    if status == 0x0000:
        return "success"
    if status in (0x0001, 0x0107, 0x0116) or status >> 12 == 0xB:
        return "warning"
    return "failure"


class QueryRetrieveSCP:
    """The C-FIND, C-MOVE and C-GET exchanges of one association."""

    def __init__(self, assoc: Association, services: QueryServices) -> None:
        self._assoc = assoc
        self._services = services

    def serve(self, msg: Any, context_id: int) -> bool:
        """Serve ``msg`` if it is a Q/R or worklist request (``False``: not ours)."""
        sop_class = str(getattr(msg, "AffectedSOPClassUID", "") or "")
        if isinstance(msg, C_FIND) and sop_class in _FIND:
            self._guarded(self._find, msg, context_id)
        elif isinstance(msg, C_MOVE) and sop_class in _MOVE:
            self._guarded(self._move, msg, context_id)
        elif isinstance(msg, C_GET) and sop_class in _GET:
            self._guarded(self._get, msg, context_id)
        else:
            return False
        return True

    def _guarded(self, serve: Callable[[Any, int], None], msg: Any, context_id: int) -> None:
        # As pynetdicom's own dispatch does: the reactor counts as paused while a request
        # is served, so that send_c_store() (C-GET) may run on this thread.
        self._assoc._is_paused = True
        try:
            serve(msg, context_id)
        except Exception:  # the DIMSE exchange itself failed (peer gone): nothing to answer
            LOGGER.warning("Q/R request from %s failed", self._calling, exc_info=True)
        finally:
            self._assoc._is_paused = False
            self._assoc.dimse.cancel_req = {}  # C-CANCELs for requests already answered

    @property
    def _calling(self) -> str:
        return str(self._assoc.requestor.ae_title).strip()

    def _transfer_syntax(self, context_id: int) -> UID:
        return self._assoc._accepted_cx[context_id].transfer_syntax[0]

    def _identifier(self, msg: Any) -> bytes:
        identifier = msg.Identifier
        return identifier.getvalue() if isinstance(identifier, BytesIO) else b""

    def _selected(self, req: C_MOVE | C_GET, context_id: int) -> Sequence[SendItem]:
        """The instances a C-MOVE or C-GET Identifier selects (its sub-operations)."""
        items = self._services.retrieve(
            str(req.AffectedSOPClassUID),
            str(self._transfer_syntax(context_id)),
            self._identifier(req),
        )
        _check_count(items)
        return items

    def _cancelled(self, message_id: int) -> bool:
        return self._assoc.dimse.cancel_req.pop(message_id, None) is not None

    def _send(self, rsp: Any, context_id: int) -> None:
        self._assoc.dimse.send_msg(rsp, context_id)

    def _send_pending(self, context_id: int, command: bytes, identifier: bytes) -> None:
        """A Pending C-FIND-RSP and its Identifier, encoded once and queued on the DUL.

        pynetdicom's ``send_msg`` builds the command set through pydicom twice per
        response; the C-FIND hot path sends pre-encoded bytes instead (PS3.8 Annex E),
        fragmented to the peer's maximum PDU length.
        """
        peer_max = int(self._assoc.requestor.maximum_length or 0)
        fragment = peer_max - _PDV_OVERHEAD if peer_max else 0
        pdvs = [command, *pdvs_dataset(identifier, fragment)]
        if peer_max == 0 or sum(len(pdv) + 4 for pdv in pdvs) <= peer_max:
            self._send_pdvs(context_id, pdvs)  # one P-DATA-TF PDU
        else:
            for pdv in pdvs:
                self._send_pdvs(context_id, [pdv])

    def _send_pdvs(self, context_id: int, pdvs: list[bytes]) -> None:
        primitive = P_DATA()
        # pynetdicom checks for [id, pdv] lists at run time (its annotation says tuples).
        primitive.presentation_data_value_list = [[context_id, pdv] for pdv in pdvs]  # type: ignore[misc]
        self._assoc.dul.send_pdu(primitive)

    def _status_identifier(self, context_id: int, **elements: object) -> BytesIO:
        ds = Dataset()
        for keyword, value in elements.items():
            setattr(ds, keyword, value)
        syntax = self._transfer_syntax(context_id)
        encoded = encode(ds, syntax.is_implicit_VR, syntax.is_little_endian)
        return BytesIO(cast(bytes, encoded))

    # --- C-FIND ---------------------------------------------------------------------------

    def _find(self, req: C_FIND, context_id: int) -> None:
        message_id = cast(int, req.MessageID)
        rsp = _response(C_FIND, req)
        reply: StatusReply = status_for(None)
        stream: ResultStream[bytes] | None = None
        matches = 0
        try:
            stream = self._services.find(
                str(req.AffectedSOPClassUID),
                str(self._transfer_syntax(context_id)),
                self._identifier(req),
                combined_datetime=_datetime_matching_agreed(
                    self._assoc.requestor.sop_class_extended.get(
                        UID(str(req.AffectedSOPClassUID)), b""
                    )
                ),
            )
            command = pdv_command_last(
                encode_c_find_rsp_pending(
                    message_id=message_id, sop_class_uid=str(req.AffectedSOPClassUID)
                )
            )
            for identifier in stream:
                if self._cancelled(message_id):
                    reply = StatusReply(Status.CANCEL)
                    break
                self._send_pending(context_id, command, identifier)
                matches += 1
        except Exception as exc:
            LOGGER.debug("C-FIND failed", exc_info=True)
            reply = status_for(exc)
        finally:
            if stream is not None:
                stream.close()
        LOGGER.info(
            "C-FIND from %s: %d match(es), 0x%04X %s",
            self._calling,
            matches,
            reply.status,
            reply.error_comment or "",
        )
        rsp.Status = reply.status
        rsp.Identifier = None
        rsp.ErrorComment = reply.error_comment if reply.status != Status.CANCEL else None
        self._send(rsp, context_id)

    # --- C-MOVE ---------------------------------------------------------------------------

    def _move(self, req: C_MOVE, context_id: int) -> None:
        message_id = cast(int, req.MessageID)
        rsp = _response(C_MOVE, req)
        counts: _Counts | None = None
        reply = status_for(None)
        stream: ResultStream[SubOperationResult] | None = None
        try:
            self._services.check_move_destination(str(req.MoveDestination).strip())
            items = self._selected(req, context_id)
            counts = _Counts(remaining=len(items))
            stream = self._services.move(
                str(req.MoveDestination).strip(),
                items,
                originator_ae_title=self._calling,
                originator_message_id=message_id,
            )
            for result in stream:
                counts.add(result)
                if self._cancelled(message_id):
                    reply = StatusReply(Status.CANCEL)
                    break
                if counts.remaining:
                    self._pending(rsp, counts, context_id)
            if reply.status != Status.CANCEL and counts.remaining:
                done = len(items) - counts.remaining
                counts.fail_rest(item.sop_instance_uid for item in items[done:])
        except Exception as exc:
            LOGGER.debug("C-MOVE failed", exc_info=True)
            reply = status_for(exc)
        finally:
            if stream is not None:
                stream.close()
        self._final(rsp, counts, reply, context_id, "C-MOVE")

    def _pending(self, rsp: Any, counts: _Counts, context_id: int) -> None:
        rsp.Status = Status.PENDING
        rsp.Identifier = None
        rsp.NumberOfRemainingSuboperations = counts.remaining
        rsp.NumberOfCompletedSuboperations = counts.completed
        rsp.NumberOfFailedSuboperations = counts.failed
        rsp.NumberOfWarningSuboperations = counts.warning
        self._send(rsp, context_id)

    def _final(
        self,
        rsp: Any,
        counts: _Counts | None,
        reply: StatusReply,
        context_id: int,
        service: str,
    ) -> None:
        """The last response (PS3.4 C.4.2.1.5 / C.4.3.1.4)."""
        rsp.Identifier = None
        rsp.NumberOfRemainingSuboperations = None
        if counts is not None:
            rsp.NumberOfCompletedSuboperations = counts.completed
            rsp.NumberOfFailedSuboperations = counts.failed
            rsp.NumberOfWarningSuboperations = counts.warning
            if reply.status == Status.SUCCESS and counts.failed:
                total = counts.completed + counts.failed + counts.warning
                reply = StatusReply(
                    Status.UNABLE_TO_PERFORM_SUBOPERATIONS
                    if counts.failed == total
                    else Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES,
                    f"{counts.failed} of {total} sub-operations failed",
                )
            elif reply.status == Status.SUCCESS and counts.warning:
                reply = StatusReply(Status.SUBOPERATIONS_COMPLETE_WITH_FAILURES)
            if reply.status == Status.CANCEL:
                rsp.NumberOfRemainingSuboperations = counts.remaining
            if counts.failed_uids and reply.status != Status.SUCCESS:
                rsp.Identifier = self._status_identifier(
                    context_id, FailedSOPInstanceUIDList=counts.failed_uids
                )
        rsp.Status = reply.status
        rsp.ErrorComment = reply.error_comment if reply.status >> 12 in (0xA, 0xC) else None
        done = (
            f"{counts.completed} completed, {counts.failed} failed, {counts.warning} warning, "
            if counts is not None
            else ""
        )
        LOGGER.info(
            "%s from %s: %s0x%04X %s",
            service,
            self._calling,
            done,
            reply.status,
            reply.error_comment or "",
        )
        self._send(rsp, context_id)

    # --- C-GET ----------------------------------------------------------------------------

    def _get(self, req: C_GET, context_id: int) -> None:
        message_id = cast(int, req.MessageID)
        rsp = _response(C_GET, req)
        counts: _Counts | None = None
        reply = status_for(None)
        try:
            items = self._selected(req, context_id)
            counts = _Counts(remaining=len(items))
            for index, item in enumerate(items):
                if self._cancelled(message_id):
                    reply = StatusReply(Status.CANCEL)
                    break
                sub_message_id = (message_id + index) % 65535 + 1
                counts.add(self._store(item, sub_message_id))
                if not self._assoc.is_established:
                    return
                if counts.remaining:
                    self._pending(rsp, counts, context_id)
        except Exception as exc:
            LOGGER.debug("C-GET failed", exc_info=True)
            reply = status_for(exc)
        if self._assoc.is_established:
            self._final(rsp, counts, reply, context_id, "C-GET")

    def _accepted(self, sop_class_uid: str) -> list[str]:
        """Syntaxes the requester accepted for ``sop_class_uid`` with us as C-STORE SCU."""
        return [
            str(cx.transfer_syntax[0])
            for cx in self._assoc.accepted_contexts
            if cx.abstract_syntax == sop_class_uid and cx.as_scu
        ]

    def _store(self, item: SendItem, message_id: int) -> SubOperationResult:
        """One C-STORE sub-operation on this association (PS3.4 C.4.3.3.1)."""
        accepted = self._accepted(item.sop_class_uid)
        if not accepted:
            return SubOperationResult(
                item.sop_instance_uid,
                Status.UNABLE_TO_PERFORM_SUBOPERATIONS,
                "No presentation context with the SCP role for the SOP Class",
            )
        prepared: Prepared | None = None
        try:
            prepared = self._services.prepare(item, accepted)
            status = self._assoc.send_c_store(prepared.source, msg_id=message_id)
        except Exception as exc:
            if not self._assoc.is_established:
                raise
            reply = status_for(exc)
            LOGGER.warning(
                "C-GET sub-operation %s failed: %s", item.sop_instance_uid, reply.error_comment
            )
            return SubOperationResult(
                item.sop_instance_uid, reply.status, reply.error_comment or ""
            )
        finally:
            if prepared is not None and prepared.temporary and isinstance(prepared.source, Path):
                prepared.source.unlink(missing_ok=True)
        code = int(getattr(status, "Status", Status.UNABLE_TO_PERFORM_SUBOPERATIONS))
        comment = str(getattr(status, "ErrorComment", "") or "")
        return SubOperationResult(item.sop_instance_uid, code, comment)
