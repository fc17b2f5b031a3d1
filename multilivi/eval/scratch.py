"""Per-thread scratch arrays reused from chunk to chunk by the association scan.

Fresh large arrays for every chunk cost page faults, and with threads glibc's adaptive mmap
threshold then serves them from fragmenting heaps (the resident size grew with the number of
chunks); reused buffers avoid both.
"""

from __future__ import annotations

import threading

import numpy as np
from numpy.typing import NDArray

_workspace = threading.local()


def buffer(name: str, shape: tuple[int, ...], dtype: type) -> NDArray:
    """The calling thread's scratch array ``name`` (``shape``, ``dtype``), valid until its next request."""
    arrays = _workspace.__dict__.setdefault("arrays", {})
    key, size = (name, np.dtype(dtype)), int(np.prod(shape))
    if key not in arrays or arrays[key].size < size:
        arrays[key] = np.empty(size, dtype)
    return arrays[key][:size].reshape(shape)
