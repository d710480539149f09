"""Output encoding options: what a destination, the retrieve path or the CLI asks for.

:class:`OutputEncoding` is a frozen msgspec Struct, so the configuration embeds it as a
destination's ``output`` table (``forbid_unknown_fields``: a misspelt key is an error).
"""

from __future__ import annotations

import msgspec
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from xvactor.transcode.errors import TranscodeError
from xvactor.transcode.syntaxes import is_native, resolve

__all__ = ["OutputEncoding"]


class OutputEncoding(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """How to encode a dataset on output (conformance target, destination options).

    Attributes
    ----------
    transfer_syntax : str
        Target transfer syntax, a UID or a short name (see
        :func:`xvactor.transcode.syntaxes.resolve`); empty keeps the source's.
    explicit_vr : bool or None
        For uncompressed output: ``False`` asks for Implicit VR Little Endian, ``True`` for
        explicit VR; ``None`` (default) follows `transfer_syntax`. Compressed syntaxes are
        always Explicit VR Little Endian (PS3.5 Section A.4).
    big_endian : bool
        Explicit VR Big Endian for uncompressed output (PS3.5 Section A.3).
    group_lengths : bool
        Write a Group Length (gggg,0000) element for every group of the dataset and its
        items (PS3.5 Section 7.2); by default none are written (they are retired).
    undefined_lengths : bool
        Write sequences and items with undefined length and delimiters (PS3.5 Section
        7.5.1); by default with explicit lengths.
    drop_empty : bool
        Leave out elements with an empty value (zero length), at every level.
    quality : int or None
        1-100 for lossy targets. JPEG Baseline: the IJG quality factor (default 90).
        JPEG 2000: the target peak signal-to-noise ratio in dB, relative to the largest
        value Bits Stored can hold (OpenJPEG's distortion target; default 50).
    """

    transfer_syntax: str = ""
    explicit_vr: bool | None = None
    big_endian: bool = False
    group_lengths: bool = False
    undefined_lengths: bool = False
    drop_empty: bool = False
    quality: int | None = None

    def __post_init__(self) -> None:
        """Check the options against each other; raise :class:`TranscodeError` if not valid."""
        target = resolve(self.transfer_syntax) if self.transfer_syntax else None
        if self.quality is not None and not 1 <= self.quality <= 100:
            msg = f"quality must be 1-100, not {self.quality}"
            raise TranscodeError(msg)
        if self.big_endian and self.explicit_vr is False:
            msg = "big endian needs explicit VR: there is no Implicit VR Big Endian syntax"
            raise TranscodeError(msg)
        forced = self.big_endian or self.explicit_vr is False
        if target is not None and forced and not is_native(target):
            form = "big endian" if self.big_endian else "implicit VR"
            msg = f"{target.name} is always Explicit VR Little Endian: {form} does not apply"
            raise TranscodeError(msg)

    def target_for(self, source: str) -> UID:
        """Return the transfer syntax to write, given the source's.

        Parameters
        ----------
        source : str
            The Transfer Syntax UID the dataset has now.

        Returns
        -------
        pydicom.uid.UID
            `transfer_syntax` (or `source` if it is empty), turned into Explicit VR Big
            Endian by `big_endian` or into Implicit VR Little Endian by ``explicit_vr=False``;
            Implicit VR becomes Explicit VR Little Endian with ``explicit_vr=True``.
        """
        target = resolve(self.transfer_syntax) if self.transfer_syntax else UID(source)
        if self.big_endian:
            return ExplicitVRBigEndian
        if self.explicit_vr is False:
            return ImplicitVRLittleEndian
        if self.explicit_vr and target == ImplicitVRLittleEndian:
            return ExplicitVRLittleEndian
        return target
