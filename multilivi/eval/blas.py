"""One BLAS thread for a block of code, without threadpoolctl's library scan on every call.

``threadpool_limits`` inspects every loaded shared library each time it is entered (about 8 ms
here), which a scan of 10^7 tests taking 0.1 s would pay twice; the controller is built once.
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def one_blas_thread() -> AbstractContextManager:
    """A context in which the BLAS libraries loaded when first called use one thread."""
    return _controller().limit(limits=1, user_api="blas")
