"""The ``xvactor`` command.

Errors reach the user as one line on stderr and a non-zero exit status, never a traceback:
exit 1 for an operation that failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xvactor import cli_bench, cli_convert, cli_query, cli_store, cli_worklist

if TYPE_CHECKING:
    from xvactor.dicom.scu import Peer

__all__ = ["main"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xvactor", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    serve = verbs.add_parser("serve", help="run the Data Manager node")
    serve.add_argument("--config", type=Path, help="TOML file (default: embedded default)")
    serve.add_argument("--port", type=int, help="listen port (overrides the first listener)")
    serve.add_argument("--aet", help="our AE title")
    serve.add_argument("--data-dir", help="data directory")
    serve.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")

    echo = verbs.add_parser("echo", help="C-ECHO a peer (like DCMTK's echoscu)")
    echo.add_argument("peer", nargs="?", help="host name or address")
    echo.add_argument("port", nargs="?", type=int)
    echo.add_argument("--aet", help="our (calling) AE title (default XVACTOR)")
    echo.add_argument("--aec", help="the peer's (called) AE title (default ANY-SCP)")
    echo.add_argument("--to", metavar="NAME", help="a destination of --config instead of PEER")
    echo.add_argument("--config", type=Path, help="configuration (TOML) naming destinations")
    echo.add_argument("--timeout", type=float, default=10.0, help="seconds per phase")

    cli_store.add_parser(verbs)
    cli_query.add_parsers(verbs)
    worklist = cli_worklist.add_parser(verbs)
    cli_query.add_worklist_query(worklist)
    cli_convert.add_parser(verbs)
    cli_bench.add_parser(verbs)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import anyio  # noqa: PLC0415 - keep `xvactor --help` fast

    from xvactor.config import ConfigError, Overrides, load_config  # noqa: PLC0415
    from xvactor.node import run_node, tune_receiving_process  # noqa: PLC0415

    try:
        config = load_config(
            args.config, Overrides(port=args.port, ae_title=args.aet, data_dir=args.data_dir)
        )
    except ConfigError as exc:
        print(f"xvactor: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=(args.log_level or config.log_level).upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    tune_receiving_process()
    try:
        anyio.run(run_node, config)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"xvactor: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # the last boundary before the user: one line, no traceback
        logging.getLogger("xvactor").debug("fatal", exc_info=True)
        print(f"xvactor: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


def _one_line(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        return f"cannot start: {exc.strerror or exc}{where}"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


def _echo_peer(args: argparse.Namespace) -> Peer:
    """Where to echo: PEER PORT with --aet/--aec, or a named destination (--to)."""
    from xvactor.config import load_config  # noqa: PLC0415
    from xvactor.dicom.scu import Peer  # noqa: PLC0415

    if args.to is None:
        if args.peer is None or args.port is None:
            raise ValueError("give PEER PORT, or --to NAME with --config FILE")
        return Peer(
            host=args.peer,
            port=args.port,
            called_ae_title=args.aec or "ANY-SCP",
            calling_ae_title=args.aet or "XVACTOR",
            connect_timeout=args.timeout,
            acse_timeout=args.timeout,
            dimse_timeout=args.timeout,
        )
    if args.peer is not None:
        raise ValueError("give either PEER PORT or --to NAME, not both")
    config = load_config(args.config)
    destination = next((d for d in config.destinations if d.name == args.to), None)
    if destination is None:
        names = ", ".join(d.name for d in config.destinations) or "none"
        raise ValueError(f"no destination named {args.to!r} (configured: {names})")
    peer = Peer.for_destination(destination, config, calling_ae_title=args.aet or "")
    return dataclasses.replace(
        peer,
        called_ae_title=args.aec or peer.called_ae_title,
        calling_ae_title=args.aet or peer.calling_ae_title,
        connect_timeout=args.timeout,
        acse_timeout=args.timeout,
        dimse_timeout=args.timeout,
    )


def _echo(args: argparse.Namespace) -> int:
    from xvactor.config import ConfigError  # noqa: PLC0415
    from xvactor.dicom.scu import AssociationFailed  # noqa: PLC0415
    from xvactor.dicom.tls import TlsConfigError  # noqa: PLC0415

    logging.basicConfig(level=logging.CRITICAL)
    try:
        peer = _echo_peer(args)
    except (ConfigError, ValueError) as exc:
        print(f"xvactor echo: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = echo_peer(peer)
    except (AssociationFailed, TlsConfigError, OSError) as exc:
        print(f"xvactor echo: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    if status == 0x0000:
        print(f"C-ECHO {peer}: success")
        return 0
    print(f"xvactor echo: {peer} answered status 0x{status:04X}", file=sys.stderr)
    return EXIT_FAILURE


def echo_peer(peer: Peer) -> int:
    """C-ECHO ``peer`` and return its status (blocking)."""
    from xvactor.dicom.qr_scu import echo  # noqa: PLC0415

    return echo(peer)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xvactor`` console script."""
    args = _parser().parse_args(argv)
    match args.verb:
        case "serve":
            return _serve(args)
        case "echo":
            return _echo(args)
        case "store":
            return cli_store.run(args)
        case "find" | "move" | "get":
            return cli_query.run(args)
        case "worklist" if args.worklist_verb == "query":
            return cli_query.run(args)
        case "worklist":
            return cli_worklist.run(args)
        case "convert":
            return cli_convert.run(args)
        case "bench":
            return cli_bench.run(args)
    return EXIT_USAGE
