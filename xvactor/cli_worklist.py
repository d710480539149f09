"""``xvactor worklist``: manage the Modality Worklist items in a node's catalog.

``add FILE...`` (DCMTK ``wlmscpfs`` ``.wl`` files, DICOM JSON, or directories of them),
``list [--json]`` and ``remove ID...``; each takes the node's ``--config FILE`` or
``--data-dir DIR`` (the embedded default configuration's data directory otherwise).  They
work while the node runs: the catalog is SQLite in WAL mode, writes are short
transactions and wait for the node's locks.

Errors reach the user as one line on stderr: exit 1 when the operation failed, 2 for a
usage or configuration error.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from dataclasses import asdict
from pathlib import Path

from pydicom.dataset import Dataset

__all__ = ["add_location_options", "add_parser", "data_dir_for", "run"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
_PREFIX = "xvactor worklist"


class _Failure(Exception):
    """An operation that failed; the message is the one line the user sees."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def add_location_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--config FILE`` and ``--data-dir DIR`` (which node's catalog) to ``parser``."""
    parser.add_argument("--config", type=Path, help="the node's TOML file")
    parser.add_argument("--data-dir", help="the node's data directory (overrides --config)")


def add_parser(
    verbs: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add the ``worklist`` verb to ``xvactor``'s verbs; return its sub-verb group.

    The caller may add further sub-verbs to the returned group (``dest`` is
    ``worklist_verb``); :func:`run` handles ``add``, ``list`` and ``remove``.
    """
    worklist = verbs.add_parser("worklist", help="manage the Modality Worklist items")
    sub = worklist.add_subparsers(dest="worklist_verb", required=True, metavar="VERB")
    add = sub.add_parser("add", help="add (or replace) items from .wl or DICOM JSON files")
    add.add_argument("files", nargs="+", type=Path, metavar="FILE", help="file or directory")
    listing = sub.add_parser("list", help="list the items")
    listing.add_argument("--json", action="store_true", help="a JSON array, one object each")
    remove = sub.add_parser("remove", help="remove items by id")
    remove.add_argument("ids", nargs="+", metavar="ID", help="an id shown by list")
    for parser in (add, listing, remove):
        add_location_options(parser)
    return sub


def data_dir_for(args: argparse.Namespace) -> Path:
    """The data directory named by ``--config``/``--data-dir``.

    Raises
    ------
    xvactor.config.ConfigError
        When the configuration file cannot be used.
    """
    from xvactor.config import Overrides, load_config  # noqa: PLC0415 - keep --help fast

    return load_config(args.config, Overrides(data_dir=args.data_dir)).data_path


def _say(text: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    try:
        print(text, file=stream)
    except UnicodeEncodeError:  # a terminal that cannot show a name: escape, never crash
        encoding = stream.encoding or "ascii"
        print(text.encode(encoding, "backslashreplace").decode(encoding), file=stream)


def _read(paths: list[Path]) -> list[tuple[Path, Dataset]]:
    from xvactor.worklist import expand_paths, read_worklist_file  # noqa: PLC0415
    from xvactor.worklist.items import index_item  # noqa: PLC0415

    files = expand_paths(paths)
    if not files:
        raise _Failure(f"no .wl or .json files in {', '.join(map(str, paths))}")
    found: list[tuple[Path, Dataset]] = []
    problems: list[str] = []
    for path in files:
        try:
            datasets = read_worklist_file(path)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        for number, ds in enumerate(datasets, start=1):
            where = f"{path} [{number}]" if len(datasets) > 1 else str(path)
            try:
                index_item(ds)
            except ValueError as exc:
                problems.append(f"{where}: {exc}")
                continue
            found.append((path, ds))
    if problems:
        for problem in problems[:-1]:
            _say(f"{_PREFIX}: {problem}", err=True)
        raise _Failure(f"{problems[-1]} (nothing added)")
    return found


def _add(args: argparse.Namespace, data_dir: Path) -> int:
    from xvactor.worklist import add_items, open_worklist  # noqa: PLC0415

    found = _read(list(args.files))
    conn = open_worklist(data_dir, create=True)
    try:
        ids = add_items(conn, [ds for _, ds in found])
    finally:
        conn.close()
    for item_id, (path, _) in zip(ids, found, strict=True):
        _say(f"{item_id}\t{path}")
    return 0


_COLUMNS = (
    ("ID", "item_id"),
    ("START", "start"),
    ("MODALITY", "modality"),
    ("STATION", "scheduled_station_ae_title"),
    ("SPS ID", "scheduled_procedure_step_id"),
    ("ACCESSION", "accession_number"),
    ("PATIENT ID", "patient_id"),
    ("PATIENT NAME", "patient_name"),
    ("PHYSICIAN", "performing_physician_name"),
)


def _list(args: argparse.Namespace, data_dir: Path) -> int:
    from xvactor.worklist import list_items, open_worklist  # noqa: PLC0415

    conn = open_worklist(data_dir, create=False)
    try:
        items = list_items(conn)
    finally:
        conn.close()
    if args.json:
        _say(json.dumps([asdict(item) for item in items], ensure_ascii=False, indent=1))
        return 0
    rows = [[title for title, _ in _COLUMNS]]
    for item in items:
        fields = asdict(item)
        fields["start"] = f"{item.start_date} {item.start_time}"
        rows.append([str(fields[key]) for _, key in _COLUMNS])
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    for row in rows:
        _say("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _remove(args: argparse.Namespace, data_dir: Path) -> int:
    from xvactor.worklist import open_worklist, remove_item  # noqa: PLC0415

    ids = []
    for text in args.ids:
        if not text.isdigit():
            raise _Failure(f"{text!r} is not an item id (see `xvactor worklist list`)", 2)
        ids.append(int(text))
    conn = open_worklist(data_dir, create=False)
    try:
        missing = [item_id for item_id in ids if not remove_item(conn, item_id)]
    finally:
        conn.close()
    if missing:
        raise _Failure(f"no item with id {', '.join(map(str, missing))}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the ``worklist`` sub-verb in ``args``; return the exit status."""
    from xvactor.config import ConfigError  # noqa: PLC0415

    handlers = {"add": _add, "list": _list, "remove": _remove}
    handler = handlers.get(args.worklist_verb)
    if handler is None:
        _say(f"{_PREFIX}: unknown sub-verb {args.worklist_verb!r}", err=True)
        return EXIT_USAGE
    try:
        return handler(args, data_dir_for(args))
    except ConfigError as exc:
        _say(f"{_PREFIX}: config error: {exc}", err=True)
        return EXIT_USAGE
    except _Failure as exc:
        _say(f"{_PREFIX}: {exc}", err=True)
        return exc.code
    except (sqlite3.Error, RuntimeError) as exc:  # busy past the timeout, schema version
        _say(f"{_PREFIX}: catalog: {str(exc).splitlines()[0]}", err=True)
        return EXIT_FAILURE
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"{_PREFIX}: {exc.strerror or exc}{where}", err=True)
        return EXIT_FAILURE
    except ValueError as exc:  # an item refused at the last check
        _say(f"{_PREFIX}: {str(exc).splitlines()[0]}", err=True)
        return EXIT_FAILURE
