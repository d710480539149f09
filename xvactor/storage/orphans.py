"""Setting aside the files that no catalog row refers to, left by an interrupted run.

An instance's file is linked at its final name and made durable before its row commits
(``xvactor.storage.placement``).  A process that dies between the two, or a whole machine
that stops, leaves a file at ``studies/<Study>/<Series>/<SOP>.dcm`` without a row: never
acknowledged to its sender (no Success precedes the commit), possibly incomplete, and
invisible to queries, but there in the readable layout.  When the node starts, a sweep
moves such files out of it, to ``<data>/.orphans/`` (same relative path): nothing is
destroyed, in case the catalog itself is what went missing (a catalog with no row at
all is left alone: the sweep then does nothing but say so).

Only files whose inode changed a second or more before this run started (``st_ctime``:
linking a name changes it; the margin covers the kernel's coarse file clock) are
considered, so nothing this run is filing can be taken for an orphan.  The sweep reads
one series directory at a time and compares it with that series' rows (one query, no
lock), so a large archive costs a walk in the background and nothing more.  A file with
no row is moved under the catalog's write lock, after checking again that no row refers
to it and that it is still the same file: the writers settle a taken name under that
lock too, and another process may have just replaced the orphan with its instance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ORPHANS_DIR", "Orphan", "find_candidates", "set_aside", "sweep", "unreferenced"]

LOGGER = logging.getLogger("xvactor.storage")

SUFFIX = ".dcm"
ORPHANS_DIR = ".orphans"

CLOCK_MARGIN_NS = 1_000_000_000
"""File times come from a coarse clock (a scheduler tick behind): keep well clear of it."""


@dataclass(frozen=True)
class Orphan:
    """A file that may have no row: its name relative to the data directory, its inode."""

    relative: str
    inode: int


def find_candidates(data_dir: Path, studies: str, *, before_ns: int) -> Iterator[list[Orphan]]:
    """Instance files under ``studies`` last linked before ``before_ns``, per directory."""
    root = data_dir / studies
    for study in _directories(root):
        for series in _directories(study):
            files = []
            with contextlib.suppress(OSError), os.scandir(series) as entries:
                for entry in entries:
                    if not entry.name.endswith(SUFFIX) or not entry.is_file(follow_symlinks=False):
                        continue
                    try:
                        status = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    if status.st_ctime_ns < before_ns:
                        relative = f"{studies}/{study.name}/{series.name}/{entry.name}"
                        files.append(Orphan(relative=relative, inode=status.st_ino))
            if files:
                yield files


def unreferenced(conn: sqlite3.Connection, files: list[Orphan]) -> list[Orphan]:
    """Those of one series directory's ``files`` that none of its rows refers to."""
    series_uid = files[0].relative.rsplit("/", 2)[1]
    rows = conn.execute(
        "SELECT i.path FROM instances i JOIN series s ON s.series_pk = i.series_pk "
        "WHERE s.series_instance_uid = ?",
        (series_uid,),
    )
    catalogued = {str(path) for (path,) in rows}
    return [f for f in files if f.relative not in catalogued]


def set_aside(conn: sqlite3.Connection, data_dir: Path, candidates: list[Orphan]) -> int:
    """Move the candidates no row refers to into ``.orphans``, under the write lock.

    Returns how many were moved.
    """
    moved = 0
    conn.execute("BEGIN IMMEDIATE")  # the writers settle taken names under this lock
    try:
        for candidate in candidates:
            uid = candidate.relative.rsplit("/", 1)[1].removesuffix(SUFFIX)
            row = conn.execute(
                "SELECT path FROM instances WHERE sop_instance_uid = ?", (uid,)
            ).fetchone()
            if row is not None and row[0] == candidate.relative:
                continue  # catalogued
            path = data_dir / candidate.relative
            aside = data_dir / ORPHANS_DIR / candidate.relative
            try:
                if os.stat(path).st_ino != candidate.inode:
                    continue  # replaced since it was found: another process's instance
                aside.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, aside)
            except OSError as exc:
                LOGGER.warning("could not set aside %s: %s", candidate.relative, exc)
                continue
            moved += 1
    finally:
        conn.execute("ROLLBACK")  # nothing was written
    return moved


def sweep(data_dir: Path, catalog: Path, studies: str, *, started_ns: int) -> int:
    """Set aside the orphans of runs before ``started_ns`` (blocking); how many."""
    if not catalog.exists():
        return 0
    candidates = find_candidates(data_dir, studies, before_ns=started_ns - CLOCK_MARGIN_NS)
    conn = sqlite3.connect(catalog, isolation_level=None)
    moved = 0
    try:
        conn.execute("PRAGMA busy_timeout=60000")
        empty = conn.execute("SELECT 1 FROM instances LIMIT 1").fetchone() is None
        for files in candidates:
            if empty:
                LOGGER.warning(
                    "the catalog has no instance but %s holds files: the catalog looks new "
                    "or replaced, so no file is set aside",
                    studies,
                )
                return 0
            orphans = unreferenced(conn, files)
            if orphans:
                moved += set_aside(conn, data_dir, orphans)
    finally:
        conn.close()
    if moved:
        LOGGER.warning(
            "set aside %d instance file(s) no catalog row refers to, in %s (left by an "
            "interrupted run; never acknowledged to their senders)",
            moved,
            data_dir / ORPHANS_DIR,
        )
    return moved


def _directories(path: Path) -> list[Path]:
    with contextlib.suppress(OSError), os.scandir(path) as entries:
        return [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
    return []
