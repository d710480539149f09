"""``xvactor bench``: load-test a DICOM node with C-STORE, C-ECHO or C-FIND traffic.

    xvactor bench store PEER PORT --aec TITLE [--associations N] [--count M | --duration S]
        [--size tiny|ct|dx | --files PATH...] [--rate R] [--json FILE] [--report FILE]
        [--sweep 1,2,4,8] [--compare [LABEL=]AET@HOST:PORT ...]
    xvactor bench store --to NAME --config FILE ...
    xvactor bench echo PEER PORT --aec TITLE [--new-association] ...
    xvactor bench find PEER PORT --aec TITLE [--query 'QueryRetrieveLevel=STUDY;PatientID=X*']

``--count`` is per association.  A live line on stderr (on a terminal) while it runs; at
the end a summary (one run) or a table (sweep, compare); ``--json`` and ``--report`` write
the JSON report and a self-contained HTML picture.  Exit status: 0 when every request
succeeded, 1 when any failed, 2 for a usage error; errors are one line
(``xvactor bench: ...``), never a traceback.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import shlex
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "main", "run"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
_DEFAULT_COUNT = 100
_TARGET = re.compile(r"^(?:(?P<label>[^=]+)=)?(?P<aet>[^@]{1,16})@(?P<host>[^:]+):(?P<port>\d+)$")


class _UsageError(Exception):
    pass


def _concurrency(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list like 1,2,4,8") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("concurrencies must be positive integers")
    return values


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text} is not positive")
        return value

    return parse


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("peer", nargs="?", help="host name or address of the peer")
    parser.add_argument("port", nargs="?", type=int, help="TCP port of the peer")
    parser.add_argument("--aec", "-aec", help="the peer's (called) AE title (default ANY-SCP)")
    parser.add_argument("--aet", "-aet", help="our (calling) AE title (default XVBENCH)")
    parser.add_argument("--to", metavar="NAME", help="a destination of the --config file")
    parser.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration")
    parser.add_argument("-n", "--associations", type=_positive(int), default=1, metavar="N",
                        help="associations in parallel (default 1)")  # fmt: skip
    parser.add_argument("--processes", type=_positive(int), metavar="P",
                        help="worker processes (default: one per core, at most N)")  # fmt: skip
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--count", type=_positive(int), metavar="M",
                        help=f"requests per association (default {_DEFAULT_COUNT})")  # fmt: skip
    amount.add_argument("--duration", type=_positive(float), metavar="S",
                        help="run for S seconds instead of a count")  # fmt: skip
    parser.add_argument("--rate", type=_positive(float), metavar="R",
                        help="open loop: R requests/s in total (default: closed loop)")  # fmt: skip
    parser.add_argument("--new-association", action="store_true",
                        help="a new association for every request (measures set-up)")  # fmt: skip
    parser.add_argument("--sweep", type=_concurrency, metavar="1,2,4,8",
                        help="run at each of these concurrencies")  # fmt: skip
    parser.add_argument("--compare", action="append", default=[], metavar="TARGET",
                        help="another target, [LABEL=]AET@HOST:PORT or a destination name "
                        "(repeatable); runs alternate between targets")  # fmt: skip
    parser.add_argument("--repeat", type=_positive(int), default=1, metavar="R",
                        help="runs per target and concurrency; tables show medians")  # fmt: skip
    parser.add_argument("--timeout", type=_positive(float), default=30.0, metavar="S",
                        help="seconds per network phase (default 30)")  # fmt: skip
    parser.add_argument("--max-pdu", type=_positive(int), default=131072, metavar="BYTES",
                        help="our maximum PDU length received (default 131072)")  # fmt: skip
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report")
    parser.add_argument("--report", type=Path, metavar="FILE", help="write an HTML picture")
    parser.add_argument("--no-progress", action="store_true", help="no live progress line")


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add ``bench store|echo|find`` to ``verbs`` (the result of ``add_subparsers``)."""
    bench: argparse.ArgumentParser = verbs.add_parser(
        "bench", help="load-test a DICOM node: C-STORE, C-ECHO or C-FIND traffic"
    )
    kinds = bench.add_subparsers(dest="bench_kind", required=True, metavar="WORKLOAD")
    store = kinds.add_parser("store", help="C-STORE synthetic instances or replayed files")
    _common(store)
    source = store.add_mutually_exclusive_group()
    source.add_argument("--size", choices=("tiny", "ct", "dx"),
                        help="tiny ~5 KB, ct ~0.5 MB, dx ~18 MB (default tiny)")  # fmt: skip
    source.add_argument(
        "--files", nargs="+", metavar="PATH",
        help="replay these files (directories recursively), new UIDs each send",
    )  # fmt: skip
    store.add_argument("--rows", type=_positive(int), help="synthetic image rows")
    store.add_argument("--columns", type=_positive(int), help="synthetic image columns")
    store.add_argument("--bits", type=int, choices=(8, 16), help="bits allocated (8 or 16)")
    store.add_argument("--frames", type=_positive(int), help="number of frames")
    echo = kinds.add_parser("echo", help="C-ECHO: associations and echoes per second")
    _common(echo)
    find = kinds.add_parser("find", help="C-FIND a query mix: first and last response latency")
    _common(find)
    find.add_argument(
        "--query", action="append", default=[], metavar="K=V;K=V",
        help="a query of the mix (repeatable), keys as in xvactor find -k",
    )  # fmt: skip
    model = find.add_mutually_exclusive_group()
    model.add_argument("-P", "--patient", dest="model", action="store_const", const="patient",
                       help="Patient Root information model")  # fmt: skip
    model.add_argument("-S", "--study", dest="model", action="store_const", const="study",
                       help="Study Root information model (default)")  # fmt: skip
    find.set_defaults(model="study")
    return bench


def _target_from_text(text: str, args: argparse.Namespace, config: Any) -> Any:
    from xvactor.bench.wire import Target  # noqa: PLC0415

    match = _TARGET.match(text)
    if match is not None:
        return Target(
            host=match["host"], port=int(match["port"]), called_ae_title=match["aet"],
            calling_ae_title=args.aet or "XVBENCH", max_pdu=args.max_pdu,
            timeout=args.timeout, label=match["label"] or "",
        )  # fmt: skip
    return _named(text, args, config)


def _named(name: str, args: argparse.Namespace, config: Any) -> Any:
    from xvactor.bench.wire import Target  # noqa: PLC0415

    if config is None:
        raise _UsageError(f"{name!r} is not AET@HOST:PORT, and no --config names destinations")
    for destination in config.destinations:
        if destination.name == name:
            if destination.tls is not None:
                raise _UsageError(f"destination {name!r} uses TLS, which bench does not speak")
            return Target(
                host=destination.host, port=destination.port,
                called_ae_title=args.aec or destination.ae_title,
                calling_ae_title=args.aet or destination.local_ae_title or config.ae_title,
                max_pdu=args.max_pdu, timeout=args.timeout, label=name,
            )  # fmt: skip
    known = ", ".join(d.name for d in config.destinations) or "none configured"
    raise _UsageError(f"unknown destination {name!r} (known: {known})")


def _targets(args: argparse.Namespace) -> list[Any]:
    from xvactor.bench.wire import Target  # noqa: PLC0415
    from xvactor.config import ConfigError, load_config  # noqa: PLC0415

    config = None
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            raise _UsageError(f"config error: {exc}") from None
    targets = []
    if args.to is not None:
        if args.peer is not None:
            raise _UsageError("give either PEER PORT or --to NAME, not both")
        targets.append(_named(args.to, args, config))
    elif args.peer is not None:
        if args.port is None or not 1 <= args.port <= 65535:
            raise _UsageError("give PEER PORT (a TCP port 1-65535)")
        targets.append(Target(
            host=args.peer, port=args.port, called_ae_title=args.aec or "ANY-SCP",
            calling_ae_title=args.aet or "XVBENCH", max_pdu=args.max_pdu,
            timeout=args.timeout,
        ))  # fmt: skip
    targets += [_target_from_text(text, args, config) for text in args.compare]
    if not targets:
        raise _UsageError("give PEER PORT, --to NAME --config FILE, or --compare TARGET")
    for target in targets:
        if not target.called_ae_title or len(target.called_ae_title) > 16:
            raise _UsageError(f"{target.called_ae_title!r} is not an AE title (1-16 characters)")
    return targets


def _workload(args: argparse.Namespace) -> Any:
    from xvactor.bench.instances import new_run_number  # noqa: PLC0415
    from xvactor.bench.runner import Workload  # noqa: PLC0415

    count = args.count if args.count is not None or args.duration is not None else _DEFAULT_COUNT
    common: dict[str, Any] = {
        "kind": args.bench_kind, "count": count, "duration": args.duration,
        "rate": args.rate, "new_association": args.new_association,
    }  # fmt: skip
    if args.bench_kind == "echo":
        return Workload(**common)
    if args.bench_kind == "find":
        from xvactor.bench.queries import DEFAULT_MIX, build_queries, split_query  # noqa: PLC0415

        mix = [split_query(text) for text in args.query] or list(DEFAULT_MIX)
        try:
            queries = build_queries(mix, args.model)
        except ValueError as exc:
            raise _UsageError(str(exc)) from None
        about = {"model": args.model, "queries": [q.label for q in queries]}
        return Workload(**common, queries=queries, description=about)
    from xvactor.bench.workload import (  # noqa: PLC0415
        Geometry,
        WorkloadError,
        file_templates,
        synthetic_templates,
    )  # fmt: skip
    from xvactor.testing.datasets import SIZES  # noqa: PLC0415

    run = new_run_number()
    try:
        if args.files:
            if any(v is not None for v in (args.rows, args.columns, args.bits, args.frames)):
                raise _UsageError("--rows/--columns/--bits/--frames do not apply to --files")
            templates = file_templates(args.files, run)
            description: dict[str, Any] = {"files": len(templates)}
        else:
            base = SIZES[args.size or "tiny"]
            geometry = Geometry(
                rows=args.rows or base.rows, columns=args.columns or base.columns,
                bits_allocated=args.bits or base.bits_allocated, frames=args.frames or 1,
            )  # fmt: skip
            templates = synthetic_templates(geometry, run)
            description = {"size": args.size or "tiny", "rows": geometry.rows,
                           "columns": geometry.columns, "bits_allocated": geometry.bits_allocated,
                           "frames": geometry.frames}  # fmt: skip
    except WorkloadError as exc:
        raise _UsageError(str(exc)) from None
    description["instance_bytes"] = [len(t.data) for t in templates][:20]
    return Workload(**common, templates=templates, description=description)


def _execute(args: argparse.Namespace) -> int:
    from xvactor.bench.display import LiveLine  # noqa: PLC0415
    from xvactor.bench.html import render  # noqa: PLC0415
    from xvactor.bench.plan import Plan, run_plan  # noqa: PLC0415
    from xvactor.bench.report import document, summary_text  # noqa: PLC0415

    targets = _targets(args)
    workload = _workload(args)
    started = dt.datetime.now(dt.UTC)
    plan = Plan(targets, args.sweep or [args.associations], args.repeat, args.processes)
    lines: list[Any] = []

    def progress(target: Any, associations: int, repeat: int) -> Any:
        if args.no_progress:
            return None
        line = LiveLine(f"{target} x{associations}" + (f" #{repeat}" if args.repeat > 1 else ""))
        lines.append(line)
        return line

    def done(result: Any) -> None:
        if lines:
            lines.pop().close()

    results = run_plan(plan, workload, progress=progress, done=done)
    print(summary_text(args.bench_kind, results))
    command = getattr(args, "command_line", None) or "xvactor " + shlex.join(sys.argv[1:])
    report = document(command, workload, targets, results, started=started)
    try:
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        if args.report is not None:
            args.report.write_text(render(report), encoding="utf-8")
    except OSError as exc:
        print(f"xvactor bench: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return 0 if all(r.ok for r in results) else EXIT_FAILURE


def run(args: argparse.Namespace) -> int:
    """Run ``xvactor bench``; errors become one line on stderr and the exit status."""
    try:
        return _execute(args)
    except _UsageError as exc:
        print(f"xvactor bench: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xvactor bench: interrupted", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, ValueError) as exc:
        print(f"xvactor bench: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: list[str] | None = None) -> int:
    """``python -m xvactor.cli_bench ...`` (without the ``bench`` word), for scripts and tests."""
    parser = argparse.ArgumentParser(prog="xvactor bench")
    verbs = parser.add_subparsers(dest="verb", required=True)
    add_parser(verbs)
    words = list(argv if argv is not None else sys.argv[1:])
    args = parser.parse_args(["bench", *words])
    args.command_line = "xvactor bench " + shlex.join(words)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
