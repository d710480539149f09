"""What the client raises: one family, each message one line ready for the user."""

from __future__ import annotations

__all__ = ["ClientError", "NoAssociation", "ServiceFailed", "UnknownDestination"]


class ClientError(Exception):
    """Base of the client's errors."""


class UnknownDestination(ClientError):
    """A destination name that the client's configuration does not define."""


class NoAssociation(ClientError):
    """No association: refused, rejected, aborted, timed out, or no acceptable context."""


class ServiceFailed(ClientError):
    """The peer answered a C-ECHO or C-FIND with a failure status (PS3.7 Annex C).

    Attributes
    ----------
    status : int
        The final DIMSE status.
    error_comment : str
        The peer's Error Comment (0000,0902), if any.
    """

    def __init__(self, message: str, *, status: int, error_comment: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.error_comment = error_comment
