"""Association throughput (factor x variant tests per second): batched LMM vs the per-factor
glimix-core loop vs OLS vs a plain GEMM of the same shape, all in the same run.

Every case also checks that the batched engine reproduces glimix-core's p-values on the glimix
subset (same null variance ratio, |dlog10 p| <= 1e-6 max(1, |log10 p|)).

glimix-core (the library's ``glimix`` engine) is run on a subset of factors and variants
(``workloads.GLIMIX_SUBSETS``) with its phases timed apart, and extrapolated linearly to the full case:
``economic_qs once + factors x null fit + factors x variants x per-test scan``.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.perf import workloads as wl

SIZES = [(100, 10_000), (100, 100_000), (1_000, 10_000), (1_000, 100_000)]
ENGINES = [
    "glimix",
    "batched",
    "ols",
    "gemm",
    "gemm-cuda",
]  # glimix first: its result is the parity reference
CASES = [pytest.param(n, m, e, id=f"{n}donors-{m // 1000}kvariants-{e}") for n, m in SIZES for e in ENGINES]

_references: dict[tuple[int, int], wl.GlimixReference] = {}  # (donors, variants) -> glimix-core on the subset


def _reference(case: wl.AssociationCase) -> wl.GlimixReference:
    key = (case.n_donors, case.n_variants)
    if key not in _references:
        _references[key] = wl.glimix_reference(case, wl.GLIMIX_SUBSETS[case.n_donors])
    return _references[key]


def _rounds(n_donors: int, n_variants: int) -> int:
    return 3 if n_donors * n_variants <= 10_000_000 else 1


@pytest.mark.parametrize(("n_donors", "n_variants", "engine"), CASES)
def test_association_throughput(benchmark, n_donors, n_variants, engine):
    case = wl.association_case(n_donors, n_variants)
    n_tests = case.n_factors * case.n_variants
    info = benchmark.extra_info
    info.update(
        kind="association",
        engine=engine,
        n_donors=n_donors,
        n_factors=case.n_factors,
        n_variants=n_variants,
        n_tests=n_tests,
    )

    if engine == "glimix":
        subset = wl.GLIMIX_SUBSETS[n_donors]
        reference = benchmark.pedantic(wl.glimix_reference, args=(case, subset), rounds=1, iterations=1)
        _references[(n_donors, n_variants)] = reference
        seconds = reference.seconds(case.n_factors, n_variants)
        info.update(
            measured_factors=reference.n_factors,
            measured_variants=reference.n_variants,
            measured_tests_per_s=1.0 / reference.scan_s_per_test,
            qs_s=reference.qs_s,
            fit_s_per_factor=reference.fit_s_per_factor,
            extrapolated=True,
        )
    elif engine in ("batched", "ols"):
        result = benchmark.pedantic(
            case.scan, args=(engine,), rounds=_rounds(n_donors, n_variants), iterations=1
        )
        assert np.isfinite(np.asarray(result.pvalues)).all()
        seconds = benchmark.stats.stats.min
    else:
        seconds = _gemm_seconds(benchmark, n_donors, n_variants, cuda=engine == "gemm-cuda")
        info.update(note="float64 (factors x donors) @ (donors x variants): one GEMM per test batch")
    info.update(seconds=seconds, tests_per_s=n_tests / seconds)

    check = wl.parity(case, _reference(case))
    info.update(
        parity_tests=check.n_tests,
        parity_max_rel_dlog10p=check.max_rel_dlog10p,
        parity_max_abs_ddelta=check.max_abs_ddelta,
    )
    assert check.ok, f"batched p-values differ from glimix-core's: {check}"


def _gemm_seconds(benchmark, n_donors: int, n_variants: int, *, cuda: bool) -> float:
    """Fastest of 5 runs of the GEMM that bounds a test batch, on the CPU or the GPU."""
    a, b = wl.gemm_operands(n_donors, n_variants)
    if cuda:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("no CUDA device: the GPU GEMM bound needs one")
        a, b = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()

        def product():
            out = a @ b
            torch.cuda.synchronize()
            return out
    else:

        def product():
            return a @ b

    benchmark.pedantic(product, rounds=5, iterations=1, warmup_rounds=1)
    return benchmark.stats.stats.min
