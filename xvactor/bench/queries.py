"""The C-FIND mix of ``xvactor bench find``: Identifiers encoded once, sent in turn.

Each query is a list of ``-k`` keys (``Keyword[=value]``, the syntax of ``xvactor find``
and DCMTK's ``findscu``), joined with ``;`` on the command line.  Without ``--query`` the
mix is :data:`DEFAULT_MIX`: three Study level queries (every study, a Patient ID wild card,
a Study Date range; PS3.4 C.2.2.2 matching types: universal, wild card, range).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset

from xvactor.bench.worker import Query
from xvactor.client.keys import QueryKeyError, parse_keys

__all__ = ["DEFAULT_MIX", "FIND_SOP_CLASSES", "build_queries", "split_query"]

FIND_SOP_CLASSES = {
    "patient": "1.2.840.10008.5.1.4.1.2.1.1",
    "study": "1.2.840.10008.5.1.4.1.2.2.1",
}
"""Patient Root and Study Root Query/Retrieve Information Model - FIND (PS3.4 C.6)."""

_RETURN_KEYS = ("StudyInstanceUID", "PatientName", "PatientID", "StudyDate", "AccessionNumber")

DEFAULT_MIX: tuple[tuple[str, ...], ...] = (
    ("QueryRetrieveLevel=STUDY", *_RETURN_KEYS),
    ("QueryRetrieveLevel=STUDY", "PatientID=XV*", *_RETURN_KEYS[:1], *_RETURN_KEYS[2:]),
    ("QueryRetrieveLevel=STUDY", "StudyDate=20000101-20991231", *_RETURN_KEYS[:3]),
)


def split_query(text: str) -> tuple[str, ...]:
    """``"QueryRetrieveLevel=STUDY;PatientID=XV*"`` -> its keys."""
    return tuple(key.strip() for key in text.split(";") if key.strip())


def _encode(keys: Sequence[str], implicit: bool) -> bytes:
    ds = parse_keys(keys)
    buffer = DicomBytesIO()
    buffer.is_little_endian = True
    buffer.is_implicit_VR = implicit
    write_dataset(buffer, ds)
    return buffer.getvalue()


def build_queries(mix: Sequence[Sequence[str]], model: str = "study") -> list[Query]:
    """Encode each query of ``mix`` in Implicit and Explicit VR Little Endian.

    Raises
    ------
    ValueError
        For an unknown model, a bad key, or a query without QueryRetrieveLevel.
    """
    if model not in FIND_SOP_CLASSES:
        raise ValueError(f"unknown information model {model!r} (patient or study)")
    queries = []
    for keys in mix:
        if not any(key.split("=")[0] == "QueryRetrieveLevel" for key in keys):
            raise ValueError(f"query {';'.join(keys)!r} has no QueryRetrieveLevel=...")
        try:
            implicit, explicit = _encode(keys, True), _encode(keys, False)
        except QueryKeyError as exc:
            raise ValueError(str(exc)) from None
        queries.append(Query(FIND_SOP_CLASSES[model], implicit, explicit, label=";".join(keys)))
    return queries
