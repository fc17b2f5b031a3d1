"""Peak resident memory of this process, per stage where the kernel allows it.

``getrusage(RUSAGE_SELF).ru_maxrss`` is wrong for a benchmark's child process on Linux: ``exec``
keeps the high-water mark of the forked parent's address space, so a child started by a parent
that holds a cohort reports the parent's memory. ``VmHWM`` in ``/proc/self/status`` belongs to the
process's own address space (new at ``exec``) and can be reset between stages by writing ``5`` to
``/proc/self/clear_refs``. :func:`measured_run` runs a command under a small launcher process, so
that the peak it reports is the command's (and its workers'), not the caller's.
"""

from __future__ import annotations

import contextlib
import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
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


# run by a fresh interpreter that imports nothing else: its children's peak is the command's own
_LAUNCHER = """
import json, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"returncode": code, "wall_s": time.perf_counter() - start,
                  "peak_rss_kib": usage.ru_maxrss, "cpu_s": usage.ru_utime + usage.ru_stime}))
"""


@dataclass(frozen=True)
class MeasuredRun:
    """Exit code, wall and CPU seconds, and peak RSS (MiB) of a command and the processes it waited for."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    stderr: str


def measured_run(command: Sequence[str]) -> MeasuredRun:
    """Run ``command`` (its stdout discarded) and measure it from a launcher that holds almost nothing.

    ``RUSAGE_CHILDREN`` of the caller would start at the caller's own size: a child forked from it
    counts the parent's pages until ``exec``. The launcher is a bare interpreter (≈ 10 MB), so the
    peak is that of ``command`` or of the largest process it waited for (its worker processes).
    """
    done = subprocess.run([sys.executable, "-c", _LAUNCHER, *command], capture_output=True, text=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return MeasuredRun(
        returncode=report["returncode"],
        wall_s=report["wall_s"],
        cpu_s=report["cpu_s"],
        peak_rss_mib=report["peak_rss_kib"] / 1024,  # Linux reports KiB
        stderr=done.stderr,
    )
