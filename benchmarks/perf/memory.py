"""Peak resident memory of this process, per stage where the kernel allows it.

``getrusage(RUSAGE_SELF).ru_maxrss`` is wrong for a benchmark's child process on Linux: ``exec``
keeps the high-water mark of the forked parent's address space, so a child started by a parent
that holds a cohort reports the parent's memory. ``VmHWM`` in ``/proc/self/status`` belongs to the
process's own address space (new at ``exec``) and can be reset between stages by writing ``5`` to
``/proc/self/clear_refs``.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

STATUS, CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def peak_rss_mib() -> float:
    """The peak resident set size of this process since it started (or since :func:`reset_peak`)."""
    if STATUS.exists():
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # outside Linux, KiB


def reset_peak() -> None:
    """Restart the peak at the current RSS (Linux); elsewhere the peaks stay cumulative."""
    with contextlib.suppress(OSError):
        CLEAR_REFS.write_text("5")
