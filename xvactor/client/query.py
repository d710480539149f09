"""The request side of a query: models, levels, the Identifier; the match stream type.

:func:`identifier_for` checks the Query/Retrieve Level against the information model
(PS3.4 C.6) and completes the Identifier; :class:`FindResponses` is what
:meth:`xvactor.client.Client.find` returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Literal, Self

from pydicom.dataset import Dataset

from xvactor.client.keys import identifier_from
from xvactor.dicom.qr_scu import QueryModel, QueryOutcome

__all__ = ["FindResponses", "Model", "identifier_for"]

#: The information model names the verbs take.
Model = Literal["patient", "study", "patient-study", "worklist"]

_LEVELS: dict[QueryModel, tuple[str, ...]] = {
    QueryModel.PATIENT: ("PATIENT", "STUDY", "SERIES", "IMAGE"),
    QueryModel.STUDY: ("STUDY", "SERIES", "IMAGE"),
    QueryModel.PATIENT_STUDY: ("PATIENT", "STUDY"),
    QueryModel.WORKLIST: (),
}
_UNIQUE_KEY = {
    "PATIENT": "PatientID",
    "STUDY": "StudyInstanceUID",
    "SERIES": "SeriesInstanceUID",
    "IMAGE": "SOPInstanceUID",
}
_DEFAULT_LEVEL = {
    QueryModel.PATIENT: "PATIENT",
    QueryModel.STUDY: "STUDY",
    QueryModel.PATIENT_STUDY: "STUDY",
}


def identifier_for(
    keys: Dataset | Mapping[str, str],
    model: Model | QueryModel,
    level: str | None,
    *,
    find: bool = False,
) -> tuple[QueryModel, Dataset]:
    """Return the model and the request Identifier with its Query/Retrieve Level.

    The level is ``level``, else the keys' QueryRetrieveLevel, else the model's top
    level but one (STUDY; PATIENT in the Patient Root model).  The worklist takes none.
    With ``find``, the unique key of the level is added for universal matching if
    missing, as a C-FIND Identifier must hold it (PS3.4 C.2.2.1.1).

    Raises
    ------
    ValueError
        An unknown model, or a level the model does not have (PS3.4 C.6).
    """
    try:
        query_model = QueryModel(model)
    except ValueError:
        names = ", ".join(m.value for m in QueryModel)
        raise ValueError(f"unknown information model {model!r} (one of {names})") from None
    ds = identifier_from(keys)
    if query_model is QueryModel.WORKLIST:
        if level is not None:
            raise ValueError("the worklist model has no Query/Retrieve Level")
        return query_model, ds
    if level is not None:
        ds.QueryRetrieveLevel = level.upper()
    elif not ds.get("QueryRetrieveLevel"):
        ds.QueryRetrieveLevel = _DEFAULT_LEVEL[query_model]
    allowed = _LEVELS[query_model]
    if ds.QueryRetrieveLevel not in allowed:
        raise ValueError(
            f"level {ds.QueryRetrieveLevel!r} is not in the {query_model.value} model "
            f"({', '.join(allowed)})"
        )
    unique = _UNIQUE_KEY[ds.QueryRetrieveLevel]
    if find and unique not in ds:
        setattr(ds, unique, "")
    return query_model, ds


class FindResponses(AsyncIterator[Dataset]):
    """The matches of one C-FIND, as they arrive.

    Iterate with ``async for``.  Leaving the loop early cancels the C-FIND (C-CANCEL) once
    this object is closed: at once inside ``async with``, or with :meth:`aclose`, else when
    it is garbage collected.  After the end, :attr:`outcome` holds the final response.
    A failure status raises :class:`~xvactor.client.ServiceFailed` at the end of the
    iteration, a lost association :class:`~xvactor.client.NoAssociation`.
    """

    def __init__(self, agen: AsyncIterator[Dataset], box: list[QueryOutcome]) -> None:
        self._agen = agen
        self._box = box

    @property
    def outcome(self) -> QueryOutcome | None:
        """The final response (``None`` until the C-FIND has ended)."""
        return self._box[0] if self._box else None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Dataset:
        return await self._agen.__anext__()

    async def aclose(self) -> None:
        """Stop: send a C-CANCEL if the C-FIND is still running and wait for its end."""
        aclose = getattr(self._agen, "aclose", None)
        if aclose is not None:
            await aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
