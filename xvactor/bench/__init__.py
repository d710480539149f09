"""``xvactor bench``: a DICOM load generator with latency percentiles and reports.

Layers, from the wire up: :mod:`.pdu` and :mod:`.dimse` (PS3.8 PDUs and PS3.7 command
sets, by hand), :mod:`.wire` (one association on a socket), :mod:`.instances` and
:mod:`.workload` (fresh instances from encoded templates), :mod:`.schedule` (closed and
open loop), :mod:`.metrics` (histograms, tallies), :mod:`.worker` and :mod:`.runner`
(processes), :mod:`.plan` (sweeps and comparisons), :mod:`.report` and :mod:`.html`
(summary, JSON, picture).  Nothing here imports pynetdicom; only :mod:`.workload` (run in
the parent) imports pydicom, so worker processes start fast.
"""

__all__: list[str] = []
