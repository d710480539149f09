"""A minimal plain pynetdicom Storage SCP: the baseline that xvactor is compared against.

Usage::

    python benchmarks/plain_pynetdicom_scp.py PORT OUTPUT_DIR [AE_TITLE]

It listens on 127.0.0.1:PORT, accepts every storage SOP class with Explicit VR Little
Endian or Implicit VR Little Endian (plus Verification), offers a 256 KiB maximum PDU,
writes each received object exactly as encoded (``event.encoded_dataset()``, a DICOM
Part 10 file) to ``OUTPUT_DIR/<SOP Instance UID>.dcm``, fsyncs it and answers 0x0000.
TCP_NODELAY is set on every accepted socket (pynetdicom never does it itself; without it
each C-STORE pays a 40 ms delayed-ACK stall). Stop it with SIGTERM or SIGINT.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType

from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import Verification

MAX_PDU = 262144
TRANSFER_SYNTAXES = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]


def make_handlers(out_dir: Path) -> list[tuple[evt.EventType, object]]:
    def on_conn_open(event: Event) -> None:
        # pynetdicom 3.0.4: Association.dul.socket is the AssociationSocket created for
        # the accepted connection (transport.py, _create_association) before
        # EVT_CONN_OPEN is triggered; its .socket attribute is the plain socket.socket.
        sock = event.assoc.dul.socket.socket
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def on_c_store(event: Event) -> int:
        uid = str(event.request.AffectedSOPInstanceUID)
        data = event.encoded_dataset()
        fd = os.open(out_dir / f"{uid}.dcm", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        return 0x0000

    return [(evt.EVT_CONN_OPEN, on_conn_open), (evt.EVT_C_STORE, on_c_store)]


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    port = int(argv[1])
    out_dir = Path(argv[2])
    ae_title = argv[3] if len(argv) == 4 else "PLAINSCP"
    out_dir.mkdir(parents=True, exist_ok=True)

    ae = AE(ae_title=ae_title)
    ae.maximum_pdu_size = MAX_PDU
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
    ae.add_supported_context(Verification, TRANSFER_SYNTAXES)

    signal.signal(signal.SIGTERM, _stop)
    with contextlib.suppress(KeyboardInterrupt):
        ae.start_server(("127.0.0.1", port), block=True, evt_handlers=make_handlers(out_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
