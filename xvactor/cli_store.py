"""``xvactor store``: send DICOM files to a peer (like DCMTK's ``storescu``), or queue them.

    xvactor store PEER PORT PATH... [--recursive] [--aet AET] [--aec AEC] [--json]
    xvactor store --to NAME --config FILE PATH... [--queue]

Without ``--queue`` the files go out now, in order, over one association of a sender
actor (the same code a node uses), with a progress line on a terminal and a summary
(count, bytes, rate, failures by status) as a table or JSON.  With ``--queue`` they are
only added to the durable outbox of the node the configuration describes; a running
``xvactor serve`` with that configuration (or the next one started) delivers them.
Exit status: 0 when every instance was stored (or queued), 1 otherwise, 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


def add_parser(verbs: Any) -> argparse.ArgumentParser:
    """Add the ``store`` verb to ``verbs`` (the result of ``add_subparsers``)."""
    store: argparse.ArgumentParser = verbs.add_parser(
        "store",
        help="send DICOM files to a peer, or queue them for a node (like storescu)",
        usage="xvactor store [PEER PORT | --to NAME] PATH... [options]",
    )
    store.add_argument("targets", nargs="+", metavar="ARG", help="PEER PORT PATH... or PATH...")
    store.add_argument("-r", "--recursive", action="store_true", help="descend into directories")
    store.add_argument("--aet", help="our (calling) AE title (default: the node's)")
    store.add_argument("--aec", default="ANY-SCP", help="the peer's (called) AE title")
    store.add_argument("--to", metavar="NAME", help="a destination from the configuration")
    store.add_argument("--config", type=Path, help="node configuration (TOML)")
    store.add_argument("--queue", action="store_true", help="only queue for the node (needs --to)")
    store.add_argument("--json", action="store_true", help="print the results as JSON")
    store.add_argument("--timeout", type=float, help="seconds per network phase")
    return store


@dataclass(frozen=True)
class _Plan:
    host: str
    port: int
    paths: list[str]


class _UsageError(Exception):
    pass


def _files(paths: Sequence[str], recursive: bool) -> Iterator[Path]:
    for name in paths:
        path = Path(name)
        if path.is_dir():
            if not recursive:
                raise _UsageError(f"{name} is a directory (use --recursive)")
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for file in sorted(files):
                    yield Path(root, file)
        elif path.exists():
            yield path
        else:
            raise _UsageError(f"{name}: no such file or directory")


def _plan(args: argparse.Namespace) -> _Plan:
    if args.to is not None:
        return _Plan("", 0, list(args.targets))
    if args.queue:
        raise _UsageError("--queue needs --to NAME (a destination of the node)")
    if len(args.targets) < 3:
        raise _UsageError("give PEER PORT PATH... or --to NAME PATH...")
    try:
        port = int(args.targets[1])
    except ValueError:
        raise _UsageError(f"PORT must be a number, not {args.targets[1]!r}") from None
    return _Plan(args.targets[0], port, list(args.targets[2:]))


def run(args: argparse.Namespace) -> int:
    """Run ``xvactor store``; returns the exit status."""
    import logging  # noqa: PLC0415 - keep `xvactor --help` fast

    from xvactor.config import ConfigError, load_config  # noqa: PLC0415

    logging.basicConfig(level=logging.CRITICAL)
    try:
        config = load_config(args.config)
        plan = _plan(args)
        files = list(_files(plan.paths, args.recursive))
    except (ConfigError, _UsageError) as exc:
        print(f"xvactor store: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not files:
        print("xvactor store: no files to send", file=sys.stderr)
        return EXIT_USAGE
    try:
        if args.queue:
            return queue_files(config, args.to, files, as_json=args.json)
        return send_files(config, args, plan.host, plan.port, files)
    except _UsageError as exc:
        print(f"xvactor store: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # the last boundary before the user: one line
        print(f"xvactor store: {str(exc).splitlines()[0] if str(exc) else exc!r}", file=sys.stderr)
        return EXIT_FAILURE


def summary(results: Sequence[dict[str, Any]], size: int, seconds: float) -> dict[str, Any]:
    """The summary of a send: counts, bytes, rate, failures by status."""
    failed = [r for r in results if r["outcome"] not in ("success", "warning")]
    by_status = Counter(f"0x{r['status']:04X}" for r in failed)
    return {
        "count": len(results),
        "stored": len(results) - len(failed),
        "failed": len(failed),
        "warnings": sum(1 for r in results if r["outcome"] == "warning"),
        "bytes": size,
        "seconds": round(seconds, 3),
        "per_second": round(len(results) / seconds, 1) if seconds > 0 else 0.0,
        "failures_by_status": dict(sorted(by_status.items())),
    }


def print_report(report: dict[str, Any], results: Sequence[dict[str, Any]], as_json: bool) -> None:
    """Print the summary (and the failures) as a table, or everything as JSON."""
    if as_json:
        print(json.dumps({**report, "results": list(results)}, indent=2))
        return
    for r in results:
        if r["outcome"] not in ("success", "warning"):
            print(f"FAILED  0x{r['status']:04X}  {r['path']}  {r['error_comment']}")
    megabytes = report["bytes"] / 1e6
    print(
        f"{report['stored']}/{report['count']} stored, {megabytes:.1f} MB in "
        f"{report['seconds']:.2f} s ({report['per_second']:.1f}/s)"
        + (f", {report['warnings']} with warnings" if report["warnings"] else "")
    )
    for status, count in report["failures_by_status"].items():
        print(f"  {count} failed with status {status}")


def progress(done: int, total: int, started: float) -> None:
    """A one-line progress bar on a terminal's stderr."""
    if not sys.stderr.isatty():
        return
    width = 30
    filled = width * done // max(1, total)
    elapsed = max(1e-6, time.monotonic() - started)
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {done / elapsed:.0f}/s"
    )
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _items(files: Sequence[Path]) -> tuple[list[Any], list[dict[str, Any]], int]:
    """Send items for the readable files; results for the unreadable ones; total bytes."""
    from xvactor.dicom.outcome import LOCAL_UNREADABLE, Verdict  # noqa: PLC0415
    from xvactor.dicom.prepare import UnreadableFile, read_file_meta  # noqa: PLC0415
    from xvactor.sender.queue import SendItem  # noqa: PLC0415

    items: list[SendItem] = []
    unreadable: list[dict[str, Any]] = []
    size = 0
    for file in files:
        try:
            sop_class, sop_instance, syntax = read_file_meta(file)
        except UnreadableFile as exc:
            unreadable.append(
                {"path": str(file), "sop_instance_uid": "", "status": LOCAL_UNREADABLE,
                 "error_comment": str(exc), "outcome": Verdict.REFUSED.value}
            )  # fmt: skip
            continue
        size += file.stat().st_size
        items.append(
            SendItem(
                path=str(file.resolve()),
                sop_class_uid=sop_class,
                sop_instance_uid=sop_instance,
                transfer_syntax_uid=syntax,
            )
        )
    return items, unreadable, size


def queue_files(config: Any, name: str, files: Sequence[Path], *, as_json: bool) -> int:
    """Add ``files`` to the durable outbox of destination ``name`` and ring the node."""
    from xvactor.actors.senders import ring_doorbell  # noqa: PLC0415
    from xvactor.sender.queue import OUTBOX_FILE, DurableOutbox  # noqa: PLC0415

    if name not in {d.name for d in config.destinations}:
        raise _UsageError(f"no destination named {name!r} in the configuration")
    items, unreadable, size = _items(files)
    data_dir = config.data_path.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    outbox = DurableOutbox(data_dir / OUTBOX_FILE, name)
    try:
        ids = outbox.add(items, time.time())
    finally:
        outbox.close()
    woke = ring_doorbell(data_dir, name)
    report = {"queued": len(ids), "destination": name, "bytes": size, "node_running": woke,
              "unreadable": len(unreadable)}  # fmt: skip
    if as_json:
        print(json.dumps({**report, "results": unreadable}, indent=2))
    else:
        for r in unreadable:
            print(f"FAILED  0x{r['status']:04X}  {r['path']}  {r['error_comment']}")
        note = "a running node is sending them" if woke else "the next node started sends them"
        print(f"{len(ids)} queued for {name} ({size / 1e6:.1f} MB); {note}")
    return 0 if not unreadable else EXIT_FAILURE


def send_files(
    config: Any, args: argparse.Namespace, host: str, port: int, files: Sequence[Path]
) -> int:
    """Send ``files`` now over one association of an in-memory sender."""
    import anyio  # noqa: PLC0415
    import msgspec  # noqa: PLC0415

    from xvactor.actors.sender import (  # noqa: PLC0415
        SenderActor,
        SenderSettings,
        SendResult,
        send_now,
    )
    from xvactor.actors.senders import sender_limiters  # noqa: PLC0415
    from xvactor.config import Destination  # noqa: PLC0415
    from xvactor.dicom.scu import Peer, PynetdicomPort  # noqa: PLC0415
    from xvactor.runtime import ActorRef, ChildSpec, Limiters, Supervisor  # noqa: PLC0415
    from xvactor.sender.queue import MemoryOutbox  # noqa: PLC0415
    from xvactor.sender.timer import ThreadTimer  # noqa: PLC0415

    if args.to is not None:
        found = [d for d in config.destinations if d.name == args.to]
        if not found:
            raise _UsageError(f"no destination named {args.to!r} in the configuration")
        destination = found[0]
    else:
        destination = Destination(name="", ae_title=args.aec, host=host, port=port)
    if args.aet:
        destination = msgspec.structs.replace(destination, local_ae_title=args.aet)
    if args.timeout:
        timeouts = msgspec.structs.replace(
            config.timeouts, connect=args.timeout, acse=args.timeout, dimse=args.timeout
        )
        config = msgspec.structs.replace(config, timeouts=timeouts)
    peer = Peer.for_destination(destination, config)
    items, results, size = _items(files)

    async def main() -> None:
        limiters = Limiters(sender_limiters(config))
        ref: ActorRef[Any] = ActorRef("sender:store", mailbox_size=16)
        memory = MemoryOutbox("store")
        supervisor = Supervisor(
            "store",
            [
                ChildSpec(
                    ref=ref,
                    factory=lambda: SenderActor(
                        ref,
                        port=PynetdicomPort(peer),
                        outbox=lambda: memory,
                        settings=SenderSettings(idle_release=0.0),
                        limiters=limiters,
                        timer=ThreadTimer,
                    ),
                )
            ],
        )
        paths = {item.sop_instance_uid: item.path for item in items}
        async with anyio.create_task_group() as tg:
            await tg.start(supervisor.run)
            send, receive = anyio.create_memory_object_stream[SendResult](256)
            started = time.monotonic()
            await send_now(ref, items, send)
            async with receive:
                async for result in receive:
                    results.append(
                        {"path": paths.get(result.sop_instance_uid, ""),
                         "sop_instance_uid": result.sop_instance_uid, "status": result.status,
                         "error_comment": result.error_comment, "outcome": result.outcome}
                    )  # fmt: skip
                    progress(len(results), len(files), started)
            await supervisor.stop()

    started = time.monotonic()
    anyio.run(main)
    elapsed = time.monotonic() - started
    report = summary(results, size, elapsed)
    print_report(report, results, args.json)
    return 0 if report["failed"] == 0 and report["count"] == len(files) else EXIT_FAILURE
