"""The one exception of the transcoding package."""

from __future__ import annotations

__all__ = ["TranscodeError"]


class TranscodeError(ValueError):
    """A conversion that cannot be done, with a one-line reason fit for a user.

    Raised instead of ever producing a wrong image: a bit depth a codec cannot carry, a
    lossless claim on lossy pixel data, a corrupt frame, contradictory output options.
    The message is a single line; callers print it as is (the CLI) or put it in an
    ErrorComment (a C-GET/C-MOVE sub-operation).
    """
