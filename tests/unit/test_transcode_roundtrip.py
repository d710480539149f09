"""Hypothesis round trips over random images through every lossless syntax."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import (
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLossless,
    RLELossless,
)

from tests.unit.test_transcode_support import pixels
from xvactor.testing.datasets import make_dataset
from xvactor.transcode import transcode

LOSSLESS = (
    ImplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEGLossless,
    JPEG2000Lossless,
)


@st.composite
def images(draw: st.DrawFn) -> Dataset:
    rows = draw(st.integers(1, 24))
    columns = draw(st.integers(1, 24))
    samples = draw(st.sampled_from((1, 3)))
    depth = draw(st.sampled_from((8, 12, 16)))
    allocated = 8 if depth == 8 else 16
    stored = draw(st.integers(2, depth)) if depth > 8 else 8
    signed = samples == 1 and draw(st.booleans())
    frames = draw(st.integers(1, 3))
    ds = make_dataset(
        rows=rows,
        columns=columns,
        bits_allocated=allocated,
        bits_stored=stored,
        samples_per_pixel=samples,
        frames=frames,
        seed=draw(st.integers(0, 2**16)),
    )
    if signed:
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        low, high = -(1 << (stored - 1)), (1 << (stored - 1)) - 1
        shape = (frames, rows, columns)
        values = rng.integers(low, high, size=shape, endpoint=True)
        ds.PixelData = values.astype(f"<i{allocated // 8}").tobytes()
        ds.PixelRepresentation = 1
    return ds


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ds=images(), target=st.sampled_from(LOSSLESS), then=st.sampled_from(LOSSLESS))
def test_random_images_survive_lossless_round_trips(ds: Dataset, target: str, then: str) -> None:
    there = transcode(ds, target)
    back = transcode(there, then)
    np.testing.assert_array_equal(pixels(back), ds.pixel_array)
    assert back.PhotometricInterpretation in ("MONOCHROME2", "RGB", "YBR_RCT")
