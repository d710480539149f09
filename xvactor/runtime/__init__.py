"""The generic actor runtime: messages, actors, refs, supervisors and thread bridges.

Nothing here knows about DICOM.  See ``shared/design/style.md`` for the conventions:
Erlang/OTP supervision vocabulary, bounded mailboxes with backpressure, pykka's ask/tell
failure rules, Thespian's poison-message rule.
"""

from xvactor.runtime.actor import Actor, ActorExit
from xvactor.runtime.clock import Clock, MonotonicClock
from xvactor.runtime.errors import (
    ActorDead,
    ActorError,
    AskTimeout,
    MailboxFull,
    RestartIntensityExceeded,
    UnexpectedReply,
)
from xvactor.runtime.messages import Message
from xvactor.runtime.policy import ChildSpec, Restart, Strategy, SupervisorSpec
from xvactor.runtime.ref import ActorRef
from xvactor.runtime.supervisor import Supervisor
from xvactor.runtime.threads import Limiters, LoopBridge, run_blocking

__all__ = [
    "Actor",
    "ActorDead",
    "ActorError",
    "ActorExit",
    "ActorRef",
    "AskTimeout",
    "ChildSpec",
    "Clock",
    "Limiters",
    "LoopBridge",
    "MailboxFull",
    "Message",
    "MonotonicClock",
    "Restart",
    "RestartIntensityExceeded",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "UnexpectedReply",
    "run_blocking",
]
