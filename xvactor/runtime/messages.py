"""The one base class of every message exchanged between actors.

Messages are values: frozen, tagged :class:`msgspec.Struct` instances that round-trip
through ``msgspec.msgpack``, so a queue can later be persisted or moved across processes.
``kw_only`` is not inherited by msgspec subclasses, so each concrete message re-declares
the full set of options::

    class StoreInstance(Message, frozen=True, tag=True, kw_only=True):
        path: str
"""

from __future__ import annotations

import msgspec

__all__ = ["Message"]


class Message(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    """Base of every message.

    Subclasses re-declare ``frozen=True, tag=True, kw_only=True``.  The tag is the class
    name, so a union of messages (an actor's ``Inbox``) decodes without ambiguity.
    """
