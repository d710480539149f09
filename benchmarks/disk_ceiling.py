"""What the disk alone allows a durable receiver: files written and fsynced, no network.

Every receiver that acknowledges an instance only once it is durable must at least write
the instance to a new file, fsync it, rename it into place and fsync the directory. This
does exactly that, from memory, on N threads (one per association the receivers get), so
the ingest benchmark can print the disk's own ceiling, and how it scales from one writer to
four, next to what the receivers reach in the same run.

    python benchmarks/disk_ceiling.py --bytes 524288 --count 600 --threads 1,4 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xvactor.dicom.part10 import fsync_directory

__all__ = ["Written", "write_durably"]


@dataclass(frozen=True)
class Written:
    """One probe: files made durable, seconds taken, this process's CPU seconds."""

    files: int
    wall_s: float
    cpu_s: float
    error: str = ""


def write_durably(payloads: Sequence[bytes], threads: int, out_dir: Path) -> Written:
    """Write each payload to its own file under ``out_dir`` with ``threads`` writers.

    Per file: create ``<n>.tmp``, write, fsync, rename to ``<n>.dcm``, fsync the directory.
    Each writer has its own directory (as associations storing different series would).
    """
    shares = [payloads[i::threads] for i in range(threads)]
    done = [0] * threads
    errors: list[str] = []

    def writer(index: int) -> None:
        directory = out_dir / f"w{index}"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            for n, data in enumerate(shares[index]):
                tmp = directory / f"{n}.tmp"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, directory / f"{n}.dcm")
                fsync_directory(directory)  # as xvactor does after each link
                done[index] += 1
        except OSError as exc:
            errors.append(f"writer {index}: {exc}")

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - t0
    return Written(sum(done), wall, time.process_time() - cpu0, "; ".join(errors))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bytes", type=int, default=524288, help="bytes per file (default 0.5 MB)")
    p.add_argument("--count", type=int, default=600, help="files per probe (default 600)")
    p.add_argument("--threads", default="1,4", help="comma list of writer counts (default 1,4)")
    p.add_argument("--repeat", type=int, default=3, help="probes per writer count (median)")
    p.add_argument("--dir", type=Path, default=None, help="where to write (default: a temp dir)")
    args = p.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",") if t]
    if args.bytes < 1 or args.count < 1 or args.repeat < 1 or any(t < 1 for t in counts):
        p.error("--bytes, --count, --repeat and --threads must be >= 1")
    payloads = [os.urandom(args.bytes) for _ in range(args.count)]
    base = Path(tempfile.mkdtemp(prefix="xvactor-disk-", dir=args.dir))
    rates: dict[int, list[float]] = {t: [] for t in counts}
    try:
        for rep in range(args.repeat):
            for t in counts:
                got = write_durably(payloads, t, base / f"r{rep}-t{t}")
                if got.error:
                    print(f"error: {got.error}", file=sys.stderr)
                    return 1
                rates[t].append(got.files / got.wall_s)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"| writers | files/s (median) | MB/s | ÷ {counts[0]} writer(s) |")
    print("|---:|---:|---:|---:|")
    one = statistics.median(rates[counts[0]])
    for t in counts:
        rate = statistics.median(rates[t])
        print(f"| {t} | {rate:,.1f} | {rate * args.bytes / 1e6:,.1f} | {rate / one:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
