"""Choosing how a stored instance goes to a peer that accepted some transfer syntaxes.

PS3.4 C.4.3.3.1 (C-GET) and C.4.2.3.1 (C-MOVE): a sub-operation is sent in a syntax the
peer accepted for the SOP class, or not at all.  The stored file goes as it is when its
syntax was accepted; otherwise the transcoding engine picks the best accepted syntax
(uncompressed first, lossless before lossy, never lossy from a lossless source) and the
converted instance is written to a scratch file that is sent and then deleted.  When
nothing fits, the sub-operation fails with an ErrorComment and is counted as failed —
never sent in a syntax the peer did not accept.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from xvactor.dicom.qr_scp import Prepared
from xvactor.dicom.status import DicomServiceError, Status
from xvactor.sender.queue import SendItem

__all__ = ["NoAcceptableSyntax", "prepare_for_peer"]


class NoAcceptableSyntax(DicomServiceError):
    """Not one accepted transfer syntax can carry this instance (counted as failed)."""

    status = Status.UNABLE_TO_PERFORM_SUBOPERATIONS


def prepare_for_peer(item: SendItem, accepted: Sequence[str], *, scratch: Path) -> Prepared:
    """``item`` ready to send in one of ``accepted`` (the peer's syntaxes for its class).

    Parameters
    ----------
    item : SendItem
        The stored instance.
    accepted : sequence of str
        What the peer accepted for its SOP Class.
    scratch : Path
        Where a converted copy is written (on the data directory's file system).

    Raises
    ------
    NoAcceptableSyntax
        No accepted syntax can carry it (with a one-line ErrorComment).
    OSError
        The stored file cannot be read or the copy cannot be written.
    """
    if item.transfer_syntax_uid in accepted:
        return Prepared(Path(item.path))
    from xvactor.transcode import TranscodeError, encode_for  # noqa: PLC0415 - codecs load lazily

    try:
        data, _syntax = encode_for(item.path, accepted, file_meta=True)
    except TranscodeError as exc:
        raise NoAcceptableSyntax(str(exc).splitlines()[0]) from exc
    scratch.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=scratch, prefix="get-", suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Prepared(Path(name), temporary=True)
