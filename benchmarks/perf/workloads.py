"""Workloads shared by the performance benchmarks: association cohorts, the parity check against
glimix-core, the matrix-multiply bound, and a description of the machine.

Nothing here is timed; the ``test_perf_*`` modules time these workloads with pytest-benchmark.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass
from importlib.metadata import version

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from multilivi.data import Genotypes, kinship_from_genotypes, standardised_genotypes
from multilivi.data.simulate import simulate_genotypes
from multilivi.eval.association import AssociationResult, lmm_scan
from multilivi.eval.lmm import GlimixEngine, fit_null, scan_rotated

N_FACTORS = 100
N_COVARIATES = 3  # plus the intercept
N_KINSHIP_VARIANTS = 10_000  # variants behind the GRM (the first ones of the tested panel)
HERITABILITY = 0.3
PARITY_TOLERANCE = 1e-6  # |delta log10 p| <= tol * max(1, |log10 p|), as tests/eval/test_eval_association.py


@dataclass(frozen=True)
class GlimixSubset:
    """How much of a case the per-factor glimix-core loop is run on (then extrapolated linearly)."""

    n_factors: int
    n_variants: int


# glimix-core costs about 100 us per test at 100 donors and 1-3 ms per test at 1,000 donors here
GLIMIX_SUBSETS = {100: GlimixSubset(5, 4_000), 1_000: GlimixSubset(2, 1_000)}


@dataclass(frozen=True)
class AssociationCase:
    """A simulated association problem: factors x variants with kinship and covariates."""

    phenotypes: pd.DataFrame  # (donors, factors)
    dosage: NDArray[np.float64]  # (donors, variants), NaN = missing
    donors: list[str]
    variant_ids: list[str]
    kinship: NDArray[np.float64]  # (donors, donors), Gower-normalised GRM
    covariates: pd.DataFrame  # (donors, N_COVARIATES)

    @property
    def n_donors(self) -> int:
        return len(self.donors)

    @property
    def n_variants(self) -> int:
        return len(self.variant_ids)

    @property
    def n_factors(self) -> int:
        return self.phenotypes.shape[1]

    @property
    def design(self) -> NDArray[np.float64]:
        """(donors, 1 + covariates) intercept and covariates."""
        return np.column_stack([np.ones(self.n_donors), self.covariates.to_numpy()])

    def scan(
        self, engine: str, n_factors: int | None = None, n_variants: int | None = None
    ) -> AssociationResult:
        """Run :func:`lmm_scan` on the first ``n_factors`` factors and ``n_variants`` variants."""
        factors = self.phenotypes.iloc[:, : n_factors or self.n_factors]
        stop = n_variants or self.n_variants
        return lmm_scan(
            factors,
            self.dosage[:, :stop],
            donors=self.donors,
            variant_ids=self.variant_ids[:stop],
            kinship=None if engine == "ols" else self.kinship,
            covariates=self.covariates,
            engine=engine,
        )


@functools.lru_cache(maxsize=1)  # the 1,000 x 100k case holds 0.8 GB of dosages; keep one case alive
def association_case(n_donors: int, n_variants: int, seed: int = 0) -> AssociationCase:
    """Simulated genotypes (structure, related pairs, missing calls), GRM kinship, covariates and
    ``N_FACTORS`` polygenic factors with covariate effects.

    The GRM is built from the first ``N_KINSHIP_VARIANTS`` variants of the panel.
    """
    donors = [f"donor{i:04d}" for i in range(n_donors)]
    genotypes = simulate_genotypes(donors, n_variants=n_variants, seed=seed)
    n_grm = min(N_KINSHIP_VARIANTS, n_variants)
    panel = Genotypes(genotypes.dosage[:, :n_grm], genotypes.donors, genotypes.variants.iloc[:n_grm])
    kinship = kinship_from_genotypes(panel).to_numpy()
    rng = np.random.default_rng(seed)
    covariates = pd.DataFrame(
        rng.normal(size=(n_donors, N_COVARIATES)),
        index=donors,
        columns=[f"cov{i}" for i in range(N_COVARIATES)],
    )
    genetic = np.linalg.cholesky(kinship + 1e-4 * np.eye(n_donors)) @ rng.normal(size=(n_donors, N_FACTORS))
    y = np.sqrt(HERITABILITY) * genetic + np.sqrt(1 - HERITABILITY) * rng.normal(size=(n_donors, N_FACTORS))
    y += covariates.to_numpy() @ rng.normal(size=(N_COVARIATES, N_FACTORS))
    phenotypes = pd.DataFrame(y, index=donors, columns=[f"D{i}" for i in range(N_FACTORS)])
    return AssociationCase(
        phenotypes, genotypes.dosage, donors, list(genotypes.variant_ids), kinship, covariates
    )


@dataclass(frozen=True)
class GlimixReference:
    """The per-factor glimix-core loop (the library's ``glimix`` engine) on a subset of a case.

    ``economic_qs(K)`` is done once per run, the null fit once per factor and the fast scan once per
    factor x variant, so the full case costs ``qs_s + factors * fit_s_per_factor + tests * scan_s_per_test``.
    """

    n_factors: int
    n_variants: int
    qs_s: float
    fit_s_per_factor: float
    scan_s_per_test: float
    delta: NDArray[np.float64]  # (subset factors,) glimix-core's null noise share
    pvalues: NDArray[np.float64]  # (subset factors, polymorphic subset variants)

    def seconds(self, n_factors: int, n_variants: int) -> float:
        """Extrapolated wall time of the loop over ``n_factors`` x ``n_variants``."""
        return self.qs_s + n_factors * self.fit_s_per_factor + n_factors * n_variants * self.scan_s_per_test


def glimix_reference(case: AssociationCase, subset: GlimixSubset) -> GlimixReference:
    """Time the glimix engine's phases (eigendecomposition, null fits, fast scans) on ``subset``.

    It runs with one BLAS thread, as the batched engine does: multi-threaded OpenBLAS on its small
    per-factor matrices is many times slower when other processes share the cores, which would
    inflate the speed-up.
    """
    from numpy_sugar.linalg import economic_qs
    from threadpoolctl import threadpool_limits

    y = case.phenotypes.iloc[:, : subset.n_factors].to_numpy()
    g_std, _ = standardised_genotypes(case.dosage[:, : subset.n_variants])
    with threadpool_limits(limits=1, user_api="blas"):
        start = time.perf_counter()
        economic_qs(case.kinship)
        qs_s = time.perf_counter() - start
        start = time.perf_counter()
        # the reference loop lmm_scan(engine="glimix") runs: economic_qs + one LMM fit per factor
        engine = GlimixEngine(y, case.design, case.kinship, reml=True)
        fit_s = max(time.perf_counter() - start - qs_s, 0.0)
        start = time.perf_counter()
        pvalues, _, _ = engine.scan_chunk(g_std)
        scan_s = time.perf_counter() - start
    return GlimixReference(
        subset.n_factors,
        g_std.shape[1],
        qs_s,
        fit_s / subset.n_factors,
        scan_s / pvalues.size,
        engine.delta,
        pvalues,
    )


@dataclass(frozen=True)
class Parity:
    """Batched engine against glimix-core on the glimix subset of a case."""

    n_tests: int
    max_rel_dlog10p: float  # max |dlog10 p| / max(1, |log10 p|) at glimix-core's delta (the criterion)
    max_abs_ddelta: float  # |delta_batched - delta_glimix|: glimix-core's optimiser tolerance (informative)

    @property
    def ok(self) -> bool:
        return self.max_rel_dlog10p <= PARITY_TOLERANCE


def parity(case: AssociationCase, reference: GlimixReference) -> Parity:
    """Compare the batched engine with glimix-core on the reference's factors and leading variants.

    As in the evaluation tests: the scan given glimix-core's null ``delta`` must reproduce its
    p-values to ``PARITY_TOLERANCE`` relative in log10 (glimix-core's optimiser stops ~1e-6 from the
    optimal ``delta``, so the two null fits differ a little; that difference is reported).
    """
    y = case.phenotypes.iloc[:, : reference.n_factors].to_numpy()
    null = fit_null(y, case.design, case.kinship, delta=reference.delta)
    g_std, _ = standardised_genotypes(case.dosage[:, : reference.n_variants])
    pvalues, _, _ = scan_rotated(null, null.rotation @ g_std)
    ours, theirs = np.log10(pvalues), np.log10(reference.pvalues)
    own = fit_null(y, case.design, case.kinship)
    return Parity(
        n_tests=int(pvalues.size),
        max_rel_dlog10p=float(np.max(np.abs(ours - theirs) / np.maximum(1.0, np.abs(theirs)))),
        max_abs_ddelta=float(np.max(np.abs(own.delta - reference.delta))),
    )


def gemm_operands(n_donors: int, n_variants: int, seed: int = 0) -> tuple[NDArray, NDArray]:
    """(factors, donors) and (donors, variants) float64 matrices: one GEMM = one pass of the scan."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(N_FACTORS, n_donors)), rng.normal(size=(n_donors, n_variants))


def blas_threads() -> str:
    """BLAS libraries and their thread counts, e.g. ``openblas 0.3.30 x2``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    seen = {
        f"{i['internal_api']} {i.get('version')} x{i['num_threads']}"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    }
    return ", ".join(sorted(seen)) or "none found"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import torch

    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "gpu": gpu_name() or "none",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "glimix-core": version("glimix-core"),
        "blas": blas_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (libgomp default: active spin)"),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
