"""Presentation contexts of the conformance target (PS3.7 Annex D.3.3.2).

Storage SOP classes are accepted with the eight transfer syntaxes of the target; the
service classes (Verification, Q/R, worklist, commitment, print) with the three
uncompressed ones.  Every storage SOP class pynetdicom knows is accepted, not only the
"primary focus" list, as the target requires.
"""

from __future__ import annotations

from pynetdicom import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

__all__ = [
    "SERVICE_TRANSFER_SYNTAXES",
    "STORAGE_SOP_CLASSES",
    "STORAGE_TRANSFER_SYNTAXES",
    "VERIFICATION",
]

VERIFICATION: str = str(Verification)

SERVICE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still in the target)
)

STORAGE_TRANSFER_SYNTAXES: tuple[str, ...] = (
    *SERVICE_TRANSFER_SYNTAXES,
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline (Process 1)
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless, Non-Hierarchical (Process 14)
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Image Compression (Lossless Only)
    "1.2.840.10008.1.2.4.91",  # JPEG 2000 Image Compression
)

STORAGE_SOP_CLASSES: tuple[str, ...] = tuple(
    str(cx.abstract_syntax) for cx in AllStoragePresentationContexts
)
