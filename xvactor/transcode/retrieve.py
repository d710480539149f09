"""Choose the transfer syntax to send a stored instance in, and encode it for the peer.

Used by C-GET/C-MOVE sub-operations and forwarding: the peer accepted some transfer
syntaxes for the instance's SOP class (PS3.4 Annex C.4.2.3, PS3.7 Annex D.3.3.5); this
module picks the best of them for the stored instance and encodes it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Final

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    RLELossless,
)

from xvactor.transcode.encoding import transfer_syntax_of
from xvactor.transcode.engine import DEFER_SIZE, convert
from xvactor.transcode.errors import TranscodeError
from xvactor.transcode.options import OutputEncoding
from xvactor.transcode.plan import make_plan
from xvactor.transcode.syntaxes import LOSSY, name_of, resolve

__all__ = ["PREFERENCE", "choose_transfer_syntax", "encode_for"]

#: Fallback order after the stored syntax: uncompressed, then lossless, then lossy.
PREFERENCE: Final = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEG2000Lossless,
    JPEGLossless,
    RLELossless,
    JPEG2000,
    JPEGBaseline8Bit,
)


def choose_transfer_syntax(
    ds: Dataset, accepted_transfer_syntaxes: Sequence[str], preferred: str = ""
) -> UID:
    """Return the accepted transfer syntax to send `ds` in (the pure "decide" step).

    In order: `preferred` (a destination's configured syntax) if accepted and possible;
    the stored syntax if accepted; then :data:`PREFERENCE`, where each candidate must
    carry the image faithfully: lossy syntaxes only when the pixels are lossy already,
    lossless compression never for lossy pixels, bit depths each codec can hold.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The stored instance (attributes only are read), with File Meta.
    accepted_transfer_syntaxes : sequence of str
        The syntaxes the peer accepted for its SOP class.
    preferred : str, optional
        A UID or name tried first.

    Raises
    ------
    TranscodeError
        If none of the accepted syntaxes can carry the instance; the message says why
        for each.
    """
    stored = transfer_syntax_of(ds)
    accepted = [UID(uid) for uid in accepted_transfer_syntaxes]
    lossy_source = stored in LOSSY or ds.get("LossyImageCompression") == "01"
    candidates = [resolve(preferred)] if preferred else []
    candidates += [stored, *PREFERENCE]
    reasons: dict[UID, str] = {}
    for uid in dict.fromkeys(candidates):
        if uid not in accepted:
            continue
        if uid in LOSSY and uid != stored and not lossy_source:
            reasons[uid] = "lossy compression of lossless pixel data is never chosen"
            continue
        try:
            make_plan(ds, stored, uid)
        except TranscodeError as exc:
            reasons[uid] = str(exc)
            continue
        return uid
    offered = ", ".join(name_of(uid) for uid in accepted) or "none"
    detail = "; ".join(f"{uid}: {reason}" for uid, reason in reasons.items())
    msg = f"no accepted transfer syntax can carry this {name_of(stored)} instance ({offered})"
    raise TranscodeError(f"{msg}: {detail}" if detail else msg)


def encode_for(
    source: str | os.PathLike[str] | bytes,
    accepted_transfer_syntaxes: Sequence[str],
    output: OutputEncoding | None = None,
    *,
    file_meta: bool = False,
) -> tuple[bytes, UID]:
    """Return a stored instance encoded in the best transfer syntax a peer accepted.

    Parameters
    ----------
    source : str, path-like or bytes
        A PS3.10 file: its path, or its bytes.
    accepted_transfer_syntaxes : sequence of str
        The Transfer Syntax UIDs the peer accepted for the instance's SOP class.
    output : OutputEncoding, optional
        The destination's output options: its `transfer_syntax` is preferred when
        accepted; group lengths, sequence lengths and empty elements as it says.
    file_meta : bool, optional
        With ``True`` the result is a PS3.10 file (preamble and File Meta); by default
        the dataset alone, as a C-STORE carries it.

    Returns
    -------
    tuple of (bytes, pydicom.uid.UID)
        The encoded instance and the transfer syntax chosen (see
        :func:`choose_transfer_syntax`); when that is the stored one and `output` asks
        for nothing else, the stored bytes are returned unchanged.

    Raises
    ------
    TranscodeError
        If the file cannot be read, no accepted syntax fits, or conversion fails.
    """
    output = output or OutputEncoding()
    ds = _read(source)
    preferred = output.transfer_syntax
    if not preferred and (output.big_endian or output.explicit_vr is not None):
        preferred = str(output.target_for(transfer_syntax_of(ds)))  # byte order / VR asked
    chosen = choose_transfer_syntax(ds, accepted_transfer_syntaxes, preferred)
    # Byte order and VR are carried by the chosen syntax; the rest needs re-encoding.
    plain = output == OutputEncoding(
        transfer_syntax=output.transfer_syntax,
        quality=output.quality,
        big_endian=output.big_endian,
        explicit_vr=output.explicit_vr,
    )
    if chosen == transfer_syntax_of(ds) and plain:
        raw = source if isinstance(source, bytes) else _read_bytes(source)
        start = _dataset_offset(raw)
        if start is not None:
            return (raw if file_meta else raw[start:]), chosen
    options = OutputEncoding(
        group_lengths=output.group_lengths,
        undefined_lengths=output.undefined_lengths,
        drop_empty=output.drop_empty,
        quality=output.quality,
    )
    converted = convert(ds, chosen, options)
    buffer = io.BytesIO()
    converted.write(buffer, preamble=file_meta)
    return buffer.getvalue(), chosen


def _read(source: str | os.PathLike[str] | bytes) -> Dataset:
    try:
        if isinstance(source, bytes):
            return pydicom.dcmread(io.BytesIO(source))
        return pydicom.dcmread(source, defer_size=DEFER_SIZE)
    except (OSError, InvalidDicomError, ValueError, EOFError) as exc:
        where = "the instance" if isinstance(source, bytes) else os.fspath(source)
        msg = f"cannot read {where}: {' '.join(str(exc).split())}"
        raise TranscodeError(msg) from exc


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        msg = f"cannot read {os.fspath(path)}: {exc.strerror or exc}"
        raise TranscodeError(msg) from exc


def _dataset_offset(raw: bytes) -> int | None:
    """Return where the dataset starts after preamble and File Meta (PS3.10 7.1)."""
    if raw[128:132] != b"DICM" or raw[132:140] != b"\x02\x00\x00\x00UL\x04\x00":
        return None  # no File Meta Information Group Length to skip by
    return 144 + int.from_bytes(raw[140:144], "little")
