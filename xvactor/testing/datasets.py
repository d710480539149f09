"""Synthetic but valid DICOM instances for tests, in every storage transfer syntax we support.

Nothing here is downloaded. :func:`make_dataset` builds an instance of a storage SOP class
(Patient, General Study/Series/Equipment/Image, Image Pixel and SOP Common modules plus the
Type 1 attributes of the modality's own modules, PS3.3 Annex A) with deterministic random
pixels; :func:`write_in_transfer_syntax` writes it as a PS3.10 file, each syntax with the
tool that encodes it best:

* Implicit VR LE (1.2.840.10008.1.2), Explicit VR LE (.1.2.1): pydicom.
* Explicit VR BE (.1.2.2): DCMTK ``dcmconv +tb``. pydicom 3 writes Big Endian files but does
  not byte-swap OW Pixel Data, so 16 bit pixel values come out wrong.
* RLE Lossless (.1.2.5): DCMTK ``dcmcrle``.
* JPEG Baseline (.1.2.4.50): DCMTK ``dcmcjpeg +eb``, 8 bit images only (``dcmcjpeg`` itself
  would silently rescale 16 bit pixels to 8 bits).
* JPEG Lossless, Process 14 (.1.2.4.57): DCMTK ``dcmcjpeg +el`` (selection value 6). Its
  default ``+e1`` gives .1.2.4.70 (SV1) instead.
* JPEG 2000 Lossless (.1.2.4.90) and JPEG 2000 (.1.2.4.91, compression ratio 10): pydicom
  with pylibjpeg-openjpeg; images need at least 32 x 32 pixels.

Every conversion keeps the SOP Instance UID, even a lossy one (a real modality would assign
a new one), so a test finds its file by the UID it generated.
"""

from __future__ import annotations

import copy
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    RLELossless,
    generate_uid,
)

from xvactor.testing.dcmtk import run_tool

__all__ = [
    "LOSSLESS_TRANSFER_SYNTAXES",
    "SIZES",
    "STORAGE_SOP_CLASSES",
    "TRANSFER_SYNTAXES",
    "ImageSize",
    "StorageSOPClass",
    "make_corpus",
    "make_dataset",
    "make_sized",
    "modality_for",
    "write_in_transfer_syntax",
]


class StorageSOPClass(NamedTuple):
    """A storage SOP class of the conformance target and the Modality its images carry."""

    uid: UID
    name: str
    modality: str


def _sop(suffix: str, name: str, modality: str) -> StorageSOPClass:
    return StorageSOPClass(UID(f"1.2.840.10008.5.1.4.1.1.{suffix}"), name, modality)


#: The "primary focus" storage SOP classes of the conformance target (PS3.4 Annex B.5).
STORAGE_SOP_CLASSES: tuple[StorageSOPClass, ...] = (
    _sop("1", "Computed Radiography Image Storage", "CR"),
    _sop("1.1", "Digital X-Ray Image Storage - For Presentation", "DX"),
    _sop("1.1.1", "Digital X-Ray Image Storage - For Processing", "DX"),
    _sop("1.2", "Digital Mammography X-Ray Image Storage - For Presentation", "MG"),
    _sop("1.2.1", "Digital Mammography X-Ray Image Storage - For Processing", "MG"),
    _sop("1.3", "Digital Intra-Oral X-Ray Image Storage - For Presentation", "IO"),
    _sop("1.3.1", "Digital Intra-Oral X-Ray Image Storage - For Processing", "IO"),
    _sop("2", "CT Image Storage", "CT"),
    _sop("4", "MR Image Storage", "MR"),
    _sop("6.1", "Ultrasound Image Storage", "US"),
    _sop("7", "Secondary Capture Image Storage", "OT"),
    _sop("12.1", "X-Ray Angiographic Image Storage", "XA"),
    _sop("12.2", "X-Ray Radiofluoroscopic Image Storage", "RF"),
    _sop("20", "Nuclear Medicine Image Storage", "NM"),
    _sop("77.1.1", "VL Endoscopic Image Storage", "ES"),
    _sop("77.1.2", "VL Microscopic Image Storage", "GM"),
    _sop("77.1.4", "VL Photographic Image Storage", "XC"),
    _sop("128", "Positron Emission Tomography Image Storage", "PT"),
    _sop("481.1", "RT Image Storage", "RTIMAGE"),
)

#: The transfer syntaxes the target accepts for storage, uncompressed first.
TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    RLELossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEG2000Lossless,
    JPEG2000,
)

#: Those of :data:`TRANSFER_SYNTAXES` after which the pixel data decodes unchanged.
LOSSLESS_TRANSFER_SYNTAXES = frozenset(TRANSFER_SYNTAXES) - {JPEGBaseline8Bit, JPEG2000}


class ImageSize(NamedTuple):
    """Image geometry for :func:`make_sized`."""

    rows: int
    columns: int
    bits_allocated: int


#: Named sizes: about 5 KB, 0.5 MB and 18 MB of pixel data.
SIZES: dict[str, ImageSize] = {
    "tiny": ImageSize(64, 64, 8),
    "ct": ImageSize(512, 512, 16),
    "dx": ImageSize(3000, 3000, 16),
}

_MODALITIES = {sop.uid: sop.modality for sop in STORAGE_SOP_CLASSES}
_DATE, _TIME = "20240102", "120000"
_ORIGINAL = ["ORIGINAL", "PRIMARY"]
# Attributes of each modality's own series, image, plane and acquisition modules (PS3.3
# C.7-C.8): the Type 1 ones and a few Type 2, on top of those make_dataset always sets.
# fmt: off
_PLANE: dict[str, Any] = {
    "PixelSpacing": [0.5, 0.5], "ImageOrientationPatient": [1, 0, 0, 0, 1, 0],
    "ImagePositionPatient": [0, 0, 0], "SliceThickness": 1,
}
_PROJECTION: dict[str, Any] = {
    "ImageType": _ORIGINAL, "PixelIntensityRelationship": "LIN",
    "PixelIntensityRelationshipSign": 1, "RescaleIntercept": 0, "RescaleSlope": 1,
    "RescaleType": "US", "PresentationLUTShape": "IDENTITY", "LossyImageCompression": "00",
    "BurnedInAnnotation": "NO", "DetectorType": "DIRECT", "ImagerPixelSpacing": [0.1, 0.1],
    "PatientOrientation": ["P", "F"], "ImageLaterality": "U",
}
_XRAY_ANGIO: dict[str, Any] = {
    "ImageType": [*_ORIGINAL, "SINGLE PLANE"], "PixelIntensityRelationship": "LIN",
    "KVP": 80, "RadiationSetting": "GR", "PositionerPrimaryAngle": 0,
    "PositionerSecondaryAngle": 0,
}
_VISIBLE_LIGHT: dict[str, Any] = {
    "ImageType": _ORIGINAL, "LossyImageCompression": "00", "AcquisitionContextSequence": [],
}
_MODULE_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "CR": {"BodyPartExamined": "CHEST", "ViewPosition": "PA"},
    "DX": {**_PROJECTION, "BodyPartExamined": "CHEST"},
    "MG": {**_PROJECTION, "BodyPartExamined": "BREAST", "ImageLaterality": "L"},
    "IO": {**_PROJECTION, "BodyPartExamined": "JAW"},
    "CT": {
        **_PLANE, "ImageType": [*_ORIGINAL, "AXIAL"], "RescaleIntercept": -1024,
        "RescaleSlope": 1, "KVP": 120, "AcquisitionNumber": 1,
    },
    "MR": {
        **_PLANE, "ImageType": [*_ORIGINAL, "OTHER"], "ScanningSequence": "SE",
        "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "2D",
        "RepetitionTime": 500, "EchoTime": 20, "EchoTrainLength": 1,
        "MagneticFieldStrength": 1.5,
    },
    "US": {"ImageType": _ORIGINAL},
    "OT": {"ConversionType": "WSD"},
    "XA": _XRAY_ANGIO,
    "RF": _XRAY_ANGIO,
    "NM": {
        "ImageType": [*_ORIGINAL, "STATIC", "EMISSION"], "PixelSpacing": [2, 2],
        "NumberOfEnergyWindows": 1, "NumberOfDetectors": 1,
        "EnergyWindowInformationSequence": [], "DetectorInformationSequence": [],
    },
    "ES": _VISIBLE_LIGHT,
    "GM": _VISIBLE_LIGHT,
    "XC": _VISIBLE_LIGHT,
    "PT": {
        **_PLANE, "ImageType": _ORIGINAL, "SeriesDate": _DATE, "SeriesTime": _TIME,
        "Units": "BQML", "CountsSource": "EMISSION", "SeriesType": ["STATIC", "IMAGE"],
        "CorrectedImage": ["DECY", "ATTN"], "DecayCorrection": "START",
        "RescaleIntercept": 0, "RescaleSlope": 1, "FrameReferenceTime": 0, "ImageIndex": 1,
        "NumberOfSlices": 1, "AcquisitionDate": _DATE, "AcquisitionTime": _TIME,
        "ActualFrameDuration": 1000,
    },
    "RTIMAGE": {
        "ImageType": [*_ORIGINAL, "PORTAL"], "ConversionType": "DI",
        "RTImageLabel": "PORTAL", "RTImagePlane": "NORMAL",
    },
}
# fmt: on
_FRAME_OF_REFERENCE = frozenset({"CT", "MR", "NM", "PT"})
_CINE = frozenset({"US", "XA", "RF"})
_VISIBLE_LIGHT_MODALITIES = frozenset({"ES", "GM", "XC"})
# Transfer syntax -> DCMTK converter and options. "+un": keep the SOP Instance UID.
_DCMTK_CONVERTERS: dict[UID, tuple[str, ...]] = {
    ExplicitVRBigEndian: ("dcmconv", "+tb"),
    RLELossless: ("dcmcrle", "+un"),
    JPEGBaseline8Bit: ("dcmcjpeg", "+eb", "+un"),
    JPEGLossless: ("dcmcjpeg", "+el", "+un"),
}
_J2K_RATIO = 10


def modality_for(sop_class_uid: str) -> str:
    """Return the Modality (0008,0060) of an image of `sop_class_uid`.

    Secondary Capture gives ``"OT"``, the VL classes ``"ES"``, ``"GM"`` and ``"XC"``.

    Raises
    ------
    ValueError
        If the SOP class is not one of :data:`STORAGE_SOP_CLASSES`.
    """
    try:
        return _MODALITIES[UID(sop_class_uid)]
    except KeyError:
        msg = f"no Modality known for SOP class {sop_class_uid}: pass modality="
        raise ValueError(msg) from None


def _character_set(patient_name: str, character_set: str | None) -> str | None:
    if character_set is not None or patient_name.isascii():
        return character_set
    try:
        patient_name.encode("latin-1")
    except UnicodeEncodeError:
        msg = f"{patient_name!r} is not Latin-1: pass character_set= (e.g. 'ISO_IR 192')"
        raise ValueError(msg) from None
    return "ISO_IR 100"


def _set_pixels(
    ds: Dataset, shape: tuple[int, int, int, int], bits: int, stored: int, *, seed: int
) -> None:
    frames, _, _, samples = shape
    keep = (frames > 1, True, True, samples > 1)
    squeezed = tuple(n for n, kept in zip(shape, keep, strict=True) if kept)
    rng = np.random.default_rng(seed)
    # Values stay below 2**BitsStored, so a lossless codec has nothing to mask off.
    dtype = np.uint8 if bits == 8 else np.uint16
    arr = rng.integers(0, 1 << stored, size=squeezed, dtype=dtype)
    photometric = "RGB" if samples == 3 else "MONOCHROME2"
    ds.set_pixel_data(arr, photometric, stored, generate_instance_uid=False)
    if ds.Modality == "NM":
        ds.NumberOfFrames = frames
        ds.FrameIncrementPointer = [0x00540010, 0x00540020]  # Energy Window, Detector Vector
        ds.EnergyWindowVector = ds.DetectorVector = [1] * frames
    elif frames > 1 and ds.Modality in _CINE:
        ds.FrameTime = 33.3
        ds.FrameIncrementPointer = 0x00181063  # Frame Time


def make_dataset(
    *,
    sop_class_uid: str = CTImageStorage,
    rows: int = 64,
    columns: int = 64,
    bits_allocated: int = 16,
    bits_stored: int | None = None,
    samples_per_pixel: int = 1,
    frames: int = 1,
    patient_name: str = "Test^Patient",
    patient_id: str = "XV000001",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    character_set: str | None = None,
    modality: str | None = None,
    seed: int = 0,
) -> Dataset:
    """Return a synthetic instance of `sop_class_uid` with random pixel data.

    Everything but the UIDs is deterministic: the same `seed` gives the same pixels. The dataset
    has File Meta Information for Explicit VR Little Endian.

    Parameters
    ----------
    sop_class_uid : str, optional
        A storage SOP class, default CT Image Storage.
    rows, columns : int, optional
        Image size, default 64 x 64.
    bits_allocated : {8, 16}, optional
        Bits Allocated, default 16.
    bits_stored : int, optional
        Bits Stored, default 8 for 8 bit and 12 for 16 bit images; every pixel value is
        below ``2**bits_stored``.
    samples_per_pixel : {1, 3}, optional
        1 gives MONOCHROME2, 3 gives RGB with Planar Configuration 0.
    frames : int, optional
        Number of Frames, present if above 1 (and always for NM).
    patient_name, patient_id : str, optional
        Patient's Name and Patient ID.
    study_uid, series_uid, sop_instance_uid : str, optional
        UIDs to use instead of new ones from :func:`pydicom.uid.generate_uid`.
    character_set : str, optional
        Specific Character Set; by default ``"ISO_IR 100"`` if `patient_name` is not ASCII
        (e.g. ``"Müller^Jürgen"``), otherwise absent (ISO-IR 6).
    modality : str, optional
        Modality, by default :func:`modality_for` the SOP class.
    seed : int, optional
        Seed of the pixel data.

    Returns
    -------
    pydicom.dataset.Dataset
        The instance, with its ``file_meta``.

    Raises
    ------
    ValueError
        For an unsupported geometry, or a non-Latin-1 name without `character_set`.
    """
    stored = bits_stored if bits_stored is not None else min(bits_allocated, 12)
    if bits_allocated not in (8, 16) or not 1 <= stored <= bits_allocated:
        msg = f"unsupported BitsAllocated/BitsStored {bits_allocated}/{stored}"
        raise ValueError(msg)
    if samples_per_pixel not in (1, 3) or min(rows, columns, frames) < 1:
        msg = f"unsupported geometry {rows}x{columns}x{samples_per_pixel}, {frames} frames"
        raise ValueError(msg)
    sop_class = UID(sop_class_uid)
    modality = modality if modality is not None else modality_for(sop_class)
    charset = _character_set(patient_name, character_set)

    ds = Dataset()
    if charset is not None:
        ds.SpecificCharacterSet = charset
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = UID(sop_instance_uid or generate_uid())
    ds.StudyDate = ds.ContentDate = _DATE
    ds.StudyTime = ds.ContentTime = _TIME
    ds.AccessionNumber = ds.ReferringPhysicianName = ""
    ds.Modality = modality
    ds.Manufacturer = "xvactor"
    ds.ManufacturerModelName = "synthetic"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyInstanceUID = UID(study_uid or generate_uid())
    ds.SeriesInstanceUID = UID(series_uid or generate_uid())
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    for keyword, value in _MODULE_ATTRIBUTES.get(modality, {}).items():
        setattr(ds, keyword, copy.deepcopy(value))
    if "For Processing" in sop_class.name:
        ds.PresentationIntentType = "FOR PROCESSING"
    elif modality in ("DX", "MG", "IO"):
        ds.PresentationIntentType = "FOR PRESENTATION"
    if modality in _FRAME_OF_REFERENCE:
        ds.FrameOfReferenceUID = generate_uid()
        ds.PositionReferenceIndicator = ""
    ds.InstanceNumber = 1
    shape = (frames, rows, columns, samples_per_pixel)
    _set_pixels(ds, shape, bits_allocated, stored, seed=seed)

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def make_sized(size: str, **kwargs: Any) -> Dataset:
    """Return :func:`make_dataset` with the geometry of ``SIZES[size]``.

    Parameters
    ----------
    size : {"tiny", "ct", "dx"}
        A key of :data:`SIZES`.
    **kwargs
        Further :func:`make_dataset` arguments, which override the size's geometry.
    """
    if size not in SIZES:
        msg = f"unknown size {size!r}: choose one of {', '.join(SIZES)}"
        raise ValueError(msg)
    return make_dataset(**{**SIZES[size]._asdict(), **kwargs})


def _uncompressed_copy(ds: Dataset) -> Dataset:
    src = copy.deepcopy(ds)
    if not hasattr(src, "file_meta"):
        src.file_meta = FileMetaDataset()
    tsyntax = src.file_meta.get("TransferSyntaxUID")
    if tsyntax is None:
        src.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    elif UID(tsyntax).is_compressed:
        src.decompress(generate_instance_uid=False)
    return src


def _check_encodable(src: Dataset, tsyntax: UID) -> None:
    if tsyntax == JPEGBaseline8Bit and src.BitsAllocated != 8:
        msg = (
            f"JPEG Baseline needs an 8 bit image, not BitsAllocated {src.BitsAllocated}: "
            "use make_dataset(bits_allocated=8, ...)"
        )
        raise ValueError(msg)
    # OpenJPEG's default 6 resolution levels need 2**5 pixels in each direction.
    if tsyntax in (JPEG2000Lossless, JPEG2000) and min(src.Rows, src.Columns) < 32:
        msg = f"JPEG 2000 needs at least 32 x 32 pixels, not {src.Rows} x {src.Columns}"
        raise ValueError(msg)


def _convert_with_dcmtk(src: Dataset, tsyntax: UID, path: Path) -> None:
    tool, *options = _DCMTK_CONVERTERS[tsyntax]
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".xvactor-") as tmp:
        source = Path(tmp, "source.dcm")
        src.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        src.save_as(source, enforce_file_format=True)
        run_tool(tool, *options, source, path, check=True)


def _compress_j2k(src: Dataset, tsyntax: UID) -> None:
    if tsyntax == JPEG2000Lossless:
        src.compress(tsyntax, generate_instance_uid=False)
        return
    src.compress(tsyntax, generate_instance_uid=False, j2k_cr=[_J2K_RATIO])
    # pydicom does not record the lossy compression (PS3.3 C.7.6.1.1.5); do it for it.
    src.LossyImageCompression = "01"
    src.LossyImageCompressionRatio = _J2K_RATIO
    src.LossyImageCompressionMethod = "ISO_15444_1"


def write_in_transfer_syntax(ds: Dataset, ts_uid: str, path: str | os.PathLike[str]) -> Path:
    """Write `ds` as a PS3.10 file in transfer syntax `ts_uid`.

    `ds` itself is not changed; compressed input is decompressed first (which needs a
    pydicom decoder for its syntax). The module docstring says which tool writes what.

    Parameters
    ----------
    ds : pydicom.dataset.Dataset
        The instance, e.g. from :func:`make_dataset`.
    ts_uid : str
        One of :data:`TRANSFER_SYNTAXES`.
    path : str or path-like
        The file to write, in an existing directory.

    Returns
    -------
    pathlib.Path
        `path`, after checking its Transfer Syntax UID.

    Raises
    ------
    ValueError
        If the syntax is not one of :data:`TRANSFER_SYNTAXES` or cannot hold this image:
        JPEG Baseline needs 8 bits, JPEG 2000 at least 32 x 32 pixels.
    RuntimeError
        If the file carries another transfer syntax, or a DCMTK tool failed
        (:class:`xvactor.testing.dcmtk.DcmtkError`).
    """
    tsyntax = UID(ts_uid)
    if tsyntax not in TRANSFER_SYNTAXES:
        msg = f"unsupported transfer syntax {tsyntax} ({tsyntax.name})"
        raise ValueError(msg)
    path = Path(path)
    src = _uncompressed_copy(ds)
    _check_encodable(src, tsyntax)
    if tsyntax in _DCMTK_CONVERTERS:
        _convert_with_dcmtk(src, tsyntax, path)
    else:
        if tsyntax in (JPEG2000Lossless, JPEG2000):
            _compress_j2k(src, tsyntax)
        else:
            src.file_meta.TransferSyntaxUID = tsyntax
        src.save_as(path, enforce_file_format=True)
    written = pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID
    if written != tsyntax:
        msg = f"{path} has transfer syntax {written} ({written.name}), not {tsyntax}"
        raise RuntimeError(msg)
    return path


def make_corpus(
    directory: str | os.PathLike[str],
    sop_classes: Iterable[str] | None = None,
    transfer_syntaxes: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[Path]:
    """Write an instance of each SOP class in each transfer syntax into `directory`.

    The instances share one patient and one study, with a series per SOP class. Images
    are 8 bit for JPEG Baseline and the VL classes, 16 bit otherwise, unless `kwargs` say.

    Parameters
    ----------
    directory : str or path-like
        Created if missing.
    sop_classes : iterable of str, optional
        SOP Class UIDs, default those of :data:`STORAGE_SOP_CLASSES`.
    transfer_syntaxes : iterable of str, optional
        Transfer Syntax UIDs, default :data:`TRANSFER_SYNTAXES`.
    **kwargs
        Further :func:`make_dataset` arguments.

    Returns
    -------
    list of pathlib.Path
        The files, named ``NNN_<Modality>_<transfer syntax keyword>.dcm``, in the order
        of `sop_classes`, then `transfer_syntaxes`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    classes = [UID(uid) for uid in sop_classes or (sop.uid for sop in STORAGE_SOP_CLASSES)]
    syntaxes = [UID(uid) for uid in transfer_syntaxes or TRANSFER_SYNTAXES]
    study_uid = kwargs.pop("study_uid", None) or generate_uid()
    paths: list[Path] = []
    for sop_class in classes:
        series_uid = generate_uid()
        for tsyntax in syntaxes:
            eight_bit = (
                tsyntax == JPEGBaseline8Bit
                or _MODALITIES.get(sop_class) in _VISIBLE_LIGHT_MODALITIES
            )
            options: dict[str, Any] = {
                "sop_class_uid": sop_class,
                "bits_allocated": 8 if eight_bit else 16,
                "study_uid": study_uid,
                "series_uid": series_uid,
                "seed": len(paths),
                **kwargs,
            }
            ds = make_dataset(**options)
            name = f"{len(paths):03d}_{ds.Modality}_{tsyntax.keyword or tsyntax}.dcm"
            paths.append(write_in_transfer_syntax(ds, tsyntax, directory / name))
    return paths
