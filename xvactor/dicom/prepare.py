"""What to put on the wire for one stored instance, given what the peer accepted.

Two cases, cheapest first (PS3.5 Section 10 for the transfer syntaxes):

1. the peer accepted the file's own transfer syntax: the dataset bytes after the File Meta
   Information are sent as they are, never decoded;
2. otherwise :func:`prepare_for` asks the transcoder (``xvactor.transcode``) for the best
   accepted syntax: uncompressed when possible, lossless before lossy, never lossy from a
   lossless source; when nothing fits it says why and the item fails at once.

Nothing here ever produces a syntax the peer did not accept.  Blocking; runs on a worker
thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pynetdicom.dsutils import encode

from xvactor.dicom.part10 import dataset_offset
from xvactor.transcode.options import OutputEncoding

__all__ = [
    "UNCOMPRESSED",
    "Payload",
    "TranscodingNeeded",
    "UnreadableFile",
    "payload_for",
    "prepare_for",
    "read_file_meta",
]

UNCOMPRESSED: tuple[str, ...] = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian
)

_ENCODING = {  # transfer syntax -> (implicit VR, little endian)
    "1.2.840.10008.1.2": (True, True),
    "1.2.840.10008.1.2.1": (False, True),
    "1.2.840.10008.1.2.2": (False, False),
}


class UnreadableFile(Exception):
    """The file is missing, unreadable, or not a Part 10 file of the announced instance."""


class TranscodingNeeded(Exception):
    """The peer accepted none of the syntaxes this instance can be sent in without transcoding."""


@dataclass(frozen=True)
class Payload:
    """The encoded dataset to send and the transfer syntax it is in."""

    data: bytes
    transfer_syntax_uid: str


def read_file_meta(path: str | Path) -> tuple[str, str, str]:
    """Return the (SOP Class UID, SOP Instance UID, Transfer Syntax UID) of a Part 10 file.

    Raises
    ------
    UnreadableFile
        Not a readable Part 10 file with those three File Meta elements.
    """
    try:
        meta = read_file_meta_info(path)
        return (
            str(meta.MediaStorageSOPClassUID),
            str(meta.MediaStorageSOPInstanceUID),
            str(meta.TransferSyntaxUID),
        )
    except (OSError, AttributeError, ValueError, KeyError) as exc:
        raise UnreadableFile(f"not a readable DICOM Part 10 file: {exc}") from exc
    except Exception as exc:  # pydicom raises several kinds on garbage
        raise UnreadableFile(f"not a readable DICOM Part 10 file: {exc}") from exc


def _dataset_bytes(path: Path) -> bytes:
    try:
        with path.open("rb") as fp:
            fp.seek(dataset_offset(fp))
            data = fp.read()
    except (OSError, ValueError) as exc:
        raise UnreadableFile(f"cannot read {path.name}: {exc}") from exc
    if not data:
        raise UnreadableFile(f"{path.name}: no dataset after the File Meta Information")
    return data


def prepare_for(
    path: str | Path, accepted: Sequence[str], output: OutputEncoding | None = None
) -> tuple[bytes | Dataset, str]:
    """The dataset of ``path`` in a syntax the peer accepted, through ``xvactor.transcode``.

    Parameters
    ----------
    path : str or Path
        The Part 10 file.
    accepted : sequence of str
        The transfer syntaxes the peer accepted for the file's SOP class, in preference
        order.

    Returns
    -------
    tuple
        The encoded dataset (no file meta) and the accepted transfer syntax it is in.

    Raises
    ------
    TranscodingNeeded
        No accepted syntax can carry the instance (lossy to lossless, a bit depth the
        codec cannot hold, ...); the message says why, in one line.
    UnreadableFile
        The file cannot be read.
    """
    from xvactor.transcode import TranscodeError, encode_for  # noqa: PLC0415 - codecs load lazily

    try:
        data, syntax = encode_for(path, accepted, output)
    except TranscodeError as exc:
        raise TranscodingNeeded(str(exc).splitlines()[0]) from exc
    except OSError as exc:
        raise UnreadableFile(f"cannot read {Path(path).name}: {exc.strerror or exc}") from exc
    return data, str(syntax)


def payload_for(
    path: str | Path,
    transfer_syntax_uid: str,
    accepted: Sequence[str],
    output: OutputEncoding | None = None,
) -> Payload:
    """Choose and build what to send for one file (the three cases of the module docstring).

    Parameters
    ----------
    path : str or Path
        The Part 10 file.
    transfer_syntax_uid : str
        The file's transfer syntax.
    accepted : sequence of str
        What the peer accepted for the SOP class, preferred first; never empty.

    Raises
    ------
    UnreadableFile
        The file cannot be read or converted.
    TranscodingNeeded
        No accepted syntax is reachable without the transcoder.
    """
    file = Path(path)
    as_stored = output is None or output == OutputEncoding()
    if as_stored and transfer_syntax_uid in accepted:
        return Payload(_dataset_bytes(file), transfer_syntax_uid)
    # Every conversion, uncompressed ones included, goes through the transcoder: pydicom
    # alone writes Explicit VR Big Endian without swapping 16-bit pixel data.
    data, syntax = prepare_for(file, accepted, output)
    if syntax not in accepted:
        raise TranscodingNeeded(f"transcoder produced {syntax}, which the peer did not accept")
    if isinstance(data, Dataset):
        implicit, little = _ENCODING.get(syntax, (False, True))
        encoded = encode(data, implicit, little)
        if encoded is None:
            raise UnreadableFile(f"cannot encode {file.name} in {syntax}")
        data = encoded
    return Payload(bytes(data), syntax)
