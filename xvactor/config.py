"""Node configuration: TOML decoded by msgspec into frozen structs.

The shape follows the spirit of PS3.15 Annex H (a device with network AEs, the connections
they listen on, and the remote AEs they talk to), flattened so a small node stays a small
file.  Unknown or misspelt keys are errors that name their path (``listeners[0].prot``),
so a typo never silently falls back to a default.

The key names ``[[listeners]]`` (``host``, ``port``) and ``[[destinations]]`` (``name``,
``ae_title``, ``host``, ``port``) are stable from release to release.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec

from xvactor.transcode.options import OutputEncoding

__all__ = [
    "DEFAULT_IMPLEMENTATION_CLASS_UID",
    "Client",
    "ConfigError",
    "Destination",
    "DuplicatePolicy",
    "Listener",
    "Mailboxes",
    "NodeConfig",
    "Overrides",
    "Query",
    "QueueKind",
    "Reactor",
    "Sender",
    "Service",
    "Timeouts",
    "Tls",
    "load_config",
]

DEFAULT_IMPLEMENTATION_CLASS_UID = "1.2.840.114384"
INLINE_MAX_KB = 64
"""The most ``inline_max_kb`` may be: the receive path keeps a file's first 64 KiB."""
_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 6.2: AE, no backslash
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message is one line, ready for the user."""


class Reactor(enum.StrEnum):
    """How inbound associations wait for network and DIMSE events.

    ``event-driven`` (default) blocks on the socket and on events (``xvactor.dicom.reactor``);
    ``pynetdicom`` keeps pynetdicom's own polling loops (1 ms sleeps), a fallback should a
    pynetdicom release change the internals the event-driven loops rely on.
    """

    EVENT_DRIVEN = "event-driven"
    PYNETDICOM = "pynetdicom"


class DuplicatePolicy(enum.StrEnum):
    """What to do when a SOP Instance UID that is already stored is received again.

    ``keep_first`` (default, like Orthanc): keep the stored copy and answer Success, because
    the usual cause is a sender retrying after a lost response.  ``overwrite``: replace the
    stored copy.  ``reject``: answer 0x0111 (Duplicate SOP Instance) with an ErrorComment.
    """

    KEEP_FIRST = "keep_first"
    OVERWRITE = "overwrite"
    REJECT = "reject"


class _Struct(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Service(enum.StrEnum):
    """What an accepted client may ask for (the permissions of the conformance target)."""

    ECHO = "echo"
    STORE = "store"
    QUERY = "query"
    """Q/R FIND and Modality Worklist FIND."""
    RETRIEVE = "retrieve"
    """Q/R MOVE and GET."""
    COMMITMENT = "commitment"
    PRINT = "print"


class Tls(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """TLS for a listener (server side) or a destination (client side); paths to PEM files."""

    cert: str
    key: str
    ca: str = ""
    """CA bundle to verify the peer's certificate with."""
    require_client_cert: bool = False
    """Listener only: refuse peers without a certificate signed by ``ca``."""
    min_version: str = "1.2"
    """Lowest TLS version accepted: "1.2" or "1.3"."""


class Listener(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One listen address (a PS3.15 Annex H network connection)."""

    host: str = "0.0.0.0"  # noqa: S104 - a DICOM node listens on all interfaces by default
    port: int = 11112
    tls: Tls | None = None


class Client(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """An accepted client: anonymous (neither key), address only, AE only, or definitive."""

    name: str
    ae_title: str | None = None
    address: str | None = None
    """An IP address or a CIDR network."""
    allow: tuple[Service, ...] = (Service.ECHO, Service.STORE)
    anonymize: bool | None = None
    """De-identify what this client sends; ``None`` follows the node's ``anonymize``."""


class Destination(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """A remote AE: move destination, forwarding target, or client peer."""

    name: str
    ae_title: str
    host: str
    port: int
    tls: Tls | None = None
    local_ae_title: str | None = None
    """Our calling AE title towards this destination (``None``: the node's ``ae_title``)."""
    local_port: int = 0
    """Port of our own Storage SCP while we C-MOVE from this peer (0: any free port)."""
    output: OutputEncoding | None = None
    """How instances are encoded for this destination (transfer syntax, byte order, VR,
    group lengths, length encoding, empty elements); ``None`` sends them as stored."""


class QueueKind(enum.StrEnum):
    """Where a sender keeps the requests it has accepted."""

    DURABLE = "durable"
    """SQLite in the data directory: accepted requests survive a crash or restart."""
    MEMORY = "memory"
    """In memory only, for embedders who keep their own records."""


class Sender(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How the per-destination senders queue, reuse associations and retry."""

    queue: QueueKind = QueueKind.DURABLE
    mailbox: int = 256
    """Bounded mailbox of each sender actor."""
    idle_release: float = 5.0
    """Seconds an association with nothing to send stays open for the next request."""
    retry_initial: float = 1.0
    """First delay after a transport failure or 0xA7xx; doubles up to ``retry_max``."""
    retry_max: float = 300.0
    retry_limit: int = 20
    """Attempts before an item is marked failed (it can be re-queued)."""


class Query(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Q/R and worklist C-FIND options (PS3.4 C.2.2.2)."""

    max_results: int = 0
    """Cut a C-FIND after this many matches with a failure status and an ErrorComment
    saying so (0: no limit)."""
    case_insensitive_names: bool = False
    """PN matching ignores case (off by default, as PS3.4 C.2.2.2.1 says)."""


class Timeouts(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """One timeout per phase, in seconds (as dcm4che-net names them)."""

    connect: float = 10.0
    acse: float = 30.0
    dimse: float = 60.0
    idle: float = 60.0
    store: float = 120.0
    """How long an inbound C-STORE may wait for the node (mailbox space and commit)."""
    shutdown: float = 30.0
    """How long SIGTERM waits for in-flight C-STOREs before aborting them."""


class Mailboxes(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Bounded mailbox sizes per actor."""

    storage: int = 64
    """The storage actor's mailbox (instances waiting to be de-identified)."""
    catalog: int = 256
    """The catalog actor's mailbox, and the catalog writer thread's queue."""


class NodeConfig(_Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """The whole node: its AE, where it listens, where it keeps data, and its limits."""

    ae_title: str = "XVACTOR"
    data_dir: str = "./xvactor-data"
    listeners: tuple[Listener, ...] = (Listener(),)
    destinations: tuple[Destination, ...] = ()
    clients: tuple[Client, ...] = (Client(name="anonymous"),)
    """Accepted clients.  The default: anyone may echo and store, as established archives
    do; query and retrieve need a definition."""
    anonymize: bool = False
    """De-identify received instances (PS3.15 Basic Profile) before they touch the disk.
    The mappings are keyed by a secret kept in ``<data_dir>/.deidentification-secret``."""
    check_called_ae_title: bool = True
    """Reject associations whose called AE title is not ours (false: accept any)."""
    max_pdu: int = 262144
    implementation_class_uid: str = DEFAULT_IMPLEMENTATION_CLASS_UID
    implementation_version_name: str = "XVACTOR_010"
    max_associations: int = 32
    reactor: Reactor = Reactor.EVENT_DRIVEN
    receive_processes: int = 2
    """Worker processes that receive associations (they share the data directory and the
    catalog; the node's process accepts each connection and hands it to the worker with
    the fewest associations); 0 receives in the node's own process.  pynetdicom is
    CPU-bound under its GIL, so on several cores concurrent associations pay off only
    across processes."""
    duplicate_policy: DuplicatePolicy = DuplicatePolicy.KEEP_FIRST
    min_free_disk_mb: int = 256
    inline_max_kb: int = 64
    """Received objects up to this size (at most 64) are put at their names but made
    durable by the catalog's commit, with their rows, and fsynced there just after
    (``xvactor.storage.pending``): one flush per commit instead of three per object.
    0: every object is fsynced at its name before its row commits."""
    direct_io: bool = True
    """Write received objects of 256 KiB and more with ``O_DIRECT`` (around the page
    cache; ``xvactor.dicom.spoolfile``).  False: through the page cache, as DCMTK does."""
    timeouts: Timeouts = Timeouts()
    mailboxes: Mailboxes = Mailboxes()
    sender: Sender = Sender()
    query: Query = Query()
    log_level: str = "INFO"

    @property
    def data_path(self) -> Path:
        """The data directory as a path."""
        return Path(self.data_dir)


@dataclass(frozen=True)
class Overrides:
    """Command-line flags that override the file (``None`` keeps the file's value)."""

    port: int | None = None
    ae_title: str | None = None
    data_dir: str | None = None


def _default_text() -> str:
    return resources.files("xvactor").joinpath("default.toml").read_text(encoding="utf-8")


def _format_path(path: str) -> str:
    """Turn msgspec's ``$.listeners[0]`` into ``listeners[0]``."""
    path = path.removeprefix("$")
    return path.removeprefix(".")


def _explain(error: msgspec.ValidationError) -> str:
    message = str(error)
    unknown = re.match(r"Object contains unknown field `([^`]+)`(?: - at `([^`]+)`)?", message)
    if unknown:
        where = _format_path(unknown.group(2) or "")
        key = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
        return f"{key}: unknown key"
    located = re.match(r"(.*) - at `([^`]+)`$", message)
    if located:
        return f"{_format_path(located.group(2))}: {located.group(1)}"
    return message


def _check_clients(config: NodeConfig) -> list[str]:
    problems: list[str] = []
    names: set[str] = set()
    for index, client in enumerate(config.clients):
        where = f"clients[{index}]"
        if client.name in names:
            problems.append(f"{where}.name: {client.name!r} is used twice")
        names.add(client.name)
        if client.ae_title is not None and not _AE_TITLE.match(client.ae_title):
            problems.append(f"{where}.ae_title: not a valid AE title")
        if client.address is not None:
            try:
                ipaddress.ip_network(client.address, strict=False)
            except ValueError:
                problems.append(f"{where}.address: {client.address!r} is not an IP or network")
    return problems


def _check_tls(config: NodeConfig) -> list[str]:
    problems: list[str] = []
    for where, tls in [
        *((f"listeners[{i}].tls", item.tls) for i, item in enumerate(config.listeners)),
        *((f"destinations[{i}].tls", item.tls) for i, item in enumerate(config.destinations)),
    ]:
        if tls is not None and tls.min_version not in ("1.2", "1.3"):
            problems.append(f'{where}.min_version: must be "1.2" or "1.3"')
        if tls is not None and tls.require_client_cert and not tls.ca:
            problems.append(f"{where}.ca: needed to verify client certificates")
    return problems


def _check_sender(sender: Sender) -> list[str]:
    problems: list[str] = []
    if sender.mailbox < 1:
        problems.append("sender.mailbox: must be at least 1")
    if sender.idle_release < 0:
        problems.append("sender.idle_release: must not be negative")
    if not 0 < sender.retry_initial <= sender.retry_max:
        problems.append("sender.retry_initial: must be positive and at most retry_max")
    if sender.retry_limit < 1:
        problems.append("sender.retry_limit: must be at least 1")
    return problems


def _check(config: NodeConfig) -> None:
    """Semantic checks msgspec's types cannot express."""
    problems: list[str] = []
    if not _AE_TITLE.match(config.ae_title) or not config.ae_title.strip():
        problems.append(f"ae_title: {config.ae_title!r} is not a valid AE title (1-16 chars)")
    if not _UID.match(config.implementation_class_uid) or len(config.implementation_class_uid) > 64:
        problems.append("implementation_class_uid: not a valid UID")
    if not 1 <= len(config.implementation_version_name) <= 16:
        problems.append("implementation_version_name: must be 1-16 characters")
    if not config.listeners:
        problems.append("listeners: at least one listener is needed")
    for index, listener in enumerate(config.listeners):
        if not 0 <= listener.port <= 65535:
            problems.append(f"listeners[{index}].port: {listener.port} is not a TCP port")
    names: set[str] = set()
    for index, destination in enumerate(config.destinations):
        if destination.name in names:
            problems.append(f"destinations[{index}].name: {destination.name!r} is used twice")
        names.add(destination.name)
        if not _AE_TITLE.match(destination.ae_title):
            problems.append(f"destinations[{index}].ae_title: not a valid AE title")
        if not 1 <= destination.port <= 65535:
            problems.append(f"destinations[{index}].port: {destination.port} is not a TCP port")
        if destination.local_ae_title is not None and not _AE_TITLE.match(
            destination.local_ae_title
        ):
            problems.append(f"destinations[{index}].local_ae_title: not a valid AE title")
        if not 0 <= destination.local_port <= 65535:
            problems.append(f"destinations[{index}].local_port: not a TCP port")
    problems += _check_clients(config) + _check_tls(config)
    if config.max_pdu != 0 and not 4096 <= config.max_pdu <= 2**32 - 1:
        problems.append("max_pdu: must be 0 (unlimited) or 4096..4294967295")
    if config.max_associations < 1:
        problems.append("max_associations: must be at least 1")
    if not 0 <= config.receive_processes <= 64:
        problems.append("receive_processes: must be 0..64")
    if config.min_free_disk_mb < 0:
        problems.append("min_free_disk_mb: must not be negative")
    if not 0 <= config.inline_max_kb <= INLINE_MAX_KB:
        problems.append(f"inline_max_kb: must be 0 to {INLINE_MAX_KB}")
    for key in ("storage", "catalog"):
        if getattr(config.mailboxes, key) < 1:
            problems.append(f"mailboxes.{key}: must be at least 1")
    problems += _check_sender(config.sender)
    if config.query.max_results < 0:
        problems.append("query.max_results: must not be negative")
    for key in ("connect", "acse", "dimse", "idle", "store", "shutdown"):
        if getattr(config.timeouts, key) <= 0:
            problems.append(f"timeouts.{key}: must be positive")
    if problems:
        raise ConfigError("; ".join(problems))


def _apply(config: NodeConfig, overrides: Overrides) -> NodeConfig:
    changes: dict[str, Any] = {}
    if overrides.ae_title is not None:
        changes["ae_title"] = overrides.ae_title
    if overrides.data_dir is not None:
        changes["data_dir"] = overrides.data_dir
    if overrides.port is not None:
        # --port moves the first listener; further listeners keep their own ports.
        first, *rest = config.listeners or (Listener(),)
        changes["listeners"] = (msgspec.structs.replace(first, port=overrides.port), *rest)
    return msgspec.structs.replace(config, **changes) if changes else config


def load_config(path: Path | None = None, overrides: Overrides | None = None) -> NodeConfig:
    """Load a configuration file (or the embedded default) and apply the CLI overrides.

    Raises
    ------
    ConfigError
        With a one-line message naming the offending key path.
    """
    if path is None:
        text = _default_text()
        source = "embedded default"
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
        source = str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML ({exc})") from None
    try:
        config = msgspec.convert(raw, type=NodeConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_explain(exc)}") from None
    config = _apply(config, overrides or Overrides())
    try:
        _check(config)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config
