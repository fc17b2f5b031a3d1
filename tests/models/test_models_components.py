"""Each component against an independent reference (torch.distributions, closed forms, numpy loops)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.special
import torch
from torch import nn
from torch.distributions import NegativeBinomial, Normal, kl_divergence

from multilivi.models.components import (
    LOG_SIGMA_MAX,
    SIGMA_FLOOR,
    Encoder,
    ModalityDecoder,
    assignment_penalty,
    digamma_positive,
    encoder_precision,
    interaction,
    kl_standard_normal,
    lgamma_positive,
    log_factorial_sums,
    log_nb,
    log_nb_mixture,
    product_of_experts,
)
from multilivi.models.dmlivi import correlation_penalty


def _nb_case(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.poisson(torch.rand(50, 20, generator=g, dtype=torch.float64) * 30)
    x[:5] = 0.0  # all-zero rows
    mu = torch.rand(50, 20, generator=g, dtype=torch.float64) * 40 + 0.01
    theta = torch.rand(20, generator=g, dtype=torch.float64) * 10 + 0.05
    return x, mu, theta


def _torch_nb(x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return NegativeBinomial(total_count=theta.expand_as(mu), probs=mu / (mu + theta)).log_prob(x)


def test_log_nb_matches_torch_negative_binomial() -> None:
    x, mu, theta = _nb_case()
    np.testing.assert_allclose(log_nb(x, mu, theta, eps=0.0), _torch_nb(x, mu, theta), rtol=1e-6, atol=1e-6)


def test_log_nb_float32_with_default_eps_close_to_reference() -> None:
    x, mu, theta = _nb_case(1)
    got = log_nb(x.float(), mu.float(), theta.float())
    np.testing.assert_allclose(got.double(), _torch_nb(x, mu, theta), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_digamma_positive_matches_scipy(dtype: torch.dtype) -> None:
    z = np.concatenate([np.logspace(-6, 7, 2_000), np.random.default_rng(0).gamma(0.5, 20.0, 2_000) + 1e-4])
    got = digamma_positive(torch.tensor(z, dtype=dtype)).double().numpy()
    expected = scipy.special.digamma(torch.tensor(z, dtype=dtype).double().numpy())
    # float32: the rounding of the inputs' steps (torch.digamma itself is within 8e-7 here); float64:
    # the series' truncation at z + 6 (< 3e-9)
    tol = 2e-6 if dtype == torch.float32 else 5e-9
    np.testing.assert_array_less(np.abs(got - expected) / np.maximum(np.abs(expected), 1.0), tol)


def test_lgamma_positive_is_lgamma_with_its_gradient() -> None:
    z = torch.tensor(np.logspace(-4, 5, 200), dtype=torch.float64, requires_grad=True)
    value = lgamma_positive(z)
    np.testing.assert_array_equal(value.detach(), torch.lgamma(z.detach()))
    (grad,) = torch.autograd.grad(value.sum(), z)
    np.testing.assert_allclose(grad, scipy.special.digamma(z.detach().numpy()), rtol=5e-9, atol=5e-9)


def test_log_nb_gradients_match_torch_negative_binomial() -> None:
    x, mu, theta = _nb_case(3)
    grads = []
    for fn in (lambda m, t: log_nb(x, m, t, eps=0.0), lambda m, t: _torch_nb(x, m, t)):
        m, t = mu.clone().requires_grad_(), theta.clone().requires_grad_()
        grads.append(torch.autograd.grad(fn(m, t).sum(), (m, t)))
    for ours, reference in zip(*grads):
        np.testing.assert_allclose(ours, reference, rtol=1e-7, atol=1e-7)


def test_log_factorial_sums_are_the_row_sums_of_gammaln_over_every_entry() -> None:
    counts = sp.random(
        40, 30, density=0.2, format="csr", random_state=0, data_rvs=lambda n: np.arange(n) % 50 + 1.0
    )
    counts = sp.csr_matrix(sp.diags((np.arange(40) != 3).astype(float)) @ counts)  # row 3: all zeros
    counts.eliminate_zeros()
    expected = scipy.special.gammaln(counts.toarray() + 1.0).sum(1)
    np.testing.assert_allclose(log_factorial_sums(counts), expected, rtol=1e-6)
    assert log_factorial_sums(counts)[3] == 0.0


def test_without_the_factorial_both_likelihoods_differ_by_exactly_log_x_factorial() -> None:
    x, mu, theta = _nb_case(4)
    log_x_factorial = torch.lgamma(x + 1.0)
    np.testing.assert_allclose(
        log_nb(x, mu, theta, with_factorial=False) - log_x_factorial, log_nb(x, mu, theta)
    )
    logit = torch.linspace(-3, 3, 20, dtype=torch.float64)
    np.testing.assert_allclose(
        log_nb_mixture(x, mu, mu * 5, theta, logit, with_factorial=False) - log_x_factorial,
        log_nb_mixture(x, mu, mu * 5, theta, logit),
    )


def test_nb_mixture_is_the_weighted_sum_of_two_nbs() -> None:
    x, mu_bg, theta = _nb_case(2)
    mu_fg = mu_bg * 5.0
    logit = torch.linspace(-3, 3, 20, dtype=torch.float64)
    pi = torch.sigmoid(logit)
    expected = torch.log(pi * _torch_nb(x, mu_bg, theta).exp() + (1 - pi) * _torch_nb(x, mu_fg, theta).exp())
    np.testing.assert_allclose(log_nb_mixture(x, mu_bg, mu_fg, theta, logit), expected, rtol=1e-6, atol=1e-6)


def test_nb_mixture_reduces_to_nb_at_the_boundary_and_is_finite_at_zero() -> None:
    x, mu_bg, theta = _nb_case(3)
    mu_fg = mu_bg + 10.0
    big = torch.tensor(500.0, dtype=torch.float64)
    np.testing.assert_allclose(
        log_nb_mixture(x, mu_bg, mu_fg, theta, -big), log_nb(x, mu_fg, theta), atol=1e-9
    )
    np.testing.assert_allclose(
        log_nb_mixture(x, mu_bg, mu_fg, theta, big), log_nb(x, mu_bg, theta), atol=1e-9
    )
    zeros = torch.zeros(4, 3)
    for logit in (-1e4, 0.0, 1e4):
        out = log_nb_mixture(
            zeros, torch.full((4, 3), 1e-3), torch.full((4, 3), 1e3), torch.ones(3), torch.tensor(logit)
        )
        assert torch.isfinite(out).all()


def test_product_of_experts_matches_thesis_closed_form() -> None:
    rng = np.random.default_rng(0)
    mus = [rng.normal(size=(7, 4)) for _ in range(2)]
    variances = [rng.uniform(0.1, 3.0, size=(7, 4)) for _ in range(2)]
    # thesis A.2 with full (diagonal) covariance matrices, per cell, prior N(0, I) as a third expert
    for prior in (True, False):
        experts_mu = mus + ([np.zeros((7, 4))] if prior else [])
        experts_var = variances + ([np.ones((7, 4))] if prior else [])
        mu, logvar = product_of_experts(
            [torch.from_numpy(m) for m in mus], [torch.from_numpy(np.log(v)) for v in variances], prior=prior
        )
        for i in range(7):
            inv = [np.linalg.inv(np.diag(v[i])) for v in experts_var]
            cov = np.linalg.inv(sum(inv))
            mean = sum(m[i] @ vi for m, vi in zip(experts_mu, inv)) @ cov
            np.testing.assert_allclose(mu[i].numpy(), mean, rtol=1e-10)
            np.testing.assert_allclose(np.exp(logvar[i].numpy()), np.diag(cov), rtol=1e-10)


def test_product_of_experts_rejects_mismatched_lists() -> None:
    with pytest.raises(ValueError, match="matching"):
        product_of_experts([torch.zeros(2, 2)], [])


def test_interaction_matches_explicit_loops() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=(5, 3))
    c = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    a = rng.normal(size=(3, 4))
    d = rng.normal(size=(5, 4))
    expected = np.zeros((5, 4))
    for i in range(5):
        for m in range(4):
            expected[i, m] = sum(c[i, k] / (1 + np.exp(-a[k, m])) for k in range(3)) * d[i, m]
    got = interaction(torch.from_numpy(c), torch.from_numpy(a), torch.from_numpy(d))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)


def test_assignment_penalty_closed_form() -> None:
    assert assignment_penalty(torch.zeros(3, 4)).item() == pytest.approx(12 / 16)
    assert assignment_penalty(torch.full((2, 2), 50.0)).item() == pytest.approx(0.0, abs=1e-20)


def test_kl_standard_normal_matches_torch() -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = (
        torch.randn(6, 5, generator=g, dtype=torch.float64),
        torch.randn(6, 5, generator=g, dtype=torch.float64),
    )
    expected = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    np.testing.assert_allclose(kl_standard_normal(mu, logvar), expected, rtol=1e-12)


def test_correlation_penalty_matches_numpy_corrcoef() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(40, 3)), rng.normal(size=(40, 2))
    b[:, 0] += 2 * a[:, 1]
    expected = (np.corrcoef(a.T, b.T)[:3, 3:] ** 2).sum()
    assert correlation_penalty(torch.from_numpy(a), torch.from_numpy(b)).item() == pytest.approx(
        expected, rel=1e-8
    )


def test_encoder_structure_and_scale_floor() -> None:
    enc = Encoder(30, (16, 8, 4), n_latent=3)
    kinds = [type(m) for m in enc.body]
    assert kinds == [nn.Linear, nn.ReLU, nn.LayerNorm, nn.Linear, nn.ReLU, nn.LayerNorm, nn.Linear]
    assert enc.body[-1].out_features == 4 and enc.body[-1].bias is not None  # linear bottleneck
    assert Encoder(30, (4,), 3).body[-1].bias is None  # no hidden layer: no bias, as the reference
    with torch.no_grad():
        enc.scale.weight.zero_()
        enc.scale.bias.fill_(-50.0)  # exp(.) underflows: σ is the floor
    mu, logvar = enc(torch.randn(10, 30))
    assert mu.shape == logvar.shape == (10, 3)
    np.testing.assert_allclose(torch.exp(0.5 * logvar).detach(), SIGMA_FLOOR, rtol=1e-5)
    with pytest.raises(ValueError, match="hidden width"):
        Encoder(30, (), 3)


def test_encoder_scale_is_capped_so_an_uninformative_expert_keeps_finite_gradients() -> None:
    enc = Encoder(30, (16, 4), n_latent=3)
    with torch.no_grad():
        enc.scale.bias.fill_(200.0)  # exp(200) overflows float32 without the cap
    mu, logvar = enc(torch.randn(10, 30))
    np.testing.assert_allclose(0.5 * logvar.detach(), LOG_SIGMA_MAX, rtol=1e-5)
    mean, log_var = product_of_experts([mu, torch.zeros_like(mu)], [logvar, torch.zeros_like(logvar)])
    (mean.sum() + log_var.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in enc.parameters() if p.grad is not None)


def test_bfloat16_encoders_round_the_hidden_layers_only_inside_the_block() -> None:
    torch.manual_seed(0)
    enc = Encoder(200, (64, 32, 8), n_latent=3)
    x = torch.log1p(torch.poisson(torch.full((40, 200), 2.0)))
    module = nn.ModuleDict({"enc": enc})
    exact = [t.detach() for t in enc(x)]
    first = enc.body[0]
    # autocast's first layer: input and weight rounded to bfloat16, products summed at float32 or wider
    rounded = x.bfloat16().double() @ first.weight.detach().bfloat16().double().T
    rounded += first.bias.detach().bfloat16().double()
    with encoder_precision(module, "bfloat16"):
        assert enc.low_precision
        mean, log_var = enc(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = first(x)
        (mean.sum() + log_var.sum()).backward()
    assert hidden.dtype == torch.bfloat16
    np.testing.assert_allclose(hidden.double().detach(), rounded, rtol=2**-7, atol=2**-7)
    assert not enc.low_precision  # evaluation after training is float32 again
    assert mean.dtype == log_var.dtype == torch.float32
    assert all(p.grad.dtype == torch.float32 for p in enc.parameters())
    # bfloat16 keeps 8 significant bits: the outputs move by about 2^-8 of their scale, not more
    for value, target in zip((mean, log_var), exact):
        assert 0 < (value.detach() - target).abs().max() < 0.05 * target.abs().max()
    np.testing.assert_array_equal(enc(x)[0].detach(), exact[0])


def test_decoder_mean_is_library_times_feature_softmax() -> None:
    torch.manual_seed(0)
    dec = ModalityDecoder(12, n_state=3, n_dxc=2, n_v=1, batch_norm=False)
    c = torch.softmax(torch.randn(5, 3), -1)
    h = dec.logits(c, None, None)
    np.testing.assert_allclose(h.detach(), c @ dec.w_c.weight.detach().T, rtol=1e-6)  # bias-free W_C only
    x = torch.poisson(torch.full((5, 12), 3.0))
    library = x.sum(1, keepdim=True)
    expected = log_nb(x, library * torch.softmax(h, -1), dec.log_theta.exp()).sum(-1)
    log_factorial = torch.from_numpy(log_factorial_sums(sp.csr_matrix(x.numpy())))
    np.testing.assert_allclose(
        dec.log_prob(x, library, log_factorial, c, h).detach(), expected.detach(), rtol=1e-6
    )
    assert torch.allclose(dec.log_theta, torch.ones(12))  # θ = e initially, as the reference
    assert not dec.w_dxc.weight.any() and not dec.w_v.weight.any()  # donor terms start switched off
    u, v = torch.randn(5, 2), torch.randn(5, 1)
    np.testing.assert_allclose(dec.logits(c, u, v).detach(), h.detach())
    with pytest.raises(ValueError, match="likelihood"):
        ModalityDecoder(3, 2, 2, 1, batch_norm=False, likelihood="zinb")  # type: ignore[arg-type]
