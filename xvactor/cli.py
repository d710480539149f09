"""The ``xvactor`` command.

Errors reach the user as one line on stderr and a non-zero exit status, never a traceback:
exit 1 for an operation that failed, 2 for a usage or configuration error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from xvactor import cli_convert, cli_query, cli_store, cli_worklist

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
    echo.add_argument("peer", help="host name or address")
    echo.add_argument("port", type=int)
    echo.add_argument("--aet", default="XVACTOR", help="our (calling) AE title")
    echo.add_argument("--aec", default="ANY-SCP", help="the peer's (called) AE title")
    echo.add_argument("--timeout", type=float, default=10.0, help="seconds per phase")

    cli_store.add_parser(verbs)
    cli_query.add_parsers(verbs)
    worklist = cli_worklist.add_parser(verbs)
    cli_query.add_worklist_query(worklist)
    cli_convert.add_parser(verbs)
    return parser


def _serve(args: argparse.Namespace) -> int:
    import anyio  # noqa: PLC0415 - keep `xvactor --help` fast

    from xvactor.config import ConfigError, Overrides, load_config  # noqa: PLC0415
    from xvactor.node import run_node  # noqa: PLC0415

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


def _echo(args: argparse.Namespace) -> int:
    from xvactor.dicom.echo import echo  # noqa: PLC0415

    logging.basicConfig(level=logging.CRITICAL)
    outcome = echo(
        args.peer,
        args.port,
        calling_ae_title=args.aet,
        called_ae_title=args.aec,
        timeout=args.timeout,
    )
    if outcome.ok:
        print(f"C-ECHO {args.aec}@{args.peer}:{args.port}: success")
        return 0
    print(f"xvactor echo: {outcome.reason}", file=sys.stderr)
    return EXIT_FAILURE


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
    return EXIT_USAGE
