"""Linear-mixed-model maths behind :func:`multilivi.eval.association.lmm_scan`.

Each donor factor is a phenotype ``y`` (donors,). Under the null,

    y ~ N(X b, s ((1 - delta) K + delta I)),

with ``X`` = [intercept, donor covariates], kinship ``K`` and noise share ``delta`` (glimix-core's
parameterisation; ``delta = 1`` is ordinary least squares). ``delta`` is fitted once per factor
(REML by default), then every variant ``g`` is tested with ``delta`` fixed: the scale and all
fixed effects are refitted, giving the GLS residual quadratic forms ``r0`` (null) and ``r1``
(with ``g``). Two tests:

``"wald"`` (default)
    The GLS Wald t-test: ``t = alpha / se`` with ``se = sqrt(s1 / g^T P g)``, the conventional
    scale ``s1 = r1 / df`` and ``df = n - rank(X) - 1``, referred to Student's t with ``df``
    degrees of freedom (GEMMA's Wald test). Without kinship (``delta = 1``) this is the exact
    least-squares t-test (statsmodels OLS, FastQTL, MatrixEQTL, tensorQTL).
``"lrt"``
    The likelihood-ratio statistic of the profiled-scale ML likelihoods, ``n log(r0 / r1)``,
    referred to chi-square with one degree of freedom: glimix-core's ``FastScanner.fast_scan``.
    Anti-conservative at small ``n`` (it ignores the ``df`` lost to the fixed effects).

Both tests report the same effect and the same (conventional-scale) standard error.

The batched engine works in the space of error contrasts: with ``C`` (donors, donors - p) an
orthonormal basis of the complement of ``X`` and ``C^T K C = U diag(lam) U^T``, the rotation
``R = U^T C^T`` turns every GLS quantity into a weighted sum with weights
``1 / ((1 - delta) lam + delta)``, shared by all factors apart from ``delta``. So one
eigendecomposition serves every factor, and a chunk of variants is scanned against all factors
with two matrix products.

Every engine scans standardised variants and returns effects per standard deviation of the variant.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import special

from multilivi.eval.scratch import buffer

if TYPE_CHECKING:
    from glimix_core.lmm import LMM

logger = logging.getLogger(__name__)

EIGEN_TOL = float(np.sqrt(np.finfo(float).eps))  # kinship eigenvalues below this are zero (as economic_qs)
DELTA_GRID = np.concatenate([special.expit(np.linspace(-25.0, 25.0, 101)), [1.0]])
BISECTION_STEPS = 80  # halves a bracket of width <= 1 below one ulp
GLIMIX_MIN_DELTA = 1e-6  # lower bound on delta when glimix-core's unbounded fit fails
GLIMIX_TOL = 1e-6  # rtol and atol of glimix-core's Brent search on logit(delta) in LMM.fit
GLIMIX_LOGIT_MAX = float(np.log(np.finfo(float).max))  # glimix-core's upper bound on logit(delta)

TESTS = ("wald", "lrt")

ScanOutput = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


class Engine(Protocol):
    """A null model fitted per factor that scans chunks of standardised variants."""

    threaded: ClassVar[bool]  # chunks may be scanned on a thread pool (with one BLAS thread each)
    delta: NDArray[np.float64]  # (factors,) null noise share
    lml: NDArray[np.float64]  # (factors,) null log-likelihood

    def __init__(
        self,
        y: NDArray[np.float64],
        x: NDArray[np.float64],
        kinship: NDArray[np.float64] | None,
        reml: bool,
        test: str = "wald",
    ) -> None:
        """Fit the null of ``y`` (donors, factors) given ``x`` (donors, p) and kinship (donors, donors)."""
        ...

    def scan_chunk(self, g_std: NDArray[np.float64]) -> ScanOutput:
        """(donors, variants) standardised variants -> (factors, variants) p-values, effects, SEs."""
        ...


@dataclass(frozen=True)
class NullModel:
    """The shared rotation and the per-factor null fits.

    Attributes
    ----------
    rotation
        (donors - p, donors) ``R = U^T C^T``; maps donor vectors to decorrelated error contrasts.
    lam
        (donors - p,) eigenvalues of ``C^T K C`` (zeros without kinship).
    y_rot
        (donors - p, factors) rotated phenotypes.
    delta
        (factors,) fitted noise share per factor.
    lml
        (factors,) REML (or ML) log-likelihood at ``delta``, glimix-core's constants.
    r0
        (factors,) null GLS residual quadratic form ``y^T P y`` at ``delta``.
    """

    rotation: NDArray[np.float64]
    lam: NDArray[np.float64]
    y_rot: NDArray[np.float64]
    delta: NDArray[np.float64]
    lml: NDArray[np.float64]
    r0: NDArray[np.float64]

    @property
    def n_donors(self) -> int:
        return self.rotation.shape[1]

    @property
    def df(self) -> int:
        """Residual degrees of freedom of a variant's test, ``n - rank(X) - 1``."""
        return self.rotation.shape[0] - 1

    @property
    def weights(self) -> NDArray[np.float64]:
        """(factors, donors - p) GLS weights ``1 / ((1 - delta) lam + delta)``."""
        return 1.0 / _diag(self.lam, self.delta)


def fit_null(
    y: NDArray[np.float64],
    covariates: NDArray[np.float64],
    kinship: NDArray[np.float64] | None,
    *,
    reml: bool = True,
    delta: NDArray[np.float64] | None = None,
) -> NullModel:
    """Fit the null noise share of every factor at once.

    The profiled (REML or ML) log-likelihood is evaluated on a logistic grid of ``delta`` for all
    factors, and the best grid cell is polished by bisection on the sign of the analytic score
    until the bracket is below one ulp, so ``delta`` is found to machine precision. Boundary
    optima (``delta = 1``, no kinship variance) are reached exactly.

    Parameters
    ----------
    y
        (donors, factors) phenotypes.
    covariates
        (donors, p) fixed-effect design including the intercept; full column rank.
    kinship
        (donors, donors) kinship, or None for ordinary least squares (``delta = 1``).
    reml
        Restricted (default) or full maximum likelihood.
    delta
        (factors,) noise shares to use instead of fitting them (e.g. another engine's).
    """
    p = covariates.shape[1]
    if np.linalg.matrix_rank(covariates) < p:
        raise ValueError(
            f"the fixed effects (intercept + {p - 1} covariates) are collinear; "
            "drop constant or duplicated covariate columns"
        )
    rotation, lam, s_full = _contrast_rotation(covariates, kinship)
    y_rot = rotation @ y
    problem = _Likelihood(y_rot, lam, s_full, reml)
    if kinship is None:
        delta = np.ones(y.shape[1])
    elif delta is not None:
        delta = np.asarray(delta, dtype=np.float64)
    else:
        delta = _fit_delta(problem, reml)
    return NullModel(rotation, lam, y_rot, delta, problem.lml(delta), problem.residual(delta))


def _contrast_rotation(
    covariates: NDArray[np.float64], kinship: NDArray[np.float64] | None
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Rotation ``R`` (n - p, n), eigenvalues ``lam`` (n - p,) of ``C^T K C`` and of ``K`` (n,)."""
    n, p = covariates.shape
    contrasts = np.linalg.qr(covariates, mode="complete")[0][:, p:]  # (n, n - p)
    if kinship is None:
        return contrasts.T, np.zeros(n - p), np.ones(n)
    s_full, q_full = np.linalg.eigh(kinship)
    s_full = np.where(s_full >= EIGEN_TOL, s_full, 0.0)
    projected = contrasts.T @ (q_full * s_full) @ (q_full.T @ contrasts)
    lam, u = np.linalg.eigh((projected + projected.T) / 2)
    return u.T @ contrasts.T, np.clip(lam, 0.0, None), s_full


def _fit_delta(problem: _Likelihood, reml: bool) -> NDArray[np.float64]:
    """(factors,) maximum-likelihood ``delta``; ML's lower bound stays above 0 (logged when reached)."""
    lowest = 0.0 if reml and problem.lam.min() >= EIGEN_TOL else DELTA_GRID[0]
    delta = problem.maximise(lowest)
    if not reml and np.any(delta <= lowest):
        logger.warning(
            "ML null fit reached the lower bound delta=%.1e for %d factors; the ML likelihood is "
            "unbounded there with a centred kinship, prefer reml=True",
            lowest,
            int(np.sum(delta <= lowest)),
        )
    return delta


class _Likelihood:
    """Profiled log-likelihood of ``delta`` for many factors, in the rotated contrast space."""

    def __init__(self, y_rot: NDArray, lam: NDArray, s_full: NDArray, reml: bool) -> None:
        self.y2 = y_rot.T**2  # (factors, n - p)
        self.lam = lam
        self.df = len(lam) if reml else len(s_full)
        self.logdet_eig = lam if reml else s_full

    def residual(self, delta: NDArray) -> NDArray:
        return np.einsum("fi,fi->f", self.y2, 1.0 / _diag(self.lam, delta))

    def lml(self, delta: NDArray) -> NDArray:
        logdet = np.log(_diag(self.logdet_eig, delta)).sum(axis=1)
        df = self.df
        return -0.5 * (df * (np.log(2 * np.pi) + 1.0 + np.log(self.residual(delta) / df)) + logdet)

    def score(self, delta: NDArray) -> NDArray:
        """Derivative of :meth:`lml` in ``delta``: ``df/2 (y^T P D' P y) / (y^T P y) - tr(D' D^-1) / 2``."""
        inv = 1.0 / _diag(self.lam, delta)
        weighted = self.y2 * inv
        num = (weighted * inv) @ (1.0 - self.lam)
        residual = weighted.sum(axis=1)
        logdet_inv = inv if self.logdet_eig is self.lam else 1.0 / _diag(self.logdet_eig, delta)
        trace = logdet_inv @ (1.0 - self.logdet_eig)
        return 0.5 * (self.df * num / residual - trace)

    def maximise(self, lowest: float) -> NDArray:
        """``delta`` in ``[lowest, 1]`` maximising the likelihood, per factor."""
        n_factors = self.y2.shape[0]
        deltas = np.concatenate([[lowest], DELTA_GRID[lowest < DELTA_GRID]])
        grid = np.array([self.lml(np.full(n_factors, d)) for d in deltas])  # (grid, factors)
        best = np.nanargmax(grid, axis=0)
        lo = deltas[np.maximum(best - 1, 0)]
        hi = deltas[np.minimum(best + 1, len(deltas) - 1)]
        for _ in range(BISECTION_STEPS):
            mid = 0.5 * (lo + hi)
            if np.all((mid == lo) | (mid == hi)):  # every bracket is down to adjacent floats
                break
            rising = self.score(mid) > 0
            lo, hi = np.where(rising, mid, lo), np.where(rising, hi, mid)
        candidates = np.stack([lo, hi, deltas[best]])
        values = np.stack([self.lml(c) for c in candidates])
        return candidates[np.nanargmax(values, axis=0), np.arange(n_factors)]


def _diag(eigenvalues: NDArray, delta: NDArray) -> NDArray:
    """(factors, k) diagonal ``(1 - delta) eigenvalues + delta`` of the scaled covariance."""
    delta = np.asarray(delta, dtype=float)[:, None]
    return (1.0 - delta) * eigenvalues[None, :] + delta


def scan_rotated(null: NullModel, g_rot: NDArray[np.float64], test: str = "wald") -> ScanOutput:
    """Scan rotated, standardised variants against every factor at its null ``delta``.

    Parameters
    ----------
    null
        Output of :func:`fit_null`.
    g_rot
        (donors - p, variants) ``R @ standardised genotypes``.
    test
        ``"wald"`` (t-test with ``null.df`` degrees of freedom) or ``"lrt"`` (chi-square(1)).

    Returns
    -------
    pvalues, alpha, se
        (factors, variants) p-values, effect sizes and standard errors per standard deviation of
        the variant. ``se`` is ``sqrt(s1 / g^T P g)`` with the conventional scale
        ``s1 = r1 / (n - p - 1)``, i.e. ``sqrt(diag(s1 (E^T V^-1 E)^-1))`` for ``E = [X, g]`` and
        ``V = (1 - delta) K + delta I``: what statsmodels OLS (or GLS given ``V``) reports.
    """
    _check_test(test)
    w = null.weights  # (F, k)
    gpy = (w * null.y_rot.T) @ g_rot  # (F, m)  g^T P y
    gpg = w @ np.square(g_rot)  # (F, m)  g^T P g
    return gls_outputs(gpy, gpg, null.r0, null.df, null.n_donors, test)


def gls_outputs(
    gpy: NDArray[np.float64], gpg: NDArray[np.float64], r0: NDArray[np.float64], df: int, n: int, test: str
) -> ScanOutput:
    """P-values, effects and SEs from ``gpy`` (F, m) ``g^T P y`` (overwritten) and ``gpg`` ``g^T P g``.

    ``gpg`` is (F, m), or (1, m) when it is shared by every factor (OLS); ``r0`` (F,) is ``y^T P y``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = gpy / gpg
        explained = np.multiply(gpy, alpha, out=gpy)  # r0 - r1, then (r0 - r1) / r0
        explained /= r0[:, None]
        np.minimum(explained, 1.0 - np.finfo(float).eps, out=explained)
        se = np.subtract(1.0, explained)  # r1 / r0
        se *= (r0 / df)[:, None]  # conventional scale s1
        se /= gpg
        np.sqrt(se, out=se)
        pvalues = t_pvalues(alpha / se, df) if test == "wald" else lrt_pvalues(explained, n)
    return pvalues, alpha, se


def t_pvalues(t: NDArray[np.float64], df: int) -> NDArray[np.float64]:
    """Two-sided p-values of t statistics (any shape) with ``df`` degrees of freedom."""
    return 2.0 * special.stdtr(df, -np.abs(t))


def lrt_pvalues(explained: NDArray[np.float64], n: int) -> NDArray[np.float64]:
    """Chi-square(1) p-values of ``n log(r0 / r1)`` from ``explained = 1 - r1 / r0`` (overwritten)."""
    half_stat = np.log1p(np.negative(explained, out=explained), out=explained)
    half_stat *= -0.5 * n  # LRT / 2 = -(n / 2) log(r1 / r0)
    return special.erfc(np.sqrt(half_stat, out=half_stat), out=half_stat)


class BatchedEngine:
    """All factors x a chunk of variants per call, by :func:`scan_rotated` (see module docstring).

    :meth:`scan_u` is the cheap statistic of a bounded scan: each variant rotated once, the GLS
    weights folded into the phenotypes, ``u = |g^T P y| / sqrt(g^T P g y^T P y)`` with two
    products per chunk and no p-value.
    """

    threaded: ClassVar[bool] = True

    def __init__(
        self,
        y: NDArray[np.float64],
        x: NDArray[np.float64],
        kinship: NDArray[np.float64] | None,
        reml: bool,
        test: str = "wald",
    ) -> None:
        """Fit the null of ``y`` (donors, factors) given design ``x`` (donors, p) and kinship."""
        _check_test(test)
        self.null = fit_null(y, x, kinship, reml=reml)
        self.delta, self.lml = self.null.delta, self.null.lml
        self.test = test
        self.df, self.n = self.null.df, self.null.n_donors
        w = self.null.weights
        self._u_operands = {np.dtype(np.float64): self._operands(w)}

    def _operands(self, w: NDArray[np.float64]) -> tuple[NDArray, ...]:
        """Rotation, weighted phenotypes ``w y_rot / sqrt(r0)`` and weights of :meth:`scan_u`."""
        wy = (w * self.null.y_rot.T) / np.sqrt(self.null.r0)[:, None]
        return self.null.rotation, wy, w

    def scan_chunk(self, g_std: NDArray[np.float64]) -> ScanOutput:
        """(donors, variants) standardised variants -> (factors, variants) p-values, effects, SEs."""
        return scan_rotated(self.null, self.null.rotation @ g_std, self.test)

    def scan_u(
        self,
        g: NDArray[np.floating],
        dtype: type = np.float64,
        scale: float = 1.0,
        out: NDArray[np.floating] | None = None,
    ) -> NDArray[np.floating]:
        """(donors, variants) centred variants -> (factors, variants) ``scale * u`` (``u`` in [0, 1]).

        ``u`` does not depend on the variants' scale. ``out``: a (factors, variants) array of ``dtype``.
        """
        rotation, wy, w = self.u_operands(dtype, scale)
        g_rot = np.matmul(
            rotation, g.astype(dtype, copy=False), out=buffer("g_rot", (len(rotation), g.shape[1]), dtype)
        )
        u = np.matmul(wy, g_rot, out=out)
        np.abs(u, out=u)
        gpg = np.matmul(w, np.square(g_rot, out=g_rot), out=buffer("gpg", u.shape, dtype))
        u /= np.sqrt(gpg, out=gpg)
        return u

    def u_operands(self, dtype: type, scale: float) -> tuple[NDArray, ...]:
        """The operands of :meth:`scan_u` in ``dtype``, the phenotype side multiplied by ``scale``."""
        key = (np.dtype(dtype), scale)
        if key not in self._u_operands:
            first, phenotypes, *rest = self._u_operands[np.dtype(np.float64)]
            self._u_operands[key] = tuple(a.astype(dtype) for a in (first, phenotypes * scale, *rest))
        return self._u_operands[key]


class OlsEngine(BatchedEngine):
    """Ordinary least squares by residualise-then-correlate (the batched engine's model with ``delta = 1``).

    The phenotypes are residualised on the design once; each chunk of variants is residualised on
    the (donors, p) orthonormal design basis ``Q`` (``g - Q Q^T g``), and one product gives
    ``g^T y`` for all factors: 2 n flops per test instead of the rotation's 2 n^2 per variant.
    """

    def __init__(
        self, y: NDArray[np.float64], x: NDArray[np.float64], kinship: None, reml: bool, test: str = "wald"
    ) -> None:
        super().__init__(y, x, None, reml, test)
        self.basis = np.linalg.qr(x)[0]  # (n, p)
        y_res = y - self.basis @ (self.basis.T @ y)
        self.y_res_t = np.ascontiguousarray(y_res.T)  # (F, n)
        self.r0 = np.square(y_res).sum(axis=0)  # (F,)
        self._u_operands = {np.dtype(np.float64): (self.basis, self.y_res_t / np.sqrt(self.r0)[:, None])}

    def scan_chunk(self, g_std: NDArray[np.float64]) -> ScanOutput:
        """(donors, variants) standardised variants -> (factors, variants) p-values, effects, SEs."""
        g_res = g_std - self.basis @ (self.basis.T @ g_std)
        gpg = np.square(g_res).sum(axis=0)[None, :]  # (1, m), shared by all factors
        return gls_outputs(self.y_res_t @ g_res, gpg, self.r0, self.df, self.n, self.test)

    def scan_u(
        self,
        g: NDArray[np.floating],
        dtype: type = np.float64,
        scale: float = 1.0,
        out: NDArray[np.floating] | None = None,
    ) -> NDArray[np.floating]:
        """(donors, variants) centred variants, any scale -> (factors, variants) ``scale * |r|`` into ``out``.

        The residualised phenotypes are orthogonal to the design, so ``r = y_res^T g / |g_res|``
        without forming ``g_res``, and ``|g_res|^2 = |g|^2 - |Q^T g|^2``.
        """
        basis, y_unit = self.u_operands(dtype, 1.0)
        g = g.astype(dtype, copy=False)
        u = np.matmul(y_unit, g, out=out)
        np.abs(u, out=u)
        u *= scale / np.sqrt(np.einsum("ij,ij->j", g, g) - np.square(basis.T @ g).sum(axis=0))
        return u


class GlimixEngine:
    """glimix-core, one factor at a time: ``LMM(...).fit()`` then ``get_fast_scanner().fast_scan``.

    glimix-core's LRT p-values (``test="lrt"``), or the Wald t-test built from its effects and
    standard errors; its ML-scale standard errors are put on the conventional scale
    (``* sqrt(n / df)``). Its scanners are not shared across threads, and its fits run with the
    caller's BLAS threads.
    """

    threaded: ClassVar[bool] = False

    def __init__(
        self,
        y: NDArray[np.float64],
        x: NDArray[np.float64],
        kinship: NDArray[np.float64],
        reml: bool,
        test: str = "wald",
    ) -> None:
        """Fit one glimix-core ``LMM`` per column of ``y`` (donors, factors) given ``x`` (donors, p)."""
        from numpy_sugar.linalg import economic_qs

        _check_test(test)
        qs = economic_qs(kinship)
        models = [_glimix_fit(f, column, x, qs, reml) for f, column in enumerate(y.T)]
        self.delta = np.array([lmm.delta for lmm in models])
        self.lml = np.array([lmm.lml() for lmm in models])
        self.scanners = [lmm.get_fast_scanner() for lmm in models]
        self.multi_covariate = x.shape[1] > 1
        self.test = test
        self.n, self.df = x.shape[0], x.shape[0] - x.shape[1] - 1

    def scan_chunk(self, g_std: NDArray[np.float64]) -> ScanOutput:
        """(donors, variants) standardised variants -> (factors, variants) p-values, effects, SEs."""
        shape = (len(self.scanners), g_std.shape[1])
        pvalues, alpha, se = np.empty(shape), np.empty(shape), np.empty(shape)
        for f, scanner in enumerate(self.scanners):
            out = scanner.fast_scan(g_std, verbose=False)
            alpha[f] = out["effsizes1"]
            # glimix-core's multi-covariate branch returns sqrt(diag((E^T B E)^-1)) without the scale.
            se_ml = out["effsizes1_se"] * (np.sqrt(out["scale"]) if self.multi_covariate else 1.0)
            se[f] = se_ml * np.sqrt(self.n / self.df)
            if self.test == "lrt":
                stat = np.clip(2.0 * (out["lml"] - scanner.null_lml()), 0.0, None)
                pvalues[f] = special.erfc(np.sqrt(0.5 * stat))
            else:
                pvalues[f] = t_pvalues(alpha[f] / se[f], self.df)
        return pvalues, alpha, se


def _check_test(test: str) -> None:
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")


def _glimix_fit(factor: int, y: NDArray[np.float64], x: NDArray[np.float64], qs: tuple, reml: bool) -> LMM:
    """glimix-core's ``LMM`` of ``y`` (donors,), fitted; bounded at ``GLIMIX_MIN_DELTA`` if its fit fails."""
    from glimix_core.lmm import LMM

    lmm = LMM(y, x, qs, restricted=reml)
    try:
        lmm.fit(verbose=False)
    except ValueError as error:
        # Below delta = 1.5e-8 glimix-core drops the noise term, so with a kinship null space
        # (K 1 = 0) its REML determinant turns non-positive; keep it above that.
        logger.warning(
            "glimix-core fit of factor %d failed (%s); refitting with delta >= %g",
            factor,
            error,
            GLIMIX_MIN_DELTA,
        )
        lmm = _glimix_bounded_fit(LMM(y, x, qs, restricted=reml))
    return lmm


def _glimix_bounded_fit(lmm: LMM) -> LMM:
    """Fit ``lmm`` (a fresh glimix-core ``LMM``) as its ``fit`` does, with ``delta >= GLIMIX_MIN_DELTA``.

    glimix-core's own search (Brent on ``logit(delta)``, its tolerances and upper bound), run on its
    public ``delta``, ``fix`` and ``lml``; the fitted ``delta`` stays fixed.
    """
    from brent_search import minimize

    lmm.fix("delta")

    def negative_lml(logit_delta: float) -> float:
        lmm.delta = special.expit(logit_delta)
        lmm.fit(verbose=False)  # fixed delta: only the fixed effects and the scale are updated
        return -lmm.lml()

    lowest = float(special.logit(GLIMIX_MIN_DELTA))
    best = minimize(negative_lml, a=lowest, b=GLIMIX_LOGIT_MAX, rtol=GLIMIX_TOL, atol=GLIMIX_TOL)[0]
    lmm.delta = special.expit(best)
    lmm.fit(verbose=False)
    return lmm


ENGINES: dict[str, type[Engine]] = {"batched": BatchedEngine, "glimix": GlimixEngine, "ols": OlsEngine}
