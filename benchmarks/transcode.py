"""Transcoding benchmark: xvactor's codecs against DCMTK's dcmcjpeg/dcmdjpeg/dcmcrle/dcmdrle.

For each syntax, encode (Explicit VR LE file -> syntax) and decode (syntax -> Explicit VR
LE), file to file, on CT-sized (512 x 512, 16 bit, 12 stored) and DX-sized (3000 x 3000,
16 bit, 14 stored) images; 8 bit versions of both for JPEG Baseline. Both sides convert
the same files in the same run: xvactor in-process (``convert_file``), DCMTK as the
command-line tool a user runs (process start-up included: it is part of using DCMTK that
way; the table gives it separately). Median of ``--repeat`` samples; a CT sample converts
``--ct-batch`` images. Also the peak RSS of converting a 100-frame CT-sized object in a
fresh process, against the same process's RSS after imports.

    python benchmarks/transcode.py            # ~2-3 min on 2 cores
    python benchmarks/transcode.py --quick    # smoke run

Progress to stderr, the markdown table to stdout, raw figures to
benchmarks/results/transcode-<UTC timestamp>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import (
    JPEG2000,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    RLELossless,
)

from xvactor.testing.datasets import make_dataset
from xvactor.testing.dcmtk import require_tool
from xvactor.transcode import convert_file

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SIZES = {"ct": (512, 512, 16, 12), "dx": (3000, 3000, 16, 14)}
# name -> (target syntax, 8 bit images?, DCMTK encoder, DCMTK decoder)
SYNTAXES: dict[str, tuple[str, bool, list[str] | None, list[str] | None]] = {
    "rle": (RLELossless, False, ["dcmcrle", "+un"], ["dcmdrle", "+te"]),
    "jpeg-lossless": (JPEGLossless, False, ["dcmcjpeg", "+el", "+un"], ["dcmdjpeg", "+te"]),
    "jpeg-baseline": (JPEGBaseline8Bit, True, ["dcmcjpeg", "+eb", "+un"], ["dcmdjpeg", "+te"]),
    "explicit-be": (ExplicitVRBigEndian, False, ["dcmconv", "+tb"], ["dcmconv", "+te"]),
    "j2k-lossless": (JPEG2000Lossless, False, None, None),
    "j2k": (JPEG2000, False, None, None),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def image(size: str, eight_bit: bool, path: Path) -> Path:
    """A smooth anatomy-like image with noise (random pixels would not compress)."""
    rows, columns, allocated, stored = SIZES[size]
    if eight_bit:
        allocated, stored = 8, 8
    ds = make_dataset(rows=rows, columns=columns, bits_allocated=allocated, bits_stored=stored)
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    top = (1 << stored) - 1
    body = np.exp(
        -(((x - columns / 2) / (columns / 3)) ** 2 + ((y - rows / 2) / (rows / 2.5)) ** 2)
    )
    texture = 0.15 * np.sin(x / 9) * np.cos(y / 13)
    noise = np.random.default_rng(1).normal(0, 0.01, (rows, columns))
    values = np.clip((0.7 * body + texture + 0.1 + noise) * top, 0, top)
    ds.PixelData = values.astype(f"<u{allocated // 8}").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def timed(step: Callable[[], None], count: int, repeat: int) -> float:
    """Median seconds per image over `repeat` samples of `count` images."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(count):
            step()
        samples.append((time.perf_counter() - start) / count)
    return statistics.median(samples)


def tool_step(command: list[str], src: Path, dst: Path) -> Callable[[], None]:
    argv = [require_tool(command[0]), *command[1:], str(src), str(dst)]
    env = {**os.environ, "TCP_NODELAY": "1"}
    return lambda: subprocess.run(argv, check=True, capture_output=True, env=env)


def ours_step(src: Path, dst: Path, target: str) -> Callable[[], None]:
    return lambda: convert_file(src, dst, target)


def measure(work: Path, sizes: list[str], repeat: int, ct_batch: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for size in sizes:
        count = ct_batch if size == "ct" else 1
        sources = {bits: image(size, bits, work / f"{size}-{bits}.dcm") for bits in (False, True)}
        for name, (target, eight_bit, encoder, decoder) in SYNTAXES.items():
            source = sources[eight_bit]
            pixel_bytes = int(np.prod(SIZES[size][:2])) * (1 if eight_bit else 2)
            encoded = work / f"{size}-{name}.dcm"
            row: dict[str, Any] = {"size": size, "syntax": name, "pixel_bytes": pixel_bytes}
            log(f"{size} {name}")
            row["ours_encode_s"] = timed(ours_step(source, encoded, target), count, repeat)
            row["encoded_bytes"] = encoded.stat().st_size
            back = work / f"{size}-{name}-back.dcm"
            row["ours_decode_s"] = timed(
                ours_step(encoded, back, ExplicitVRLittleEndian), count, repeat
            )
            if encoder and decoder:
                theirs = work / f"{size}-{name}-dcmtk.dcm"
                row["dcmtk_encode_s"] = timed(tool_step(encoder, source, theirs), count, repeat)
                row["dcmtk_decode_s"] = timed(
                    tool_step(decoder, encoded, work / "dcmtk-back.dcm"), count, repeat
                )
            rows.append(row)
    return rows


def startup(work: Path, repeat: int) -> float:
    """Seconds DCMTK takes to start and convert a tiny file (its fixed cost per image)."""
    tiny = work / "tiny.dcm"
    make_dataset(rows=8, columns=8, bits_allocated=8).save_as(tiny, enforce_file_format=True)
    return timed(tool_step(["dcmconv"], tiny, work / "tiny-out.dcm"), 10, repeat)


MEMORY_SCRIPT = """
import sys
from xvactor.transcode import convert_file

def hwm():  # VmHWM is per address space: ru_maxrss would carry the parent's over exec
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))

before = hwm()
convert_file(sys.argv[1], sys.argv[2], sys.argv[3])
print(before, hwm())
"""


def memory(work: Path, frames: int) -> dict[str, Any]:
    """Peak RSS (KiB) converting a `frames`-frame CT-sized object, in fresh processes."""
    ds = make_dataset(rows=512, columns=512, bits_allocated=16, frames=frames)
    ramp = (np.arange(512 * 512).reshape(512, 512) % 4096).astype("<u2")
    ds.PixelData = b"".join(((ramp + n) % 4096).astype("<u2").tobytes() for n in range(frames))
    native = work / "multi.dcm"
    ds.save_as(native, enforce_file_format=True)
    del ds
    result: dict[str, Any] = {"frames": frames, "pixel_bytes": frames * 512 * 512 * 2}
    steps = (
        ("encode_j2k_lossless", native, work / "multi-j2k.dcm", JPEG2000Lossless),
        (
            "decode_j2k_lossless",
            work / "multi-j2k.dcm",
            work / "multi-back.dcm",
            ExplicitVRLittleEndian,
        ),
        ("encode_rle", native, work / "multi-rle.dcm", RLELossless),
    )
    for name, src, dst, target in steps:
        out = subprocess.run(
            [sys.executable, "-c", MEMORY_SCRIPT, str(src), str(dst), target],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
        result[name] = {"rss_after_imports_kib": int(out[0]), "peak_rss_kib": int(out[1])}
    return result


def machine() -> dict[str, Any]:
    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "-"

    dcmtk = subprocess.run(
        [require_tool("dcmconv"), "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    commit = subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": {p: version(p) for p in ("imagecodecs", "pylibjpeg-rle", "pydicom", "numpy")},
        "dcmtk": dcmtk[0] if dcmtk else "-",
        "commit": commit,
    }


def ratio(ours: float, theirs: float | None) -> str:
    return "-" if theirs is None else f"{theirs / ours:.2f}"


def table(rows: list[dict[str, Any]], start: float) -> str:
    lines = [
        "| size | syntax | ours enc img/s | ours enc MB/s | DCMTK enc img/s | enc ratio | "
        "ours dec img/s | ours dec MB/s | DCMTK dec img/s | dec ratio | compressed |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        mb = row["pixel_bytes"] / 1e6
        enc, dec = row["ours_encode_s"], row["ours_decode_s"]
        tenc, tdec = row.get("dcmtk_encode_s"), row.get("dcmtk_decode_s")
        lines.append(
            f"| {row['size']} | {row['syntax']} | {1 / enc:.1f} | {mb / enc:.0f} | "
            f"{'-' if tenc is None else f'{1 / tenc:.1f}'} | {ratio(enc, tenc)} | "
            f"{1 / dec:.1f} | {mb / dec:.0f} | {'-' if tdec is None else f'{1 / tdec:.1f}'} | "
            f"{ratio(dec, tdec)} | {row['pixel_bytes'] / row['encoded_bytes']:.2f}:1 |"
        )
    lines.append(f"\nDCMTK start-up + tiny file: {start * 1000:.1f} ms per invocation.")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ct-batch", type=int, default=10)
    parser.add_argument("--sizes", default="ct,dx")
    parser.add_argument("--frames", type=int, default=100, help="multi-frame memory check")
    parser.add_argument("--quick", action="store_true", help="1 repeat, CT only, 20 frames")
    parser.add_argument("--no-json", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.ct_batch, args.sizes, args.frames = 1, 2, "ct", 20
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="xvactor-bench-") as tmp:
        work = Path(tmp)
        rows = measure(work, args.sizes.split(","), args.repeat, args.ct_batch)
        start = startup(work, args.repeat)
        mem = memory(work, args.frames)
    report = table(rows, start)
    print(report)
    print(
        f"\nPeak RSS, {mem['frames']} frames x 512 x 512 x 16 bit "
        f"({mem['pixel_bytes'] / 2**20:.0f} MiB of pixels), fresh process (MiB):"
    )
    for name in ("encode_j2k_lossless", "decode_j2k_lossless", "encode_rle"):
        entry = mem[name]
        print(
            f"- {name}: {entry['rss_after_imports_kib'] / 1024:.0f} after imports, "
            f"{entry['peak_rss_kib'] / 1024:.0f} peak"
        )
    log(f"took {time.monotonic() - began:.0f} s")
    if not args.no_json:
        RESULTS_DIR.mkdir(exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        path = RESULTS_DIR / f"transcode-{stamp}.json"
        payload = {
            "machine": machine(),
            "args": vars(args),
            "rows": rows,
            "dcmtk_startup_s": start,
            "memory": mem,
        }
        path.write_text(json.dumps(payload, indent=2) + "\n")
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
