"""retained_heap keeps a training step's freed memory in the process (counted by page faults)."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from multilivi.models.allocator import _glibc, retained_heap

BLOCK = 2**21  # float32 elements: 8 MiB, a (1,024 × 2,048) activation
BLOCKS = 24  # 192 MiB alive at once, as a step's saved activations are


def _faults_of_a_step() -> int:
    """Minor page faults of allocating, touching and freeing ``BLOCKS`` 8 MiB tensors, once warmed up."""
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        alive = [torch.ones(BLOCK) for _ in range(BLOCKS)]
        del alive
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _resident_pages() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1])


@pytest.mark.skipif(
    _glibc() is None, reason="retained_heap tunes glibc's malloc; this C library is not glibc"
)
def test_a_repeated_step_reuses_its_memory_within_retained_heap_and_gives_it_back_after() -> None:
    # in a fresh interpreter: the heap of this one carries whatever the tests before left in it
    script = (
        "import torch\n"
        "from tests.models.test_models_allocator import _faults_of_a_step, _resident_pages\n"
        "from multilivi.models.allocator import retained_heap\n"
        "outside = _faults_of_a_step()\n"
        "with retained_heap(torch.device('cpu')):\n"
        "    inside = _faults_of_a_step()\n"
        "    held = _resident_pages()\n"
        "print(outside, inside, held - _resident_pages())\n"
    )
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=root)
    outside, inside, released = map(int, run.stdout.split())
    pages = BLOCKS * BLOCK * 4 // resource.getpagesize()
    assert outside > 0.5 * pages, (outside, pages)  # glibc's default: every step faults its memory in
    assert inside < 0.2 * pages, (inside, pages)
    assert released > 0.8 * pages, (released, pages)


def test_retained_heap_leaves_other_devices_alone() -> None:
    with retained_heap(torch.device("meta")):
        assert torch.empty(4, device="meta").shape == (4,)
