"""Read Pixel Data frame by frame, from memory or from a file, without loading it whole.

A dataset read with ``dcmread(path, defer_size=...)`` keeps a large native Pixel Data value
on disk (a deferred raw element that knows its file offset); :class:`PixelSource` reads it
a frame at a time. Encapsulated Pixel Data (PS3.5 Section A.4) is compressed, so it is
held in memory and split into frames with pydicom's Basic/Extended Offset Table logic.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from xvactor.transcode.errors import TranscodeError
from xvactor.transcode.pixels import PixelInfo

__all__ = ["CHUNK", "PIXEL_DATA", "PixelSource"]

PIXEL_DATA: Final = 0x7FE00010
_UNDEFINED: Final = 0xFFFFFFFF
#: Bytes read at a time when copying native Pixel Data.
CHUNK: Final = 4 << 20


class PixelSource:
    """The Pixel Data of `ds`, readable as frames or as chunks.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        A dataset with Pixel Data, possibly deferred (read with `defer_size`).
    info : PixelInfo
        Its Image Pixel attributes.
    """

    def __init__(self, ds: Dataset, info: PixelInfo) -> None:
        self.info = info
        self._path: str | None = None
        self._offset = 0
        self._data: bytes = b""
        self.length: int = 0
        elem = ds.get_item(PIXEL_DATA, keep_deferred=True)
        if elem is None:
            msg = "the dataset has no Pixel Data"
            raise TranscodeError(msg)
        if (
            isinstance(elem, RawDataElement)
            and elem.value is None
            and ds.filename
            and elem.length != _UNDEFINED
        ):
            self._path = os.fspath(ds.filename)
            self._offset = elem.value_tell
            self.length = elem.length
        else:
            value = ds.PixelData
            self._data = value if isinstance(value, bytes) else bytes(value)
            self.length = len(self._data)
        extended = (ds.get("ExtendedOffsetTable"), ds.get("ExtendedOffsetTableLengths"))
        self._extended = extended if None not in extended else None

    def chunks(self) -> Iterator[bytes]:
        """Yield the whole value in chunks of at most :data:`CHUNK` bytes."""
        if self._path is None:
            view = memoryview(self._data)
            for start in range(0, self.length, CHUNK):
                yield bytes(view[start : start + CHUNK])
            return
        with open(self._path, "rb") as fh:
            fh.seek(self._offset)
            remaining = self.length
            while remaining > 0:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    msg = f"{self._path} ends inside its Pixel Data"
                    raise TranscodeError(msg)
                remaining -= len(chunk)
                yield chunk

    def native_frames(self) -> Iterator[bytes]:
        """Yield each native frame (Bits Allocated 8 or more)."""
        size, count = self.info.frame_length, self.info.number_of_frames
        if self.length < size * count:
            msg = (
                f"Pixel Data has {self.length} bytes, {count} frame(s) of "
                f"{self.info.rows} x {self.info.columns} need {size * count}"
            )
            raise TranscodeError(msg)
        if self._path is None:
            view = memoryview(self._data)
            for index in range(count):
                yield bytes(view[index * size : (index + 1) * size])
            return
        with open(self._path, "rb") as fh:
            fh.seek(self._offset)
            for _ in range(count):
                frame = fh.read(size)
                if len(frame) != size:
                    msg = f"{self._path} ends inside its Pixel Data"
                    raise TranscodeError(msg)
                yield frame

    def encapsulated_frames(self) -> Iterator[bytes]:
        """Yield each compressed frame, its fragments joined (PS3.5 Section A.4)."""
        data = self._data if self._path is None else b"".join(self.chunks())
        count = self.info.number_of_frames
        produced = 0
        try:
            for frame in generate_frames(
                data, number_of_frames=count, extended_offsets=self._extended
            ):
                produced += 1
                if produced > count:
                    break
                yield frame
        except (ValueError, KeyError, IndexError) as exc:
            msg = f"corrupt encapsulated Pixel Data: {' '.join(str(exc).split())}"
            raise TranscodeError(msg) from exc
        if produced != count:
            msg = f"encapsulated Pixel Data holds {produced} frame(s), Number of Frames is {count}"
            raise TranscodeError(msg)
