"""``xvactor convert``: change a file's transfer syntax and encoding, like DCMTK's dcmconv.

``xvactor convert IN OUT --ts UID|NAME [--implicit|--explicit] [--big-endian]
[--group-lengths] [--undefined-lengths] [--drop-empty] [--quality Q]``, the same engine
the node uses for retrieval and forwarding (:mod:`xvactor.transcode`). Exit 0 on success,
1 when the conversion is impossible or fails, 2 for contradictory options; errors are one
line on stderr, prefixed ``xvactor convert:``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]

EXIT_FAILURE = 1
EXIT_USAGE = 2
_PREFIX = "xvactor convert"
_EPILOG = (
    "transfer syntax names: implicit-le, explicit-le, explicit-be, rle, jpeg-baseline, "
    "jpeg-lossless (Process 14), j2k-lossless, j2k; or a UID; 'keep' keeps the input's. "
    "--quality: 1-100, the IJG quality for jpeg-baseline (default 90), the target PSNR in "
    "dB for j2k (default 50)."
)


def add_parser(verbs: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``convert`` verb to the ``xvactor`` command's sub-parsers."""
    convert = verbs.add_parser(
        "convert",
        help="convert a DICOM file to another transfer syntax or encoding",
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog=_EPILOG,
    )
    convert.add_argument("input", metavar="IN", type=Path, help="PS3.10 file to read")
    convert.add_argument("output", metavar="OUT", type=Path, help="PS3.10 file to write")
    convert.add_argument(
        "--ts", required=True, metavar="UID|NAME", help="target transfer syntax (or 'keep')"
    )
    vr = convert.add_mutually_exclusive_group()
    vr.add_argument(
        "--implicit",
        dest="explicit_vr",
        action="store_false",
        default=None,
        help="Implicit VR Little Endian (uncompressed output)",
    )
    vr.add_argument(
        "--explicit",
        dest="explicit_vr",
        action="store_true",
        default=None,
        help="explicit VR (uncompressed output)",
    )
    convert.add_argument("--big-endian", action="store_true", help="Explicit VR Big Endian")
    convert.add_argument("--group-lengths", action="store_true", help="write Group Length elements")
    convert.add_argument(
        "--undefined-lengths",
        action="store_true",
        help="sequences and items with undefined length (default: explicit lengths)",
    )
    convert.add_argument("--drop-empty", action="store_true", help="leave out empty elements")
    convert.add_argument("--quality", type=int, metavar="Q", help="1-100, lossy targets only")
    convert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run ``xvactor convert`` with parsed `args`; return the exit status."""
    from xvactor.transcode import OutputEncoding, TranscodeError, convert_file  # noqa: PLC0415

    ts = "" if args.ts.strip().lower() == "keep" else args.ts
    try:
        output = OutputEncoding(
            transfer_syntax=ts,
            explicit_vr=args.explicit_vr,
            big_endian=args.big_endian,
            group_lengths=args.group_lengths,
            undefined_lengths=args.undefined_lengths,
            drop_empty=args.drop_empty,
            quality=args.quality,
        )
    except TranscodeError as exc:
        print(f"{_PREFIX}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        convert_file(args.input, args.output, output=output)
    except TranscodeError as exc:
        print(f"{_PREFIX}: {args.input}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as exc:  # the last boundary before the user: one line, no traceback
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{_PREFIX}: {args.input}: {text}", file=sys.stderr)
        return EXIT_FAILURE
    return 0
