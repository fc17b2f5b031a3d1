"""Keep freed memory in the process while a model trains on CPU (glibc's malloc only).

A training step allocates and frees its activations, tens of (batch × features) float32 arrays.
glibc's malloc hands a freed block back to the kernel once the free space at the top of its heap
exceeds the trim threshold (it adapts to twice the largest freed block, so about 16 MiB at batch
1,024 × 2,000 genes), so every step page-faults the same memory in again: at that size an element-wise
op on fresh memory took 1–3 ms instead of 0.2 ms, and small-encoder training ran ≈ 20 % slower
(benchmarks/perf/README.md, "Against the reference LIVI implementation"). :func:`retained_heap` raises
the trim threshold for the duration of a fit and serves blocks up to 32 MiB (glibc's ceiling) from
the heap; on exit it sets the values glibc's own adaptation reaches and returns the free pages.
Elsewhere (macOS, musl) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import logging
import platform
from collections.abc import Iterator

import torch

logger = logging.getLogger(__name__)

# mallopt parameters, glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_WHILE_TRAINING = 2**30
TRIM_AFTER = 2 * MMAP_THRESHOLD_MAX  # where glibc's adaptive threshold ends up after large frees


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """The process's C library when it is glibc, else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _mallopt(libc: ctypes.CDLL, param: int, value: int) -> None:
    if libc.mallopt(param, value) != 1:
        logger.debug("mallopt(%d, %d) was refused", param, value)


@contextlib.contextmanager
def retained_heap(device: torch.device) -> Iterator[None]:
    """Within the block, freed blocks up to 32 MiB stay in the process (``device`` CPU, glibc only)."""
    libc = _glibc() if device.type == "cpu" else None
    if libc is None:
        yield
        return
    _mallopt(libc, M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
    _mallopt(libc, M_TRIM_THRESHOLD, TRIM_WHILE_TRAINING)
    try:
        yield
    finally:
        _mallopt(libc, M_TRIM_THRESHOLD, TRIM_AFTER)
        libc.malloc_trim(0)
