"""Query/Retrieve Information Models (PS3.4 C.6) and the parsed request Identifier.

Three models, each with its FIND, MOVE and GET SOP classes and its levels: Patient Root
(PATIENT, STUDY, SERIES, IMAGE), Study Root (STUDY, SERIES, IMAGE; the patient attributes
belong to the study level, C.6.2.1.2) and the retired Patient/Study Only (PATIENT, STUDY).

:func:`parse_identifier` checks a request Identifier against the hierarchical rules of
PS3.4 C.4.1.2.1 (relational queries are not offered in Extended Negotiation, so they are
refused) and returns a :class:`Query`.  Where the standard is strict and real peers are
not, this module is lenient in one documented way each:

* a universal (zero-length) key above the query level is accepted and returned filled
  in, since many viewers ask for Patient's Name at the series level;
* a universal key that belongs below the query level is dropped from the query (and so
  from the responses) rather than refused; a non-universal one is refused;
* for C-MOVE/C-GET (``retrieve=True``) the unique keys of the levels above may be missing
  and other keys may match too (as DCMTK's dcmqrscp allows), PS3.4 C.4.2.2.1; but at
  least one key must be non-universal, so an empty Identifier never selects everything.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from xvactor.dicom.status import CannotUnderstand, DicomServiceError, Status
from xvactor.query.matching import IGNORED_TAGS, is_universal

__all__ = [
    "MODELS",
    "PATIENT_ROOT",
    "PATIENT_STUDY_ONLY",
    "STUDY_ROOT",
    "UNIQUE_KEYS",
    "IdentifierDoesNotMatch",
    "Level",
    "Model",
    "Query",
    "attribute_level",
    "model_for",
    "parse_identifier",
]

_QUERY_RETRIEVE_LEVEL = 0x00080052


class Level(enum.IntEnum):
    """Query/Retrieve Level (0008,0052) values, ordered from the top of the hierarchy."""

    PATIENT = 0
    STUDY = 1
    SERIES = 2
    IMAGE = 3


class IdentifierDoesNotMatch(DicomServiceError):
    """0xA900 Identifier Does Not Match SOP Class (PS3.4 Table C.4-1)."""

    status = Status.DATASET_DOES_NOT_MATCH_SOP_CLASS


@dataclass(frozen=True)
class Model:
    """One Query/Retrieve Information Model (PS3.4 C.6.1, C.6.2, C.6.3)."""

    name: str
    find: str
    move: str
    get: str
    levels: tuple[Level, ...]

    @property
    def sop_class_uids(self) -> tuple[str, str, str]:
        """The FIND, MOVE and GET SOP Class UIDs."""
        return (self.find, self.move, self.get)


_ALL = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)
_BASE = "1.2.840.10008.5.1.4.1.2"
PATIENT_ROOT = Model("Patient Root", f"{_BASE}.1.1", f"{_BASE}.1.2", f"{_BASE}.1.3", _ALL)
STUDY_ROOT = Model("Study Root", f"{_BASE}.2.1", f"{_BASE}.2.2", f"{_BASE}.2.3", _ALL[1:])
PATIENT_STUDY_ONLY = Model(
    "Patient/Study Only", f"{_BASE}.3.1", f"{_BASE}.3.2", f"{_BASE}.3.3", _ALL[:2]
)
MODELS = (PATIENT_ROOT, STUDY_ROOT, PATIENT_STUDY_ONLY)
_BY_UID = {uid: model for model in MODELS for uid in model.sop_class_uids}

#: The unique key of each level (PS3.4 C.6.1.1).
UNIQUE_KEYS: dict[Level, int] = {
    Level.PATIENT: 0x00100020,  # PatientID
    Level.STUDY: 0x0020000D,  # StudyInstanceUID
    Level.SERIES: 0x0020000E,  # SeriesInstanceUID
    Level.IMAGE: 0x00080018,  # SOPInstanceUID
}

# The level each attribute the tables of PS3.4 C.6.1.1.2-C.6.1.1.5 name belongs to in
# Patient Root.  Attributes not listed (anything else held in an instance header) are
# accepted at every level and matched against a representative instance.
_P, _ST, _SE, _I = _ALL
_LEVELS: dict[int, Level] = {
    0x00100010: _P, 0x00100020: _P, 0x00100021: _P, 0x00100030: _P, 0x00100032: _P,
    0x00100040: _P, 0x00101000: _P, 0x00101001: _P, 0x00102160: _P, 0x00104000: _P,
    0x00201200: _P, 0x00201202: _P, 0x00201204: _P,
    0x00080020: _ST, 0x00080030: _ST, 0x00080050: _ST, 0x00080061: _ST, 0x00080062: _ST,
    0x00080090: _ST, 0x00081030: _ST, 0x00081060: _ST, 0x00081080: _ST, 0x00101010: _ST,
    0x00101020: _ST, 0x00101030: _ST, 0x00102180: _ST, 0x001021B0: _ST, 0x0020000D: _ST,
    0x00200010: _ST, 0x00201070: _ST, 0x00201206: _ST, 0x00201208: _ST,
    0x00080021: _SE, 0x00080031: _SE, 0x00080060: _SE, 0x0008103E: _SE, 0x00180015: _SE,
    0x0020000E: _SE, 0x00200011: _SE, 0x00201209: _SE, 0x00400244: _SE, 0x00400245: _SE,
    0x00080016: _I, 0x00080018: _I, 0x00200013: _I,
}  # fmt: skip


def attribute_level(tag: int, model: Model) -> Level | None:
    """The level ``tag`` belongs to in ``model`` (``None``: any level, header attribute).

    In Study Root the patient attributes are study attributes (PS3.4 C.6.2.1.2).
    """
    level = _LEVELS.get(tag)
    if level is Level.PATIENT and Level.PATIENT not in model.levels:
        return Level.STUDY
    return level


def model_for(sop_class_uid: str) -> Model | None:
    """The model one of whose FIND/MOVE/GET SOP classes is ``sop_class_uid``."""
    return _BY_UID.get(sop_class_uid)


@dataclass(frozen=True)
class Query:
    """A checked request Identifier."""

    model: Model
    level: Level
    identifier: Dataset
    """The keys to match and return, Query/Retrieve Level included; without Specific
    Character Set and without the dropped below-level universal keys."""
    character_set: str = ""
    """The request's Specific Character Set (its values are already decoded text)."""
    combined_datetime: bool = False
    """Extended Negotiation of combined date and time matching succeeded (C.2.2.2.5.4)."""
    retrieve_ae_title: str = ""
    """Filled into Retrieve AE Title (0008,0054) when requested."""
    unique: dict[Level, str] = field(default_factory=dict)
    """Single unique key values given for the query level and the levels above."""


def _name(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _level(ds: Dataset, model: Model) -> Level:
    if _QUERY_RETRIEVE_LEVEL not in ds:
        raise IdentifierDoesNotMatch("QueryRetrieveLevel (0008,0052) missing")
    text = str(ds[_QUERY_RETRIEVE_LEVEL].value or "").strip()
    try:
        level = Level[text]
    except KeyError:
        raise IdentifierDoesNotMatch(f"Invalid QueryRetrieveLevel '{text}'") from None
    if level not in model.levels:
        raise IdentifierDoesNotMatch(f"{model.name} has no {text} level")
    return level


def _single_value(elem: DataElement) -> str | None:
    """The key's value when it is one value without wild cards, else ``None``."""
    value = elem.value
    if value is None or elem.VR == "SQ" or isinstance(value, MultiValue | list | tuple):
        return None
    text = str(value).strip(" \x00")
    if not text or "\\" in text or (elem.VR != "UI" and ("*" in text or "?" in text)):
        return None
    return text


def _keep(elem: DataElement, level: Level, model: Model, *, retrieve: bool) -> bool:
    """Whether a key stays in the query; raises for the keys the hierarchy forbids."""
    belongs = attribute_level(elem.tag, model)
    if belongs is None or belongs == level:
        return True
    universal = is_universal(elem)
    if belongs > level:
        if universal:
            return False
        raise IdentifierDoesNotMatch(
            f"{_name(elem.tag)} is a {belongs.name} key, below {level.name}"
        )
    if not retrieve and not universal and UNIQUE_KEYS[belongs] != elem.tag:
        raise IdentifierDoesNotMatch(f"Relational query not supported: {_name(elem.tag)}")
    return True


def _character_set(ds: Dataset) -> str:
    if 0x00080005 not in ds:
        return ""
    value = ds[0x00080005].value
    if isinstance(value, list | tuple):
        return "\\".join(str(term) for term in value)
    return str(value or "")


def parse_identifier(
    ds: Dataset,
    model: Model,
    *,
    retrieve: bool = False,
    combined_datetime: bool = False,
    retrieve_ae_title: str = "",
) -> Query:
    """Check a C-FIND (or, ``retrieve=True``, C-MOVE/C-GET) Identifier; build the Query.

    Raises
    ------
    IdentifierDoesNotMatch
        0xA900: Query/Retrieve Level missing, invalid or not in ``model``; a matching key
        below the query level; a relational query (a non-unique matching key above the
        query level, or a missing unique key above it, PS3.4 C.4.1.2.1); a retrieve
        Identifier without any non-universal key (it would select everything).
    CannotUnderstand
        0xC000: the Identifier's values cannot be decoded.
    """
    try:
        level = _level(ds, model)
        keys = Dataset()
        unique: dict[Level, str] = {}
        for elem in ds:
            if elem.tag in IGNORED_TAGS or elem.tag >> 16 in (0x0000, 0x0002):
                if elem.tag == _QUERY_RETRIEVE_LEVEL:
                    keys.add(elem)
                continue
            if not _keep(elem, level, model, retrieve=retrieve):
                continue
            keys.add(elem)
            belongs = attribute_level(elem.tag, model)
            if belongs is not None and elem.tag == UNIQUE_KEYS[belongs]:
                value = _single_value(elem)
                if value is not None:
                    unique[belongs] = value
        charset = _character_set(ds)
    except DicomServiceError:
        raise
    except Exception as exc:  # pydicom converts lazily: a malformed value lands here
        raise CannotUnderstand(f"Cannot decode Identifier: {exc}") from exc
    if not retrieve:
        for above in model.levels[: model.levels.index(level)]:
            if above not in unique:
                raise IdentifierDoesNotMatch(
                    f"Hierarchical query needs one {_name(UNIQUE_KEYS[above])}"
                )
    elif all(is_universal(elem) for elem in keys if elem.tag != _QUERY_RETRIEVE_LEVEL):
        raise IdentifierDoesNotMatch(f"Retrieve needs {_name(UNIQUE_KEYS[level])}")
    return Query(
        model=model,
        level=level,
        identifier=keys,
        character_set=charset,
        combined_datetime=combined_datetime,
        retrieve_ae_title=retrieve_ae_title,
        unique=unique,
    )
