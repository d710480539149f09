"""Shared helpers for the transcoding tests (no tests here): images, pixel comparison, PSNR."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from xvactor.testing.datasets import make_dataset
from xvactor.transcode import transcode


def pixels(ds: Dataset) -> NDArray[np.integer]:
    """Pixel values of `ds`, decoded by xvactor, read by pydicom's native reader."""
    return transcode(ds, ExplicitVRLittleEndian).pixel_array  # type: ignore[no-any-return]


def psnr(a: NDArray[np.integer], b: NDArray[np.integer], bits: int) -> float:
    """Peak signal-to-noise ratio of `b` against `a`, in dB."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(((1 << bits) - 1) ** 2 / mse)


def smooth(
    rows: int = 64,
    columns: int = 64,
    *,
    bits_allocated: int = 8,
    bits_stored: int | None = None,
    samples_per_pixel: int = 1,
    frames: int = 1,
    signed: bool = False,
) -> Dataset:
    """A dataset with smooth gradients plus a little noise (what lossy codecs are for)."""
    stored = bits_stored or min(bits_allocated, 12)
    ds = make_dataset(
        rows=rows,
        columns=columns,
        bits_allocated=bits_allocated,
        bits_stored=stored,
        samples_per_pixel=samples_per_pixel,
        frames=frames,
    )
    y, x = np.mgrid[0:rows, 0:columns]
    top = (1 << stored) - 1
    planes = []
    for channel in range(samples_per_pixel):
        wave = np.sin(x / (7 + channel) + y / 11) + np.cos(y / (9 + 2 * channel))
        planes.append((wave + 2) / 4 * top)
    arr = np.stack(planes, axis=-1) if samples_per_pixel == 3 else planes[0]
    arr = np.stack([arr] * frames) if frames > 1 else arr
    noise = np.random.default_rng(7).normal(0, top / 400, arr.shape)
    values = np.clip(np.rint(arr + noise), 0, top).astype(np.int64)
    if signed:
        values -= 1 << (stored - 1)
    kind = "i" if signed else "u"
    ds.PixelData = values.astype(f"<{kind}{bits_allocated // 8}").tobytes()
    ds.PixelRepresentation = int(signed)
    return ds
