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
    "FIND_SOP_CLASSES",
    "GET_SOP_CLASSES",
    "MODALITY_WORKLIST_FIND",
    "MOVE_SOP_CLASSES",
    "QR_SOP_CLASSES",
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

# PS3.4 C.6: the three Q/R information models, each with FIND (.1), MOVE (.2), GET (.3).
PATIENT_ROOT = "1.2.840.10008.5.1.4.1.2.1"
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2"
PATIENT_STUDY_ONLY = "1.2.840.10008.5.1.4.1.2.3"  # retired in the standard, in the target
_MODELS = (PATIENT_ROOT, STUDY_ROOT, PATIENT_STUDY_ONLY)

MODALITY_WORKLIST_FIND = "1.2.840.10008.5.1.4.31"  # PS3.4 K.6.1.2
FIND_SOP_CLASSES: tuple[str, ...] = tuple(f"{model}.1" for model in _MODELS)
MOVE_SOP_CLASSES: tuple[str, ...] = tuple(f"{model}.2" for model in _MODELS)
GET_SOP_CLASSES: tuple[str, ...] = tuple(f"{model}.3" for model in _MODELS)
QR_SOP_CLASSES: tuple[str, ...] = (
    *FIND_SOP_CLASSES,
    *MOVE_SOP_CLASSES,
    *GET_SOP_CLASSES,
    MODALITY_WORKLIST_FIND,
)
