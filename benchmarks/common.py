"""Helpers the benchmark scripts share (the versions and commit come from xvactor.bench)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

__all__ = ["find_orthanc", "first_line"]


def find_orthanc(override: str | None = None) -> str | None:
    """The Orthanc executable: ``override``, else the one on PATH or Debian's."""
    for cand in (override, shutil.which("Orthanc"), "/usr/sbin/Orthanc", "/usr/bin/Orthanc"):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def first_line(cmd: Sequence[str]) -> str:
    """The first non-empty line a command prints (its version, typically)."""
    try:
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    return lines[0] if lines else "unknown"
