"""Property: on random catalogs and queries, the resolver returns what PS3.4 says.

The oracle is :func:`xvactor.testing.naive_query.naive_find`, written from PS3.4 C.2.2.2
without SQL and without any code of :mod:`xvactor.query`.  The catalog is filled through
``write_batch`` with records whose headers are real encoded datasets, so the column path
(SQL pre-filter) and the header path (representative instance) are both exercised.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom import config
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from xvactor.catalog.sqlite import open_catalog, write_batch
from xvactor.query.model import MODELS, UNIQUE_KEYS, Level, Model, attribute_level
from xvactor.query.model import parse_identifier as parse
from xvactor.query.resolver import resolve
from xvactor.testing.naive_query import header_record, naive_find

NAMES = ["Müller^Jürgen", "Muller^Jurgen", "müller^anna^^", "Doe^John", "DOE^JANE", "Smith"]
DATES = ["20231231", "20240101", "20240115", "20240301"]
TIMES = ["08", "0800", "0830", "101530", "1230", "235959.5"]
TEXTS = ["Thorax", "Thorax pa", "Knie links", "Über", " lead", ""]
INSTITUTIONS = ["Klinik Süd", "North", "Nord Ost"]
MODALITIES = ["CT", "MR", "PT"]
BODY_PARTS = ["CHEST", "KNEE", "HEAD"]
_UID = "1.2.826.0.1.3680043.8.498."


def element(keyword: str, value: Any) -> DataElement:
    tag = tag_for_keyword(keyword)
    assert tag is not None, keyword
    return DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE)


@st.composite
def catalogs(draw: st.DrawFn) -> list[Dataset]:
    instances: list[Dataset] = []
    counter = iter(range(1, 10_000))
    for p in range(draw(st.integers(1, 3))):
        patient = {
            "PatientID": f"P{p}",
            "PatientName": draw(st.sampled_from(NAMES)),
            "PatientBirthDate": draw(st.sampled_from(DATES)),
            "PatientSex": draw(st.sampled_from(["M", "F", ""])),
        }
        for _ in range(draw(st.integers(1, 2))):
            study = {
                "StudyInstanceUID": f"{_UID}{next(counter)}",
                "StudyDate": draw(st.sampled_from(DATES)),
                "StudyTime": draw(st.sampled_from(TIMES)),
                "AccessionNumber": draw(st.sampled_from(["A1", "A2", "B 1", ""])),
                "StudyDescription": draw(st.sampled_from(TEXTS)),
                "InstitutionName": draw(st.sampled_from(INSTITUTIONS)),
            }
            for s in range(draw(st.integers(1, 2))):
                series = {
                    "SeriesInstanceUID": f"{_UID}{next(counter)}",
                    "Modality": draw(st.sampled_from(MODALITIES)),
                    "SeriesNumber": str(s + 1),
                    "SeriesDescription": draw(st.sampled_from(TEXTS)),
                    "BodyPartExamined": draw(st.sampled_from(BODY_PARTS)),
                }
                for i in range(draw(st.integers(1, 2))):
                    ds = Dataset()
                    ds.add(element("SpecificCharacterSet", "ISO_IR 100"))
                    attrs = {
                        **patient,
                        **study,
                        **series,
                        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.7",
                        "SOPInstanceUID": f"{_UID}{next(counter)}",
                        "InstanceNumber": str(i + 1),
                    }
                    for keyword, value in attrs.items():
                        ds.add(element(keyword, value))
                    instances.append(ds)
    return instances


def wild(draw: st.DrawFn, base: str) -> str:
    """``base`` as a query value: exact, a wild card form or another case."""
    form = draw(st.sampled_from(["exact", "exact", "prefix", "suffix", "one", "upper", "lower"]))
    if form == "prefix":
        return base[: draw(st.integers(0, len(base)))] + "*"
    if form == "suffix":
        return "*" + base[draw(st.integers(0, len(base))) :]
    if form == "one" and base:
        at = draw(st.integers(0, len(base) - 1))
        return base[:at] + "?" + base[at + 1 :]
    if form == "upper":
        return base.upper()
    if form == "lower":
        return base.lower()
    return base


def date_key(draw: st.DrawFn, pool: list[str]) -> str:
    lo, hi = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
    if pool is DATES:  # reduced precision bounds: a year or a month
        lo = lo[: draw(st.sampled_from([8, 8, 6, 4]))]
        hi = hi[: draw(st.sampled_from([8, 8, 6, 4]))]
    form = draw(st.sampled_from(["single", "range", "from", "to", "empty"]))
    return {"single": lo, "range": f"{lo}-{hi}", "from": f"{lo}-", "to": f"-{hi}", "empty": ""}[
        form
    ]


def key_value(draw: st.DrawFn, keyword: str, instances: list[Dataset]) -> Any:
    if keyword in ("PatientName", "StudyDescription", "SeriesDescription", "InstitutionName"):
        pool = {
            "PatientName": NAMES,
            "StudyDescription": TEXTS,
            "SeriesDescription": TEXTS,
            "InstitutionName": INSTITUTIONS,
        }[keyword]
        return wild(draw, draw(st.sampled_from(pool)))
    if keyword in ("PatientBirthDate", "StudyDate"):
        return date_key(draw, DATES)
    if keyword == "StudyTime":
        return date_key(draw, TIMES)
    if keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        uids = [*sorted({str(ds[keyword].value) for ds in instances}), f"{_UID}99999"]
        return draw(st.lists(st.sampled_from(uids), min_size=0, max_size=3, unique=True))
    if keyword in ("Modality", "ModalitiesInStudy"):
        return draw(st.sampled_from(["", "CT", "MR", "?T", "*", "US"]))
    if keyword == "BodyPartExamined":
        return wild(draw, draw(st.sampled_from(BODY_PARTS)))
    if keyword in ("SeriesNumber", "InstanceNumber"):
        return draw(st.sampled_from(["", "1", "2", "01"]))
    if keyword == "PatientSex":
        return draw(st.sampled_from(["", "M", "F", "*"]))
    if keyword == "AccessionNumber":
        return wild(draw, draw(st.sampled_from(["A1", "A2", "B 1"])))
    if keyword == "PatientID":
        return wild(draw, draw(st.sampled_from(["P0", "P1", "P2"])))
    return ""  # the counts: return keys


KEYWORDS = [
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID",
    "StudyDate", "StudyTime", "AccessionNumber", "StudyDescription", "InstitutionName",
    "ModalitiesInStudy", "NumberOfStudyRelatedInstances", "NumberOfPatientRelatedStudies",
    "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "BodyPartExamined",
    "NumberOfSeriesRelatedInstances", "SOPInstanceUID", "InstanceNumber",
]  # fmt: skip
# The count keys the naive matcher computes for each level.
_COUNTS = {
    "NumberOfPatientRelatedStudies": Level.PATIENT,
    "NumberOfStudyRelatedInstances": Level.STUDY,
    "ModalitiesInStudy": Level.STUDY,
    "NumberOfSeriesRelatedInstances": Level.SERIES,
}


def _allowed(model: Model, level: Level, identifier: Dataset) -> list[str]:
    allowed = []
    for keyword in KEYWORDS:
        tag = tag_for_keyword(keyword)
        assert tag is not None
        counted = _COUNTS.get(keyword)
        if counted is not None and counted is not level:
            continue
        if attribute_level(tag, model) in (None, level) and tag not in identifier:
            allowed.append(keyword)
    return allowed


@st.composite
def queries(
    draw: st.DrawFn, instances: list[Dataset], focus: tuple[str, ...] = ()
) -> tuple[Model, Dataset]:
    """A valid hierarchical Identifier; with ``focus``, one of those keys is always in."""
    keyword = draw(st.sampled_from(focus)) if focus else None
    model, level = draw(
        st.sampled_from(
            [
                (model, level)
                for model in MODELS
                for level in model.levels
                if keyword is None or keyword in _allowed(model, level, Dataset())
            ]
        )
    )
    identifier = Dataset()
    identifier.add(element("QueryRetrieveLevel", level.name))
    anchor = draw(st.sampled_from(instances))
    for above in model.levels[: model.levels.index(level)]:
        tag = UNIQUE_KEYS[above]
        value = str(anchor[tag].value) if draw(st.booleans()) else "NONE"
        identifier.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=config.IGNORE))
    chosen = draw(st.lists(st.sampled_from(_allowed(model, level, identifier)), max_size=4))
    if keyword is not None:
        chosen.append(keyword)
    for name in dict.fromkeys(chosen):
        identifier.add(element(name, key_value(draw, name, instances)))
    unique = UNIQUE_KEYS[level]
    if unique not in identifier:
        identifier.add(DataElement(unique, dictionary_VR(unique), ""))
    return model, identifier


def text(ds: Dataset, keyword: str) -> str:
    if keyword not in ds or ds[keyword].value is None:
        return ""
    value = ds[keyword].value
    values = list(value) if isinstance(value, MultiValue | list) else [value]
    return "\\".join(str(v) for v in values)


def check(
    instances: list[Dataset], model: Model, identifier: Dataset, case_insensitive: bool
) -> None:
    conn = open_catalog(Path(":memory:"))
    try:
        outcomes = write_batch(conn, [(header_record(ds), False) for ds in instances])
        assert not [o for o in outcomes if isinstance(o, Exception)]
        got = run(conn, model, identifier, case_insensitive)
    finally:
        conn.close()
    unique = str(keyword_for_tag(UNIQUE_KEYS[Level[str(identifier.QueryRetrieveLevel)]]))
    expected = naive_find(instances, identifier, case_insensitive_names=case_insensitive)
    want = {text(entity, unique): entity for entity in expected}
    assert sorted(text(r, unique) for r in got) == sorted(want)
    for response in got:
        entity = want[text(response, unique)]
        for elem in identifier:
            if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet"):
                continue
            assert text(response, elem.keyword) == text(entity, elem.keyword), elem.keyword


_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@settings(_SETTINGS, max_examples=200)
@given(data=st.data(), case_insensitive=st.booleans())
def test_resolver_equals_naive_matcher(data: st.DataObject, case_insensitive: bool) -> None:
    instances = data.draw(catalogs())
    check(instances, *data.draw(queries(instances)), case_insensitive)


@settings(_SETTINGS, max_examples=400)
@given(
    data=st.data(),
    focus=st.sampled_from(
        [
            ("PatientName",),
            ("StudyDescription", "SeriesDescription", "AccessionNumber"),
            ("StudyDate", "PatientBirthDate", "StudyTime"),
            ("InstitutionName", "BodyPartExamined"),
        ]
    ),
    case_insensitive=st.booleans(),
)
def test_resolver_equals_naive_matcher_on_focused_keys(
    data: st.DataObject, focus: tuple[str, ...], case_insensitive: bool
) -> None:
    """Names (case, wild cards), padded text, reduced precision ranges, header keys."""
    instances = data.draw(catalogs())
    check(instances, *data.draw(queries(instances, focus)), case_insensitive)


def run(
    conn: sqlite3.Connection, model: Model, identifier: Dataset, case_insensitive: bool
) -> list[Dataset]:
    return list(resolve(conn, parse(identifier, model), case_insensitive_names=case_insensitive))
