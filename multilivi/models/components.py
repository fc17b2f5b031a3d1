"""Building blocks shared by LIVI, MultiSLIVI and DMLIVI.

Pure likelihood and posterior functions first (each tested against an independent reference),
then the two ``nn.Module`` pieces: the encoder MLP and the per-modality linear decoder.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

SIGMA_FLOOR = 1e-4  # added to exp(.) of the encoder's scale head, as the LIVI reference does
# cap of the scale head's log σ: an expert pushed towards "uninformative" (DMLIVI's RNA shared
# expert at λ_prot = 50) otherwise grows until exp overflows and the gradients become NaN
LOG_SIGMA_MAX = 10.0


# ---------------------------------------------------------------------------------- likelihoods
def digamma_positive(z: Tensor) -> Tensor:
    """ψ(z) for z > 0 from element-wise arithmetic: six steps of ψ(z) = ψ(z + 1) − 1/z, then the
    asymptotic series at w = z + 6 through its w⁻⁶ term (truncation error < 3·10⁻⁹).

    Matches ``torch.digamma`` to float32 rounding (tested against scipy) at a quarter of its CPU time:
    torch's CPU digamma is a scalar loop, and it is the gradient of every ``lgamma(x + θ)`` in training.
    """
    shift = torch.reciprocal(z)
    w = z + 1.0
    for _ in range(5):
        shift = shift + torch.reciprocal(w)
        w = w + 1.0
    r = torch.reciprocal(w)
    r2 = r * r
    series = r2 * (1.0 / 12 - r2 * (1.0 / 120 - r2 * (1.0 / 252)))
    return torch.log(w) - 0.5 * r - series - shift


class _LogGammaPositive(torch.autograd.Function):
    """``lgamma(z)`` for z > 0 whose backward uses :func:`digamma_positive`."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, z: Tensor) -> Tensor:
        ctx.save_for_backward(z)
        return torch.lgamma(z)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        (z,) = ctx.saved_tensors
        return grad * digamma_positive(z)


def lgamma_positive(z: Tensor) -> Tensor:
    """``torch.lgamma`` for z > 0 with a faster gradient (:func:`digamma_positive`)."""
    return _LogGammaPositive.apply(z)


def log_nb(x: Tensor, mu: Tensor, theta: Tensor, eps: float = 1e-8, *, with_factorial: bool = True) -> Tensor:
    """Negative-binomial log-probability in the (mean, inverse-dispersion) parameterisation.

    ``p(x) = Γ(x+θ) / (Γ(θ) x!) · (θ/(θ+μ))^θ · (μ/(θ+μ))^x``, i.e. torch's
    ``NegativeBinomial(total_count=θ, probs=μ/(μ+θ))``, with mean μ and variance μ + μ²/θ.
    ``with_factorial=False`` leaves out ``−log x!``, which has no parameters: training subtracts its
    per-cell sum (:func:`log_factorial_sums`, computed once from the non-zero counts) instead.

    Parameters
    ----------
    x
        Counts, any shape (..., n_features).
    mu
        Means (> 0), broadcastable to ``x``.
    theta
        Inverse dispersions (> 0), broadcastable to ``x``.
    eps
        Guards the logarithms at μ = 0.
    with_factorial
        Include ``−log x!``.

    Returns
    -------
    Tensor
        Element-wise log-probabilities, the broadcast shape of the inputs.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    log_p = (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + lgamma_positive(x + theta)
        - torch.lgamma(theta)
    )
    return log_p - torch.lgamma(x + 1.0) if with_factorial else log_p


def log_factorial_sums(counts: sp.csr_matrix) -> np.ndarray:
    """``Σ_features log(x!)`` of each row, (n_rows,) float32, from the stored values (zeros add 0).

    The NB likelihood's one parameter-free term: the batches carry it, so a training step evaluates
    ``lgamma(x + 1)`` at no (cells × features) entry. Accumulated in float64.
    """
    values = torch.lgamma(torch.from_numpy(np.asarray(counts.data, dtype=np.float32)) + 1.0).numpy()
    running = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return (running[counts.indptr[1:]] - running[counts.indptr[:-1]]).astype(np.float32)


def log_nb_mixture(
    x: Tensor, mu_bg: Tensor, mu_fg: Tensor, theta: Tensor, logit_bg: Tensor, *, with_factorial: bool = True
) -> Tensor:
    """Log-probability of a background/foreground two-component NB mixture (totalVI's protein model).

    ``p(x) = π NB(x; μ_bg, θ) + (1 − π) NB(x; μ_fg, θ)`` with ``π = sigmoid(logit_bg)``, computed with
    ``logsumexp`` so it stays finite for zero counts and saturated weights. At ``logit_bg → −∞`` it
    is ``log_nb(x, mu_fg, theta)``, at ``+∞`` it is ``log_nb(x, mu_bg, theta)``.

    Parameters
    ----------
    x
        Counts (..., n_features).
    mu_bg, mu_fg
        Background and foreground means, broadcastable to ``x``.
    theta
        Inverse dispersion shared by both components, broadcastable to ``x``.
    logit_bg
        Logit of the background weight π, broadcastable to ``x``.
    with_factorial
        Include ``−log x!`` (both components share it; see :func:`log_nb`).

    Returns
    -------
    Tensor
        Element-wise log-probabilities.
    """
    # log π + log NB_bg and log(1 − π) + log NB_fg, both without their shared −log x!
    log_bg = log_nb(x, mu_bg, theta, with_factorial=False) - F.softplus(-logit_bg)
    log_fg = log_nb(x, mu_fg, theta, with_factorial=False) - F.softplus(logit_bg)
    log_p = torch.logaddexp(log_bg, log_fg)
    return log_p - torch.lgamma(x + 1.0) if with_factorial else log_p


def kl_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(μ, diag e^logvar) ‖ N(0, I)) summed over the last axis: shape (...,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1)


def product_of_experts(mus: list[Tensor], logvars: list[Tensor], prior: bool = True) -> tuple[Tensor, Tensor]:
    """Product of diagonal Gaussian experts (thesis A.2, eq. 20–21), optionally with the N(0, I) prior.

    Precision-weighted: ``V = (Σ_m V_m⁻¹)⁻¹``, ``μ = V Σ_m V_m⁻¹ μ_m``; the prior adds precision 1 at
    mean 0, so a cell whose experts are all uninformative falls back to the prior.

    Parameters
    ----------
    mus, logvars
        One (n_cells, n_latent) tensor per expert.
    prior
        Include N(0, I) as an expert (DMLIVI's eq. 12 divides one prior out of the product of the
        two unimodal posteriors, each of which carries one).

    Returns
    -------
    mu, logvar
        The product's mean and log-variance, (n_cells, n_latent).
    """
    if len(mus) != len(logvars) or not mus:
        raise ValueError(
            f"need matching non-empty lists of means and log-variances, got {len(mus)} and {len(logvars)}"
        )
    precisions = [torch.exp(-lv) for lv in logvars]
    precision = torch.stack(precisions).sum(0)
    weighted = torch.stack([m * p for m, p in zip(mus, precisions)]).sum(0)
    if prior:
        precision = precision + 1.0
    return weighted / precision, -torch.log(precision)


def interaction(c_soft: Tensor, assign_logits: Tensor, d: Tensor) -> Tensor:
    """The donor × cell-state interaction ``u = (softmax(z) σ(A)) ⊙ D[donor]`` (LIVI eq. 2).

    Parameters
    ----------
    c_soft
        Cell state on the simplex, (n_cells, n_latent).
    assign_logits
        Raw assignment matrix A, (n_latent, n_dxc); entered through a sigmoid.
    d
        Each cell's donor row of D, (n_cells, n_dxc).

    Returns
    -------
    Tensor
        (n_cells, n_dxc).
    """
    return (c_soft @ torch.sigmoid(assign_logits)) * d


def assignment_penalty(assign_logits: Tensor) -> Tensor:
    """``Σ (σ(A)(1 − σ(A)))²``: pushes the soft assignment towards 0 or 1 (max 1/16 per entry)."""
    a = torch.sigmoid(assign_logits)
    return (a * (1.0 - a)).pow(2).sum()


# ---------------------------------------------------------------------------------------- layers
class Encoder(nn.Module):
    """MLP to a diagonal Gaussian q(z|x), as the LIVI reference builds it.

    ``x → [Linear → ReLU → LayerNorm](hidden[:-1]) → Linear(hidden[-1])`` (a linear bottleneck), then a
    mean head ``μ = Linear(h)`` and a scale head ``σ = exp(min(Linear(h), 10)) + 1e-4`` (the cap keeps
    an uninformative product-of-experts expert from overflowing; the reference has no cap).

    Parameters
    ----------
    n_input
        Input width.
    hidden
        Widths; the last one is the linear bottleneck (at least one width).
    n_latent
        Latent dimension.
    """

    def __init__(self, n_input: int, hidden: tuple[int, ...], n_latent: int) -> None:
        super().__init__()
        if not hidden:
            raise ValueError(
                "the encoder needs at least one hidden width (the last is the linear bottleneck)"
            )
        layers: list[nn.Module] = []
        width = n_input
        for h in hidden[:-1]:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.LayerNorm(h)]
            width = h
        layers.append(nn.Linear(width, hidden[-1], bias=len(hidden) > 1))  # the reference's bias rule
        self.body = nn.Sequential(*layers)
        self.mean = nn.Linear(hidden[-1], n_latent)
        self.scale = nn.Linear(hidden[-1], n_latent)

    low_precision: bool = False  # autocast the hidden layers to bfloat16 (set by encoder_precision)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map (n_cells, n_input) to the posterior mean and log-variance, each (n_cells, n_latent)."""
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.low_precision):
            h = self.body(x)
        h = h.float()
        sigma = torch.exp(self.scale(h).clamp(max=LOG_SIGMA_MAX)) + SIGMA_FLOOR
        return self.mean(h), 2.0 * torch.log(sigma)


@contextlib.contextmanager
def encoder_precision(module: nn.Module, precision: Literal["float32", "bfloat16"]) -> Iterator[None]:
    """Run every :class:`Encoder` of ``module`` at ``precision`` inside the block, float32 after it.

    ``"bfloat16"`` autocasts the hidden layers' matmuls (float32 accumulation; the input rounded to
    8 significant bits); the mean and scale heads and everything outside the encoders stay float32.
    """
    encoders = [m for m in module.modules() if isinstance(m, Encoder)]
    for encoder in encoders:
        encoder.low_precision = precision == "bfloat16"
    try:
        yield
    finally:
        for encoder in encoders:
            encoder.low_precision = False


class ModalityDecoder(nn.Module):
    """Bias-free linear decoders of one modality and its count likelihood.

    Logits ``h = W_C c + W_DxC u + W_V v`` (the donor terms only once the donor stage is on; W_DxC and
    W_V are initialised at zero so the stage switch leaves the likelihood unchanged), an
    optional per-feature BatchNorm, NB mean ``μ = library · softmax_features(h)`` and a per-feature
    inverse dispersion ``θ = exp(ℓ)`` (ℓ initialised to 1). With ``likelihood="nbmix"`` the counts
    follow a background/foreground NB mixture: foreground mean as above, background mean
    ``library · softmax(b)`` with a learned per-feature background profile ``b``, and a background
    weight ``σ(W_π c + b_π)`` linear in the cell state (all cell-state parameters).

    Parameters
    ----------
    n_features
        Number of features of the modality.
    n_state
        Width of the cell-state input c.
    n_dxc, n_v
        Number of D×C and persistent factors.
    batch_norm
        Per-feature BatchNorm1d of the logits (its affine is trained in both stages).
    likelihood
        ``"nb"`` or ``"nbmix"``.
    """

    def __init__(
        self,
        n_features: int,
        n_state: int,
        n_dxc: int,
        n_v: int,
        *,
        batch_norm: bool,
        likelihood: Literal["nb", "nbmix"] = "nb",
    ) -> None:
        super().__init__()
        self.w_c = nn.Linear(n_state, n_features, bias=False)
        # donor decoders start at zero (the reference: He-uniform / default init), so entering stage 2
        # does not perturb the fitted cell-state model; the N(0, 1) donor embeddings break the symmetry
        self.w_dxc = nn.Linear(n_dxc, n_features, bias=False)
        nn.init.zeros_(self.w_dxc.weight)
        self.w_v = nn.Linear(n_v, n_features, bias=False) if n_v else None
        if self.w_v is not None:
            nn.init.zeros_(self.w_v.weight)
        self.log_theta = nn.Parameter(torch.ones(n_features))
        self.norm = nn.BatchNorm1d(n_features) if batch_norm else None
        self.likelihood = likelihood
        if likelihood == "nbmix":
            self.bg_logits = nn.Parameter(torch.zeros(n_features))
            self.w_pi = nn.Linear(n_state, n_features)
        elif likelihood != "nb":
            raise ValueError(f"likelihood must be 'nb' or 'nbmix', got {likelihood!r}")

    def cell_state_parameters(self) -> list[nn.Parameter]:
        """Parameters trained in stage 1 and frozen in stage 2."""
        params = [self.w_c.weight, self.log_theta]
        if self.likelihood == "nbmix":
            params += [self.bg_logits, *self.w_pi.parameters()]
        return params

    def donor_parameters(self) -> list[nn.Parameter]:
        """Parameters frozen in stage 1 and trained in stage 2."""
        return [self.w_dxc.weight] + ([] if self.w_v is None else [self.w_v.weight])

    def logits(self, c_soft: Tensor, u: Tensor | None, v: Tensor | None) -> Tensor:
        """Summed logits (n_cells, n_features); ``u``/``v`` are None while the donor stage is off.

        The donor stage's terms are one product of the concatenated factors and weights (a third
        faster than three products and their sums at 1,024 cells × 2,000 features on CPU).
        """
        factors, weights = [c_soft], [self.w_c.weight]
        if u is not None:
            factors.append(u)
            weights.append(self.w_dxc.weight)
        if v is not None and self.w_v is not None:
            factors.append(v)
            weights.append(self.w_v.weight)
        h = torch.cat(factors, -1) @ torch.cat(weights, 1).T
        return h if self.norm is None else self.norm(h)

    def log_prob(
        self, x: Tensor, library: Tensor, log_factorial: Tensor, c_soft: Tensor, h: Tensor
    ) -> Tensor:
        """Per-cell log-likelihood summed over features, (n_cells,).

        ``x`` (n_cells, n_features) counts, ``library`` (n_cells, 1) total counts, ``log_factorial``
        (n_cells,) their :func:`log_factorial_sums`, ``h`` the logits.
        """
        theta = self.log_theta.exp()
        mu = library * torch.softmax(h, dim=-1)
        if self.likelihood == "nb":
            log_p = log_nb(x, mu, theta, with_factorial=False)
        else:
            mu_bg = library * torch.softmax(self.bg_logits, dim=-1)
            log_p = log_nb_mixture(x, mu_bg, mu, theta, self.w_pi(c_soft), with_factorial=False)
        return log_p.sum(-1) - log_factorial

    def loadings(self) -> dict[str, Tensor]:
        """Features × factors weights of each linear decoder, BatchNorm scale folded in (eval statistics)."""
        scale = torch.ones(self.w_c.weight.shape[0], 1, device=self.w_c.weight.device)
        if self.norm is not None:
            scale = (self.norm.weight / torch.sqrt(self.norm.running_var + self.norm.eps)).unsqueeze(1)
        out = {"C": self.w_c.weight * scale, "DxC": self.w_dxc.weight * scale}
        if self.w_v is not None:
            out["V"] = self.w_v.weight * scale
        return out
