"""Transcoding between transfer syntaxes and per-destination output encoding.

Pure DICOM logic, no actor runtime: convert a dataset or a PS3.10 file between the eight
transfer syntaxes of the conformance target (Implicit VR LE, Explicit VR LE and BE, RLE
Lossless, JPEG Baseline, JPEG Lossless Process 14, JPEG 2000 Lossless and lossy), frame by
frame, with the attributes a conversion changes (PS3.3 C.7.6.1.1.5, C.7.6.3), and write the
result with a destination's output options (:class:`OutputEncoding`).

Codec choice. Users embed this library, so the default install stays free of GPL code
(pylibjpeg-libjpeg is GPLv3). imagecodecs (BSD-3, maintained, wheels for every platform)
bundles libjpeg-turbo 3, which encodes and decodes JPEG baseline, 12 bit extended and
lossless Process 14 at 2-16 bits, and OpenJPEG with thread support and a settable number
of resolution levels (so images under 32 x 32 pixels encode too). RLE uses pylibjpeg-rle
(MIT, the pylibjpeg plugin pydicom also uses). pylibjpeg-openjpeg stays installed as
pydicom's own JPEG 2000 decoder; tests use it to check what we write independently.

Entry points: :func:`transcode` (dataset to dataset), :func:`convert_file` (file to file,
streaming), :func:`encode_for` (a stored instance for a peer's accepted syntaxes).
"""

from xvactor.transcode.engine import Converted, convert, convert_file, read, transcode
from xvactor.transcode.errors import TranscodeError
from xvactor.transcode.options import OutputEncoding
from xvactor.transcode.retrieve import choose_transfer_syntax, encode_for
from xvactor.transcode.syntaxes import ENCODABLE, READABLE, resolve

__all__ = [
    "ENCODABLE",
    "READABLE",
    "Converted",
    "OutputEncoding",
    "TranscodeError",
    "choose_transfer_syntax",
    "convert",
    "convert_file",
    "encode_for",
    "read",
    "resolve",
    "transcode",
]
