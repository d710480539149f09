"""Convert a dataset or a file between transfer syntaxes, frame by frame.

The I/O half of the engine (:mod:`xvactor.transcode.plan` decides): frames are read one
at a time (:class:`~xvactor.transcode.source.PixelSource`), decoded, encoded, and either
streamed into the output (uncompressed targets) or spooled compressed to a temporary file
(compressed targets, whose Basic Offset Table and lossy ratio are known only at the end),
so at most one decoded frame is in memory at any time.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import os
import struct
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Final, TypeVar

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRBigEndian

from xvactor.transcode.codecs import decode_frame, encode_frame
from xvactor.transcode.encoding import BulkElement, Format, transfer_syntax_of, write_part10
from xvactor.transcode.errors import TranscodeError
from xvactor.transcode.options import OutputEncoding
from xvactor.transcode.pixels import PixelInfo, array_to_native, native_to_array, swap_native
from xvactor.transcode.plan import Plan, apply_plan, make_plan
from xvactor.transcode.source import PIXEL_DATA, PixelSource
from xvactor.transcode.syntaxes import is_native

__all__ = ["IMPLEMENTATION_CLASS_UID", "Converted", "convert", "convert_file", "read", "transcode"]

#: Implementation Class UID written into converted files (the conformance target's).
IMPLEMENTATION_CLASS_UID: Final = UID("1.2.840.114384")
#: Values above this many bytes stay on disk until written (see :func:`read`).
DEFER_SIZE: Final = 1 << 20
_SPOOL_IN_MEMORY: Final = 16 << 20
_ITEM: Final = b"\xfe\xff\x00\xe0"
_SEQUENCE_DELIMITER: Final = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
_END: Final = _SEQUENCE_DELIMITER
_T = TypeVar("_T")


@dataclass(slots=True)
class Converted:
    """A converted dataset, ready to write: elements, File Meta and streamed Pixel Data.

    Attributes
    ----------
    ds : pydicom.dataset.Dataset
        Every element but Pixel Data, with the attributes the conversion changes.
    file_meta : pydicom.dataset.FileMetaDataset
        With the target Transfer Syntax UID.
    bulk : BulkElement or None
        Pixel Data, produced while it is written (compressed frames from a spool).
    plan : Plan
        What the conversion does.
    fmt : Format
        The encoding to write with.
    """

    ds: Dataset
    file_meta: FileMetaDataset
    bulk: BulkElement | None
    plan: Plan
    fmt: Format

    def write(self, fp: BinaryIO, *, preamble: bool = True) -> None:
        """Write it to `fp` as a PS3.10 file (``preamble=False``: the dataset only)."""
        write_part10(fp, self.ds, self.file_meta, self.fmt, self.bulk, preamble=preamble)


def read(path: str | os.PathLike[str]) -> Dataset:
    """Read a PS3.10 file, leaving values above :data:`DEFER_SIZE` on disk until used.

    Raises
    ------
    TranscodeError
        If the file cannot be read or is not DICOM.
    """
    try:
        return pydicom.dcmread(path, defer_size=DEFER_SIZE)
    except (OSError, InvalidDicomError, ValueError, EOFError) as exc:
        msg = f"cannot read {os.fspath(path)}: {' '.join(str(exc).split())}"
        raise TranscodeError(msg) from exc


def convert(
    ds: Dataset,
    target: str | None = None,
    output: OutputEncoding | None = None,
    *,
    spool: contextlib.ExitStack | None = None,
) -> Converted:
    """Prepare `ds` for writing in `target` with `output`'s options.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The source; it is not changed. Its Transfer Syntax is its File Meta's.
    target : str, optional
        Transfer Syntax UID or name; default ``output.target_for(source)``.
    output : OutputEncoding, optional
        Output options; default all off.
    spool : contextlib.ExitStack, optional
        Owns the temporary file compressed frames are spooled to; without one, they are
        kept in memory.

    Raises
    ------
    TranscodeError
        If the conversion cannot be done faithfully.
    """
    output = output or OutputEncoding()
    source = transfer_syntax_of(ds)
    uid = output.target_for(source)
    if target:
        uid = OutputEncoding(transfer_syntax=target).target_for(source)
    plan = make_plan(ds, source, uid)
    head = _copy_without_pixels(ds)
    bulk = _bulk(ds, plan, output.quality, head, spool)
    fmt = Format.for_syntax(
        uid,
        source,
        group_lengths=output.group_lengths,
        undefined_lengths=output.undefined_lengths,
        drop_empty=output.drop_empty,
    )
    return Converted(head, _file_meta(ds, head, uid), bulk, plan, fmt)


def transcode(ds: Dataset, target: str, output: OutputEncoding | None = None) -> Dataset:
    """Return a copy of `ds` in transfer syntax `target` (a UID or name).

    The result holds its Pixel Data in memory (encapsulated with a Basic Offset Table for
    compressed syntaxes, in the target byte order otherwise) and File Meta with the new
    Transfer Syntax UID. Frames are decoded one at a time.

    Raises
    ------
    TranscodeError
        If the conversion cannot be done faithfully.
    """
    converted = convert(ds, target, output)
    result = converted.ds
    result.file_meta = converted.file_meta
    bulk = converted.bulk
    if bulk is not None:
        value = b"".join(bulk.chunks())
        undefined = bulk.value_length is None
        if undefined:
            value = value[: -len(_SEQUENCE_DELIMITER)]
        result[PIXEL_DATA] = DataElement(PIXEL_DATA, bulk.vr, value, is_undefined_length=undefined)
    return result


def convert_file(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    target: str | None = None,
    output: OutputEncoding | None = None,
) -> UID:
    """Convert the PS3.10 file `src` into `dst`, frame by frame; return the syntax written.

    `dst` appears complete or not at all (written to a temporary file, then renamed).

    Raises
    ------
    TranscodeError
        If `src` cannot be read or converted, or `dst` cannot be written.
    """
    ds = read(src)
    dst = Path(dst)
    with contextlib.ExitStack() as stack:
        converted = convert(ds, target, output, spool=stack)
        try:
            fd, tmp = tempfile.mkstemp(dir=dst.parent or ".", prefix=f".{dst.name}.", suffix=".tmp")
        except OSError as exc:
            msg = f"cannot write {dst}: {exc.strerror or exc}"
            raise TranscodeError(msg) from exc
        try:
            with os.fdopen(fd, "wb") as fh:
                converted.write(fh)
            os.replace(tmp, dst)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError):
                msg = f"cannot write {dst}: {exc.strerror or exc}"
                raise TranscodeError(msg) from exc
            raise
    return UID(converted.file_meta.TransferSyntaxUID)


def _copy_without_pixels(ds: Dataset) -> Dataset:
    head = Dataset()
    for tag in ds.keys():  # noqa: SIM118 (iterating a Dataset gives elements)
        if tag != PIXEL_DATA:
            head[tag] = copy.deepcopy(ds[tag])
    return head


def _file_meta(ds: Dataset, head: Dataset, target: UID) -> FileMetaDataset:
    meta = FileMetaDataset(copy.deepcopy(getattr(ds, "file_meta", None) or Dataset()))
    for tag in [tag for tag in meta.keys() if tag.element == 0]:  # noqa: SIM118
        del meta[tag]
    meta.TransferSyntaxUID = target
    for meta_keyword, keyword in (
        ("MediaStorageSOPClassUID", "SOPClassUID"),
        ("MediaStorageSOPInstanceUID", "SOPInstanceUID"),
    ):
        if keyword in head:
            setattr(meta, meta_keyword, head[keyword].value)
    meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    if "ImplementationVersionName" in meta:
        del meta.ImplementationVersionName
    return meta


def _bulk(
    ds: Dataset,
    plan: Plan,
    quality: int | None,
    head: Dataset,
    spool: contextlib.ExitStack | None,
) -> BulkElement | None:
    info = plan.info
    if plan.mode == "none" or info is None:
        return None
    pixels = PixelSource(ds, info)
    if not is_native(plan.target) and plan.mode == "transcode":
        return _encapsulated(pixels, plan, quality, head, spool)
    apply_plan(head, plan)
    if not is_native(plan.target):  # encapsulated, kept as it is
        size = pixels.length + len(_SEQUENCE_DELIMITER)
        return BulkElement(PIXEL_DATA, "OB", None, size, lambda: _then(pixels.chunks(), _END))
    vr = "OW" if info.bits_allocated > 8 else "OB"
    if plan.mode == "transcode":
        output = plan.output or info
        length = output.frame_length * output.number_of_frames
        little = plan.target != ExplicitVRBigEndian

        def frames() -> Iterator[bytes]:
            for arr in _arrays(pixels, plan):
                yield array_to_native(arr, output, little_endian=little)

    else:
        length = pixels.length
        swap = plan.mode == "swap"

        def frames() -> Iterator[bytes]:
            for chunk in pixels.chunks():
                yield bytes(swap_native(chunk, info.bits_allocated)) if swap else chunk

    pad = b"\x00" * (length % 2)  # PS3.5 Section 8.1.1: an even length
    return BulkElement(
        PIXEL_DATA, vr, length + len(pad), length + len(pad), lambda: _then(frames(), pad)
    )


def _arrays(pixels: PixelSource, plan: Plan) -> Iterator[NDArray[np.integer]]:
    info = plan.info
    assert info is not None
    if is_native(plan.source):
        little = plan.source != ExplicitVRBigEndian
        for frame in pixels.native_frames():
            yield native_to_array(frame, info, little_endian=little)
        return
    for index, frame in enumerate(pixels.encapsulated_frames(), start=1):
        yield _in_frame(index, info, functools.partial(decode_frame, plan.source, frame, info))


def _in_frame(index: int, info: PixelInfo, step: Callable[[], _T]) -> _T:
    try:
        return step()
    except TranscodeError as exc:
        if info.number_of_frames == 1:
            raise
        msg = f"frame {index} of {info.number_of_frames}: {exc}"
        raise TranscodeError(msg) from exc


def _encapsulated(
    pixels: PixelSource,
    plan: Plan,
    quality: int | None,
    head: Dataset,
    spool: contextlib.ExitStack | None,
) -> BulkElement:
    decoded = plan.decoded
    assert decoded is not None
    store = _Spool(spool)
    for index, arr in enumerate(_arrays(pixels, plan), start=1):
        encode = functools.partial(encode_frame, plan.target, arr, decoded, quality)
        data = _in_frame(index, decoded, encode)
        store.append(data + b"\x00" * (len(data) % 2))  # PS3.5 A.4: even fragments
    lengths = store.lengths
    apply_plan(head, plan, compressed_size=sum(lengths))
    items = sum(8 + length for length in lengths)
    offsets = list(itertools.accumulate((8 + length for length in lengths[:-1]), initial=0))
    if items > 0xFFFFFFFF:  # 32 bit offsets cannot point there: an empty Basic Offset Table
        offsets = []
    bot = _ITEM + struct.pack(f"<L{len(offsets)}L", 4 * len(offsets), *offsets)

    def chunks() -> Iterator[bytes]:
        yield bot
        for data in store:
            yield _ITEM + struct.pack("<L", len(data))
            yield data
        yield _SEQUENCE_DELIMITER

    return BulkElement(PIXEL_DATA, "OB", None, len(bot) + items + len(_END), chunks)


class _Spool:
    """Compressed frames in a list, moved to a temporary file past :data:`_SPOOL_IN_MEMORY`.

    Without an ExitStack to own a temporary file, everything stays in memory.
    """

    def __init__(self, owner: contextlib.ExitStack | None) -> None:
        self._owner = owner
        self._frames: list[bytes] = []
        self._file: IO[bytes] | None = None
        self.lengths: list[int] = []

    def append(self, data: bytes) -> None:
        self.lengths.append(len(data))
        spill = self._file is None and sum(self.lengths) > _SPOOL_IN_MEMORY
        if spill and self._owner is not None:
            self._file = self._owner.enter_context(tempfile.TemporaryFile())  # noqa: SIM115
            for frame in self._frames:
                self._file.write(frame)
            self._frames.clear()
        if self._file is not None:
            self._file.write(data)
        else:
            self._frames.append(data)

    def __iter__(self) -> Iterator[bytes]:
        if self._file is None:
            yield from self._frames
            return
        self._file.seek(0)
        for length in self.lengths:
            yield self._file.read(length)


def _then(chunks: Iterable[bytes], tail: bytes) -> Iterator[bytes]:
    yield from chunks
    if tail:
        yield tail
