"""The embedding API: an async :class:`Client` and a synchronous :class:`SyncClient`.

See README ("Embedding xvactor") for an example per verb.
"""

from xvactor.client.api import Client, FindResponses, Model
from xvactor.client.destinations import DestinationLike
from xvactor.client.errors import ClientError, NoAssociation, ServiceFailed, UnknownDestination
from xvactor.client.keys import QueryKeyError
from xvactor.client.results import (
    GetResult,
    MoveResult,
    ReceivedFile,
    RetrieveResult,
    StoreProgress,
    StoreResult,
)
from xvactor.client.sync import SyncClient
from xvactor.dicom.qr_scu import QueryOutcome

__all__ = [
    "Client",
    "ClientError",
    "DestinationLike",
    "FindResponses",
    "GetResult",
    "Model",
    "MoveResult",
    "NoAssociation",
    "QueryKeyError",
    "QueryOutcome",
    "ReceivedFile",
    "RetrieveResult",
    "ServiceFailed",
    "StoreProgress",
    "StoreResult",
    "SyncClient",
    "UnknownDestination",
]
