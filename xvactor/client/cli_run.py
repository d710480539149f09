"""What ``xvactor find``, ``move``, ``get`` and ``worklist query`` do once parsed.

The parsers live in :mod:`xvactor.cli_query` (imported by ``xvactor --help``); this module
carries the heavy imports and runs a verb on the async client.
"""

from __future__ import annotations

import argparse
import json
import sys

import msgspec
from pydicom.dataset import Dataset

from xvactor.client.api import Client
from xvactor.client.keys import parse_keys
from xvactor.client.query import Model, identifier_for
from xvactor.client.results import RetrieveResult
from xvactor.client.table import columns_of, json_of, render_table
from xvactor.config import Destination, NodeConfig, load_config

__all__ = ["EXIT_FAILURE", "UsageError", "config_for", "run_verb"]

EXIT_FAILURE = 1


class UsageError(Exception):
    """A command line that cannot be run; one line for the user."""


def config_for(args: argparse.Namespace) -> NodeConfig:
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


async def run_verb(args: argparse.Namespace, config: NodeConfig) -> int:
    async with Client(ae_title=args.aet, config=config) as client:
        destination = _destination(args, client)
        if args.query_verb in ("find", "worklist"):
            return await _find(args, client, destination)
        return await _retrieve(args, client, destination)
