"""Choosing how a stored instance goes to a peer that accepted some transfer syntaxes.

PS3.4 C.4.3.3.1 (C-GET) and C.4.2.3.1 (C-MOVE): a sub-operation is sent in a syntax the
peer accepted for the SOP class, or not at all.  The stored file goes as it is when its
syntax was accepted; otherwise it is converted (between the uncompressed syntaxes always;
from a compressed one by decompressing; into a compressed one through the transcoding
engine), and when nothing works the sub-operation fails with an ErrorComment, counted as
failed — never sent in a syntax the peer did not accept.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from xvactor.dicom.qr_scp import Prepared, RetrieveItem
from xvactor.dicom.status import DicomServiceError, Status

__all__ = ["UNCOMPRESSED", "prepare_for_peer"]

UNCOMPRESSED = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
)


class NoAcceptableSyntax(DicomServiceError):
    """Not one accepted transfer syntax can carry this instance (counted as failed)."""

    status = Status.UNABLE_TO_PERFORM_SUBOPERATIONS


def prepare_for_peer(item: RetrieveItem, accepted: Sequence[str]) -> Prepared:
    """``item`` ready to send in one of ``accepted`` (the peer's syntaxes for its class).

    Raises
    ------
    DicomServiceError
        No accepted syntax can carry it (with a one-line ErrorComment).
    OSError
        The stored file cannot be read.
    """
    if item.transfer_syntax_uid in accepted:
        return Prepared(Path(item.path))
    targets = [uid for uid in UNCOMPRESSED if uid in accepted]
    if item.transfer_syntax_uid in UNCOMPRESSED and targets:
        # pynetdicom re-encodes an uncompressed dataset into any accepted uncompressed
        # context; the file meta keeps the stored syntax so it knows how to read it.
        return Prepared(dcmread(item.path))
    return Prepared(_transcode(item, accepted))


def _transcode(item: RetrieveItem, accepted: Sequence[str]) -> Dataset:
    targets = [uid for uid in (ExplicitVRLittleEndian, ImplicitVRLittleEndian) if uid in accepted]
    if not targets:
        raise NoAcceptableSyntax(
            f"Peer accepts none of the syntaxes {UID(item.transfer_syntax_uid).name} "
            "can be converted to"
        )
    ds = dcmread(item.path)
    try:
        ds.decompress(generate_instance_uid=False)
    except Exception as exc:
        raise NoAcceptableSyntax(f"Cannot decompress: {exc}"[:64]) from exc
    ds.file_meta.TransferSyntaxUID = UID(targets[0])
    return ds
