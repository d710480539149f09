"""A receive worker process: ``python -m xvactor.worker`` (started by the node, not users).

It inherits one channel per listener from the node's dispatcher (``--channels``, with the
listen ``--addresses`` they stand for) and its configuration (in the environment), runs
the in-process receive tree on the connections handed over there, writes ``ready`` to
``--ready-fd`` once serving, and on SIGTERM or SIGINT drains its in-flight C-STOREs and
exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import signal
import socket
import sys

import anyio
import msgspec

from xvactor.actors.receivers import WORKER_CONFIG_ENV
from xvactor.config import NodeConfig
from xvactor.dicom.server import Channel
from xvactor.node import WorkerRole, running_node, tune_receiving_process

__all__ = ["main"]

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Linux: get SIGTERM when the node process dies, so no worker outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _serve(config: NodeConfig, role: WorkerRole, ready_fd: int) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with running_node(config, role=role):
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
            async for _ in signals:
                break


def main(argv: list[str] | None = None) -> int:
    """Entry point of a receive worker."""
    parser = argparse.ArgumentParser(prog="xvactor.worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--ready-fd", type=int, required=True)
    parser.add_argument("--channels", required=True)
    parser.add_argument("--addresses", required=True)
    args = parser.parse_args(argv)
    _die_with_parent()
    config = msgspec.json.decode(os.environ[WORKER_CONFIG_ENV], type=NodeConfig)
    logging.basicConfig(
        level=config.log_level.upper(),
        format=f"%(asctime)s %(levelname)s %(name)s[w{args.index}]: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    addresses = msgspec.json.decode(args.addresses, type=list[tuple[str, int]])
    channels = tuple(
        Channel(socket=socket.socket(fileno=int(fd)), address=address)
        for fd, address in zip(args.channels.split(","), addresses, strict=True)
    )
    role = WorkerRole(index=args.index, channels=channels)
    tune_receiving_process()
    try:
        anyio.run(_serve, config, role, args.ready_fd)
    except Exception as exc:  # one line for the node's log, no traceback
        print(f"xvactor worker {args.index}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
