"""De-identification with the Basic Application Level Confidentiality Profile (PS3.15 Annex E).

:class:`Deidentifier` applies the "Basic Profile" column of PS3.15 Table E.1-1 to a dataset in
place. The table itself is not written out here: it comes from the ``dicom-anonymizer``
package (Kitware, BSD-3-Clause), which generates it from the standard's own DocBook source
for each edition (:data:`PROFILE_EDITION`). Its engine is not used, because it draws UIDs at
random into a process-wide dict (no secret: not stable across restarts), applies the table
to the top-level dataset only, and empties whole reference sequences (their SOP Class UIDs
too); this module is the engine.

How each action of Table E.1-1 (PS3.15 Section E.1.1) is carried out, without knowing the
Type an attribute has in the instance's IOD:

* ``X`` removes, ``Z`` and ``X/Z`` empty (a Type 2 attribute stays present), ``D``, ``Z/D``,
  ``X/D`` and ``X/Z/D`` replace with a dummy for the VR (a Type 1 attribute stays valid);
  a sequence under ``X/D`` is removed and under a ``Z`` combination emptied.
* ``U`` replaces a UID with :meth:`Deidentifier.map_uid`: an HMAC-SHA256 of the original
  under the secret, so the same UID maps alike in every instance and after a restart, and
  references between instances hold. A UID the table does not list is mapped as well unless
  it is a registered one (a SOP Class, Transfer Syntax or coding scheme UID), so an instance
  UID of an attribute newer than the table cannot link back to the original.
* ``X/Z/U*`` keeps a reference sequence's items, whose instance UIDs the table maps.
* ``D`` on a sequence keeps its items but replaces every free-text, name, date and time
  value inside them, listed in the table or not, and maps their UIDs.
* Patient's Name and Patient ID get a keyed pseudonym (a permitted dummy for ``Z`` and
  ``D``), so the same patient stays one patient; other replaced text is keyed alike.
* Private attributes are removed at every nesting level, as the Basic Profile requires;
  sequences the table does not list are processed item by item.

Pixel data is kept: removing burned-in identification is the Clean Pixel Data Option, not
part of the Basic Profile. The result carries Patient Identity Removed (0012,0062) ``YES``
and records the profile in De-identification Method (0012,0063) and De-identification Method
Code Sequence (0012,0064), code 113100 from CID 7050.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

__all__ = [
    "BASIC_PROFILE",
    "BASIC_PROFILE_MASKED",
    "DEIDENTIFICATION_METHOD",
    "PROFILE_EDITION",
    "Action",
    "Deidentifier",
    "action_for",
]

#: The edition of PS3.15 whose Table E.1-1 ``dicom-anonymizer`` provides.
PROFILE_EDITION = "2026c"

#: What we record in De-identification Method (0012,0063), at most 64 characters (LO).
DEIDENTIFICATION_METHOD = f"PS3.15 E.1-1 Basic Profile, DICOM {PROFILE_EDITION} (xvactor)"


class Action(enum.StrEnum):
    """An action code of the Basic Profile column of PS3.15 Table E.1-1."""

    X = "X"
    Z = "Z"
    D = "D"
    U = "U"
    X_Z = "X/Z"
    X_D = "X/D"
    Z_D = "Z/D"
    X_Z_D = "X/Z/D"
    X_Z_U = "X/Z/U*"


_CATEGORIES = {
    "X_TAGS": Action.X,
    "Z_TAGS": Action.Z,
    "D_TAGS": Action.D,
    "U_TAGS": Action.U,
    "X_Z_TAGS": Action.X_Z,
    "X_D_TAGS": Action.X_D,
    "Z_D_TAGS": Action.Z_D,
    "X_Z_D_TAGS": Action.X_Z_D,
    "X_Z_U_STAR_TAGS": Action.X_Z_U,
}


def _load_table() -> tuple[dict[int, Action], tuple[tuple[int, int, Action], ...]]:
    database: Mapping[str, list[tuple[int, ...]]] = dicom_anonymization_database_selector(
        f"dicomfields_{PROFILE_EDITION}"
    )
    exact: dict[int, Action] = {}
    masked: list[tuple[int, int, Action]] = []
    for category, action in _CATEGORIES.items():
        for entry in database[category]:
            if len(entry) == 2:
                exact[(entry[0] << 16) | entry[1]] = action
            else:  # a repeating group such as Overlay Data (60xx,3000): group, element, masks
                group, element, group_mask, element_mask = entry
                mask = (group_mask << 16) | element_mask
                masked.append(((group << 16 | element) & mask, mask, action))
    return exact, tuple(masked)


#: Tag -> action, for every attribute PS3.15 Table E.1-1 lists with one tag.
#: ``BASIC_PROFILE_MASKED`` has the repeating groups as ``(value, mask, action)``.
BASIC_PROFILE, BASIC_PROFILE_MASKED = _load_table()

_TEXT_VRS = frozenset(
    {"AE", "AS", "DA", "DT", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UR", "UT"}
)
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"FD", "FL", "SL", "SS", "SV", "UL", "US", "UV"})
_FIXED_DUMMIES: dict[str, Any] = {
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "UR": "https://anonymized.invalid",
    **dict.fromkeys(_NUMBER_VRS, 0),
    **dict.fromkeys(_BINARY_VRS, b"\x00" * 8),  # a whole number of words of every width
}
_PATIENT_NAME = Tag("PatientName")
_PATIENT_ID = Tag("PatientID")
_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")  # PS3.16 CID 7050


class _Op(enum.Enum):
    """What to do with one element: the outcome of the pure :func:`_decide`."""

    KEEP = enum.auto()
    REMOVE = enum.auto()
    EMPTY = enum.auto()
    DUMMY = enum.auto()
    MAP_UID = enum.auto()
    RECURSE = enum.auto()
    RECURSE_STRICT = enum.auto()


def action_for(tag: int) -> Action | None:
    """Return the Basic Profile action for `tag`, or ``None`` if Table E.1-1 keeps it.

    Parameters
    ----------
    tag : int
        A public tag, e.g. ``0x00100010`` or ``pydicom.tag.Tag("PatientName")``.
    """
    action = BASIC_PROFILE.get(int(tag))
    if action is not None:
        return action
    return next((act for value, mask, act in BASIC_PROFILE_MASKED if tag & mask == value), None)


def _is_registered_uid(tag: BaseTag, value: str) -> bool:
    keyword = keyword_for_tag(tag)
    # UID.name is the UID itself unless pydicom's registry (PS3.6 Annex A) knows it.
    return keyword.endswith("ClassUID") or "TransferSyntax" in keyword or UID(value).name != value


def _decide(tag: BaseTag, vr: str, *, strict: bool) -> _Op:
    """Decide what PS3.15 Table E.1-1 asks for one element (`strict`: inside a ``D`` sequence)."""
    if tag.is_private:
        return _Op.REMOVE
    if tag in (_PATIENT_NAME, _PATIENT_ID):
        return _Op.DUMMY
    action = action_for(tag)
    if vr == "SQ":
        if action in (Action.X, Action.X_D):
            return _Op.REMOVE
        if action in (Action.Z, Action.X_Z, Action.Z_D, Action.X_Z_D):
            return _Op.EMPTY
        return _Op.RECURSE_STRICT if strict or action == Action.D else _Op.RECURSE
    match action:
        case None if vr == "UI":
            return _Op.MAP_UID
        case None if strict and vr in _TEXT_VRS:
            return _Op.DUMMY
        case None if strict and vr == "UN":
            return _Op.REMOVE
        case None:
            return _Op.KEEP
        case Action.X:
            return _Op.REMOVE
        case Action.Z | Action.X_Z:
            return _Op.EMPTY
        case Action.U:
            return _Op.MAP_UID
        case Action.X_Z_U:
            return _Op.MAP_UID if vr == "UI" else _Op.EMPTY
        case Action.D | Action.Z_D | Action.X_D | Action.X_Z_D:
            return _Op.DUMMY


@dataclass(frozen=True)
class Deidentifier:
    """Apply the Basic Application Level Confidentiality Profile (PS3.15 Annex E.1.1).

    Stateless apart from `secret`, so one object serves every thread, and two objects with
    the same secret, in this process or another, replace values alike.

    Parameters
    ----------
    secret : bytes
        The HMAC-SHA256 key of every consistent replacement (UIDs, patient name and ID),
        at least 16 bytes. Whoever holds it can test a guessed original against a
        replacement, so it is kept like a password.
    """

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        """Reject a secret too short to key the mappings."""
        if not isinstance(self.secret, bytes) or len(self.secret) < 16:
            msg = "the de-identification secret must be at least 16 bytes"
            raise ValueError(msg)

    def _digest(self, domain: str, value: str) -> bytes:
        message = domain.encode() + b"\x00" + value.encode("utf-8", "surrogateescape")
        return hmac.new(self.secret, message, hashlib.sha256).digest()

    def map_uid(self, uid: str) -> str:
        """Return the replacement of `uid`: the same for the same secret, always.

        The result is ``2.25.`` followed by the decimal value of a version 8 UUID (RFC 9562)
        made of an HMAC of `uid`, as PS3.5 Section B.2 allows: at most 44 characters.

        Parameters
        ----------
        uid : str
            The original UID, e.g. a Study Instance UID.

        Returns
        -------
        str
            A valid UID, different for different `uid` with overwhelming probability.
        """
        number = int.from_bytes(self._digest("uid", uid.rstrip("\x00 "))[:16], "big")
        number = (number & ~(0xF << 76)) | (0x8 << 76)  # version 8
        number = (number & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant
        return f"2.25.{number}"

    def _pseudonym(self, value: str, vr: str = "LO") -> str:
        """Return the keyed replacement of a name or an identifier `value` of `vr`.

        A Person Name becomes ``ANON^<16 hex digits>``; other text ``ANON<hex>``, 16
        characters for SH and AE, 20 otherwise.
        """
        digest = self._digest(vr if vr == "PN" else "text", value).hex().upper()
        if vr == "PN":
            return f"ANON^{digest[:16]}"
        return f"ANON{digest[: 12 if vr in ('SH', 'AE') else 16]}"

    def apply(self, ds: Dataset) -> None:
        """De-identify `ds` in place with the Basic Profile (PS3.15 Table E.1-1).

        Pixel Data, SOP Class UID and the transfer syntax are kept. If `ds` has File Meta
        Information, its Media Storage SOP Instance UID becomes the new SOP Instance UID.

        Parameters
        ----------
        ds : pydicom.dataset.Dataset
            A received instance.
        """
        self._process(ds, strict=False)
        ds.PatientIdentityRemoved = "YES"
        methods = ds.get("DeidentificationMethod") or []
        methods = [methods] if isinstance(methods, str) else list(methods)
        if DEIDENTIFICATION_METHOD not in methods:
            ds.DeidentificationMethod = [*methods, DEIDENTIFICATION_METHOD]
        codes = ds.get("DeidentificationMethodCodeSequence") or Sequence()
        if not any(item.get("CodeValue") == _CODE[0] for item in codes):
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = _CODE
            codes.append(item)
            ds.DeidentificationMethodCodeSequence = codes
        file_meta = getattr(ds, "file_meta", None)
        if file_meta is not None and "SOPInstanceUID" in ds:
            file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        elif file_meta is not None and file_meta.get("MediaStorageSOPInstanceUID"):
            file_meta.MediaStorageSOPInstanceUID = self.map_uid(
                file_meta.MediaStorageSOPInstanceUID
            )

    def _process(self, ds: Dataset, *, strict: bool) -> None:
        for tag in list(ds.keys()):
            elem = ds[tag]
            op = _decide(elem.tag, elem.VR, strict=strict)
            if op is _Op.REMOVE:
                del ds[tag]
            elif op is _Op.EMPTY:
                elem.value = [] if elem.VR == "SQ" else None
            elif op is _Op.RECURSE or op is _Op.RECURSE_STRICT:
                for item in elem.value:
                    self._process(item, strict=op is _Op.RECURSE_STRICT)
            elif op is _Op.MAP_UID or (op is _Op.DUMMY and elem.VR == "UI"):
                self._map_uids(elem, only_unregistered=action_for(elem.tag) is None)
            elif op is _Op.DUMMY:
                self._replace(elem)

    def _map_uids(self, elem: DataElement, *, only_unregistered: bool) -> None:
        def new(uid: str) -> str:
            keep = not uid or (only_unregistered and _is_registered_uid(elem.tag, uid))
            return uid if keep else self.map_uid(uid)

        if isinstance(elem.value, MultiValue):
            elem.value = [new(uid) for uid in elem.value]
        elif elem.value is not None:
            elem.value = new(elem.value)

    def _replace(self, elem: DataElement) -> None:
        """Put the dummy for its VR in place of each value of `elem` (action ``D``)."""

        def dummy(value: Any) -> Any:
            if elem.VR in _FIXED_DUMMIES:
                return _FIXED_DUMMIES[elem.VR]
            if elem.VR in _TEXT_VRS:
                return self._pseudonym(str(value), elem.VR)
            return value  # AT: a tag says nothing about the patient

        if elem.value is None or elem.value in ("", b""):
            return  # nothing to hide; an empty value stays empty (valid for Type 2)
        if isinstance(elem.value, MultiValue) and elem.VR not in _BINARY_VRS:
            elem.value = [dummy(value) for value in elem.value]
        else:
            elem.value = dummy(elem.value)
