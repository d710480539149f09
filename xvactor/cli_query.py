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
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["add_parsers", "add_worklist_query", "main", "run"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


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


def _verb_name(args: argparse.Namespace) -> str:
    return "worklist query" if args.query_verb == "worklist" else str(args.query_verb)


def run(args: argparse.Namespace) -> int:
    """Run a parsed ``find``, ``move``, ``get`` or ``worklist query`` command."""
    name = _verb_name(args)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.CRITICAL)
    # Imported here, not at the top: ``xvactor --help`` stays fast.
    import anyio  # noqa: PLC0415

    from xvactor.client import ClientError  # noqa: PLC0415
    from xvactor.client.cli_run import UsageError, config_for, run_verb  # noqa: PLC0415
    from xvactor.client.keys import QueryKeyError  # noqa: PLC0415
    from xvactor.config import ConfigError  # noqa: PLC0415
    from xvactor.dicom.tls import TlsConfigError  # noqa: PLC0415

    try:
        config = config_for(args)
        return anyio.run(run_verb, args, config)
    except (UsageError, ConfigError, TlsConfigError, QueryKeyError, ValueError) as exc:
        print(f"xvactor {name}: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ClientError as exc:
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
