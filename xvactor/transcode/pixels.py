"""Image Pixel module values (PS3.3 C.7.6.3) and native frames <-> numpy arrays.

A *native frame* is one frame of uncompressed Pixel Data as PS3.5 Section 8.1 lays it out,
in the byte order of its transfer syntax. The codecs work on arrays of shape
``(Rows, Columns)`` or ``(Rows, Columns, SamplesPerPixel)`` (colour-by-pixel).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Self

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from xvactor.transcode.errors import TranscodeError

__all__ = ["PixelInfo", "array_to_native", "native_to_array", "swap_native"]

_REQUIRED = ("Rows", "Columns", "BitsAllocated", "PhotometricInterpretation")


@dataclass(frozen=True, slots=True)
class PixelInfo:
    """The Image Pixel module attributes that describe how pixels are stored.

    Attributes are the DICOM keywords in snake case; `planar_configuration` is 0 for
    monochrome images.
    """

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    photometric_interpretation: str
    planar_configuration: int
    number_of_frames: int

    @classmethod
    def from_dataset(cls, ds: Dataset) -> Self:
        """Read the attributes from `ds`; raise :class:`TranscodeError` if they are unusable."""
        missing = [keyword for keyword in _REQUIRED if ds.get(keyword) in (None, "")]
        if missing:
            msg = f"Pixel Data without {', '.join(missing)}: cannot convert it"
            raise TranscodeError(msg)
        samples = int(ds.get("SamplesPerPixel") or 1)
        allocated = int(ds.BitsAllocated)
        info = cls(
            rows=int(ds.Rows),
            columns=int(ds.Columns),
            samples_per_pixel=samples,
            bits_allocated=allocated,
            bits_stored=int(ds.get("BitsStored") or allocated),
            pixel_representation=int(ds.get("PixelRepresentation") or 0),
            photometric_interpretation=str(ds.PhotometricInterpretation).strip(),
            planar_configuration=int(ds.get("PlanarConfiguration") or 0) if samples > 1 else 0,
            number_of_frames=int(ds.get("NumberOfFrames") or 1),
        )
        if allocated not in (1, 8, 16, 32) or not 1 <= info.bits_stored <= allocated:
            msg = f"unsupported Bits Allocated/Stored {allocated}/{info.bits_stored}"
            raise TranscodeError(msg)
        if samples not in (1, 3) or min(info.rows, info.columns, info.number_of_frames) < 1:
            msg = (
                f"unsupported geometry: {info.rows} x {info.columns}, {samples} samples, "
                f"{info.number_of_frames} frames"
            )
            raise TranscodeError(msg)
        return info

    def with_(self, **changes: object) -> PixelInfo:
        """Return a copy with some attributes changed."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def signed(self) -> bool:
        """bool: Pixel Representation 1 (two's complement)."""
        return self.pixel_representation == 1

    @property
    def frame_length(self) -> int:
        """int: Bytes of one native frame (bit-packed for Bits Allocated 1, PS3.5 8.1.1).

        Frames of a 1 bit multi-frame image need not start on a byte boundary; conversion
        of those keeps the Pixel Data as a whole (see the engine).
        """
        pixels = self.rows * self.columns * self.samples_per_pixel
        return pixels * self.bits_allocated // 8 if self.bits_allocated > 1 else -(-pixels // 8)

    @property
    def dtype(self) -> np.dtype[np.integer]:
        """numpy.dtype: Little endian integer type of one sample."""
        kind = "i" if self.signed else "u"
        return np.dtype(f"<{kind}{max(self.bits_allocated, 8) // 8}")

    @property
    def shape(self) -> tuple[int, ...]:
        """tuple of int: Shape of one frame as an array, colour-by-pixel."""
        if self.samples_per_pixel == 1:
            return (self.rows, self.columns)
        return (self.rows, self.columns, self.samples_per_pixel)


def native_to_array(
    frame: bytes | memoryview, info: PixelInfo, *, little_endian: bool
) -> NDArray[np.integer]:
    """Return one native frame as an array of :attr:`PixelInfo.shape`.

    Signed samples with Bits Stored below Bits Allocated are sign-extended, and unsigned
    ones masked, so the array holds the pixel values (PS3.5 Section 8.1.1).
    """
    if info.bits_allocated == 1:
        msg = "Bits Allocated 1 cannot be compressed: convert it to an uncompressed syntax"
        raise TranscodeError(msg)
    dtype = info.dtype if little_endian else info.dtype.newbyteorder(">")
    arr: NDArray[np.integer] = np.frombuffer(frame, dtype=dtype, count=-1)
    if arr.size != info.rows * info.columns * info.samples_per_pixel:
        msg = f"a frame has {len(frame)} bytes, expected {info.frame_length}"
        raise TranscodeError(msg)
    if info.samples_per_pixel > 1 and info.planar_configuration == 1:
        arr = arr.reshape(info.samples_per_pixel, info.rows, info.columns).transpose(1, 2, 0)
    arr = arr.reshape(info.shape).astype(info.dtype, copy=False)
    return clean_bits(arr, info)


def clean_bits(arr: NDArray[np.integer], info: PixelInfo) -> NDArray[np.integer]:
    """Return `arr` with the bits above Bits Stored cleared (unsigned) or sign-extended."""
    unused = info.bits_allocated - info.bits_stored
    if unused == 0 or info.bits_allocated == 1:
        return arr
    if info.signed:
        return (arr << unused) >> unused
    return arr & ((1 << info.bits_stored) - 1)


def array_to_native(arr: NDArray[np.integer], info: PixelInfo, *, little_endian: bool) -> bytes:
    """Return one frame as native bytes, colour-by-pixel (Planar Configuration 0)."""
    dtype = info.dtype if little_endian else info.dtype.newbyteorder(">")
    return np.ascontiguousarray(arr, dtype=dtype).tobytes()


def swap_native(data: bytes | memoryview, bits_allocated: int) -> bytes | memoryview:
    """Return native Pixel Data in the other byte order (a copy only if bytes move)."""
    if bits_allocated <= 8:
        return data
    width = bits_allocated // 8
    usable = len(data) - len(data) % width
    swapped = np.frombuffer(data, dtype=f"<u{width}", count=usable // width).byteswap()
    return swapped.tobytes() + bytes(data[usable:])
