"""The query/retrieve verbs: ``xvactor find``, ``move``, ``get`` and ``worklist query``.

The syntax follows DCMTK's ``findscu``, ``movescu`` and ``getscu`` (``-k`` keys, ``-P``,
``-S``, ``-O`` models, ``-aet``/``-aec``), with a named destination from a configuration
file (``--to NAME --config FILE``) as an alternative to ``PEER PORT``.  Results are a table
or, with ``--json``, the DICOM JSON model (PS3.18 Annex F).  Exit status: 0 when
everything succeeded, 1 when the operation failed, 2 for a usage or configuration error;
errors are one line on stderr (``xvactor find: ...``), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
from pydicom.dataset import Dataset

from xvactor.client import Client, ClientError, NoAssociation, QueryKeyError, ServiceFailed
from xvactor.client.query import Model, identifier_for
from xvactor.client.results import RetrieveResult
from xvactor.client.table import columns_of, json_of, render_table
from xvactor.config import ConfigError, Destination, NodeConfig, load_config
from xvactor.dicom.tls import TlsConfigError

__all__ = ["add_parsers", "add_worklist_query", "main", "run"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A command line that cannot be run; one line for the user."""


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("peer", nargs="?", help="host name or address of the peer")
    parser.add_argument("port", nargs="?", type=int, help="TCP port of the peer")
    parser.add_argument("-aet", "--aet", help="our (calling) AE title (default: XVACTOR)")
    parser.add_argument("-aec", "--aec", help="the peer's (called) AE title (default: ANY-SCP)")
    parser.add_argument("--to", metavar="NAME", help="a destination of the --config file")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration")
    parser.add_argument("--timeout", type=float, help="seconds per phase (connect, ACSE, DIMSE)")
    parser.add_argument(
        "-k",
        "--key",
        action="append",
        default=[],
        dest="keys",
        metavar="KEY[=VALUE]",
        help="query key: keyword or (gggg,eeee), sequence paths as Seq[0].Keyword",
    )
    parser.add_argument("--json", action="store_true", help="print JSON (DICOM JSON model)")


def _model(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-P", "--patient", dest="model", action="store_const", const="patient",
        help="Patient Root information model",
    )  # fmt: skip
    group.add_argument(
        "-S", "--study", dest="model", action="store_const", const="study",
        help="Study Root information model (default)",
    )  # fmt: skip
    group.add_argument(
        "-O", "--psonly", dest="model", action="store_const", const="patient-study",
        help="Patient/Study Only information model",
    )  # fmt: skip
    parser.set_defaults(model="study")
    parser.add_argument("-L", "--level", help="PATIENT, STUDY, SERIES or IMAGE")


def add_parsers(verbs: Any) -> None:
    """Add ``find``, ``move`` and ``get`` to the ``xvactor`` sub-verb group ``verbs``."""
    find = verbs.add_parser("find", help="C-FIND a Q/R SCP (like DCMTK's findscu)")
    _connection(find)
    _model(find)
    find.add_argument(
        "--limit", type=int, metavar="N", help="stop after N matches (sends a C-CANCEL)"
    )
    find.set_defaults(query_verb="find")

    move = verbs.add_parser("move", help="C-MOVE to our own Storage SCP (like movescu)")
    _connection(move)
    _model(move)
    move.add_argument("--port", type=int, dest="scp_port", help="port of our Storage SCP")
    move.add_argument("--bind", default="0.0.0.0", help="address our Storage SCP listens on")  # noqa: S104
    move.add_argument("-od", "--out", type=Path, default=Path(), help="directory (default .)")
    move.add_argument(
        "-aem", "--move-destination", help="send to this AE instead of to us (no SCP here)"
    )
    move.set_defaults(query_verb="move")

    get = verbs.add_parser("get", help="C-GET from a Q/R SCP (like getscu)")
    _connection(get)
    _model(get)
    get.add_argument("-od", "--out", type=Path, default=Path(), help="directory (default .)")
    get.set_defaults(query_verb="get")


def add_worklist_query(worklist_subverbs: Any) -> None:
    """Add ``query`` to the ``xvactor worklist`` sub-verb group."""
    query = worklist_subverbs.add_parser(
        "query", help="C-FIND a Modality Worklist SCP (like findscu -W)"
    )
    _connection(query)
    query.add_argument("--limit", type=int, metavar="N", help="stop after N matches")
    query.set_defaults(query_verb="worklist", model="worklist", level=None)


def _config(args: argparse.Namespace) -> NodeConfig:
    config = load_config(args.config) if args.config is not None else NodeConfig()
    if args.timeout is not None:
        if args.timeout <= 0:
            raise UsageError("--timeout must be positive")
        timeouts = msgspec.structs.replace(
            config.timeouts, connect=args.timeout, acse=args.timeout, dimse=args.timeout
        )
        config = msgspec.structs.replace(config, timeouts=timeouts)
    return config


def _destination(args: argparse.Namespace, client: Client) -> Destination:
    if args.to is not None:
        if args.peer is not None:
            raise UsageError("give either PEER PORT or --to NAME, not both")
        if args.config is None:
            raise UsageError("--to needs --config FILE")
        destination = client.destination(args.to)
        if args.aec:
            destination = msgspec.structs.replace(destination, ae_title=args.aec)
        return destination
    if args.peer is None or args.port is None:
        raise UsageError("give PEER PORT, or --to NAME --config FILE")
    return client.destination((args.peer, args.port, args.aec or "ANY-SCP"))


def _status_text(status: int) -> str:
    return "success" if status == 0 else f"status 0x{status:04X}"


async def _find(args: argparse.Namespace, client: Client, destination: Destination) -> int:
    model: Model = args.model
    _, identifier = identifier_for(_keys(args), model, args.level, find=True)
    limit: int | None = args.limit
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    matches: list[Dataset] = []
    async with client.find(destination, identifier, model=model) as responses:
        async for match in responses:
            matches.append(match)
            if limit is not None and len(matches) >= limit:
                break
    if args.json:
        print(json.dumps([json_of(ds) for ds in matches], indent=2))
    else:
        print(render_table(columns_of(identifier), matches))
        print(f"({len(matches)} match{'es' if len(matches) != 1 else ''})")
    return 0


def _keys(args: argparse.Namespace) -> Dataset:
    from xvactor.client.keys import parse_keys  # noqa: PLC0415

    return parse_keys(args.keys)


def _retrieve_report(verb: str, destination: Destination, result: RetrieveResult) -> str:
    where = f"{destination.ae_title}@{destination.host}:{destination.port}"
    text = (
        f"C-{verb.upper()} {where}: {_status_text(result.status)}; {result.completed} "
        f"completed, {result.failed} failed, {result.warning} warning; "
        f"{len(result.received)} received"
    )
    if result.error_comment:
        text += f" ({result.error_comment})"
    return text


def _retrieve_json(result: RetrieveResult) -> str:
    return json.dumps(
        {
            "status": result.status,
            "error_comment": result.error_comment,
            "completed": result.completed,
            "failed": result.failed,
            "warning": result.warning,
            "failed_sop_instances": list(result.failed_sop_instances),
            "received": [
                {
                    "sop_class_uid": item.sop_class_uid,
                    "sop_instance_uid": item.sop_instance_uid,
                    "transfer_syntax_uid": item.transfer_syntax_uid,
                    "path": str(item.path) if item.path is not None else None,
                }
                for item in result.received
            ],
        },
        indent=2,
    )


async def _retrieve(args: argparse.Namespace, client: Client, destination: Destination) -> int:
    keys = _keys(args)
    result: RetrieveResult
    if args.query_verb == "move":
        result = await client.move(
            destination,
            keys,
            model=args.model,
            level=args.level,
            out_dir=args.out,
            port=args.scp_port,
            bind=args.bind,
            move_destination=args.move_destination,
        )
    else:
        result = await client.get(
            destination, keys, model=args.model, level=args.level, out_dir=args.out
        )
    report = _retrieve_report(args.query_verb, destination, result)
    if args.json:
        print(_retrieve_json(result))
    elif result.ok:
        print(report)
    if not result.ok:
        print(f"xvactor {args.query_verb}: {report}", file=sys.stderr)
        return EXIT_FAILURE
    return 0


async def _main(args: argparse.Namespace, config: NodeConfig) -> int:
    async with Client(ae_title=args.aet, config=config) as client:
        destination = _destination(args, client)
        if args.query_verb in ("find", "worklist"):
            return await _find(args, client, destination)
        return await _retrieve(args, client, destination)


def _verb_name(args: argparse.Namespace) -> str:
    return "worklist query" if args.query_verb == "worklist" else str(args.query_verb)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``find``, ``move``, ``get`` or ``worklist query`` command."""
    name = _verb_name(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.CRITICAL)
    try:
        config = _config(args)
        return anyio.run(_main, args, config)
    except (UsageError, ConfigError, TlsConfigError, QueryKeyError, ValueError) as exc:
        print(f"xvactor {name}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except (NoAssociation, ServiceFailed, ClientError) as exc:
        print(f"xvactor {name}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        print(f"xvactor {name}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the last boundary before the user: one line, no traceback
        print(f"xvactor {name}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def _one_line(exc: BaseException) -> str:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Run the verbs standalone (``python -m xvactor.cli_query find ...``), for tests."""
    parser = argparse.ArgumentParser(prog="xvactor")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    add_parsers(verbs)
    worklist = verbs.add_parser("worklist", help="worklist verbs")
    add_worklist_query(worklist.add_subparsers(dest="worklist_verb", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
