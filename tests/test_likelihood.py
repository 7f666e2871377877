"""nll: proven on the exact Gaussian-mixture model (no training). The probability-flow ODE's
log-density matches the mixture's closed form (``GaussianMixture.log_prob``) within a tolerance that
shrinks with the number of Hutchinson probes and the solver's tolerance; DDPM's variational bound
lies above the exact NLL and tightens as T grows. Figures: docs/encode.md."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM
from ddpmctl.gmm import GaussianMixture
from ddpmctl.likelihood import NllOptions, discretized_gaussian_nll, nll
from ddpmctl.schedules import make_process

MIXTURE = GaussianMixture.random(3, 2, np.random.default_rng(7))
X = MIXTURE.sample(200, np.random.default_rng(1))[0]
EXACT_BPD = -MIXTURE.log_prob(X) / 2 / math.log(2)  # bits per dimension of the points (identity units)


@pytest.mark.parametrize("sde", ["vp", "ve", "subvp"])
def test_ode_nll_matches_the_mixture_density(sde):
    """Per-sample error (Hutchinson's noise) shrinks like 1/sqrt(probes); the mean over 200 points
    is within 3 standard errors of the probes' noise plus the t_min bias (log p_tmin vs log p_0)."""
    model = ExactGMM(MIXTURE, make_process(sde))
    errors = {}
    for probes in (1, 8):
        bpd, info = nll(model, X, NllOptions(probes=probes))
        err = bpd - EXACT_BPD
        errors[probes] = np.abs(err).mean()
        assert abs(err.mean()) < 3 * err.std() / math.sqrt(len(X)) + 0.005, (probes, err.mean())
        assert info["nfe"] > 10 and "nats_per_dim" in info
    # measured: 0.31 -> 0.08 bits/dim (1/sqrt(8) = 0.35)
    assert errors[8] < 0.5 * errors[1]
    assert errors[8] < 0.12


def test_ode_nll_error_shrinks_with_the_tolerance():
    """Same probes (same seed): the distance to a tight solve (rtol 1e-8) shrinks with rtol."""
    model = ExactGMM(MIXTURE, make_process("vp"))
    x = X[:50]
    ref, _ = nll(model, x, NllOptions(probes=64, rtol=1e-8, atol=1e-8))
    # measured mean |difference|: 0.012 (rtol 1e-2), 0.0057 (1e-3), 2.1e-4 (1e-4), 1.2e-4 (1e-5) bits/dim
    diffs = [np.abs(nll(model, x, NllOptions(probes=64, rtol=r, atol=r))[0] - ref).mean() for r in (1e-2, 1e-5)]
    assert diffs[1] < 0.1 * diffs[0], diffs
    assert diffs[1] < 1e-3
    exact = -MIXTURE.log_prob(x) / 2 / math.log(2)
    assert np.abs(ref - exact).mean() < 0.06  # 64 probes: per-sample noise about 0.31 / 8


def test_ode_nll_does_not_depend_on_the_batch():
    model = ExactGMM(MIXTURE, make_process("vp"))
    a, _ = nll(model, X[:12], NllOptions(), seed=3, batch=5)
    b, _ = nll(model, X[:12], NllOptions(), seed=3, batch=12)
    np.testing.assert_allclose(a, b, atol=1e-3)


def test_vlb_bounds_the_exact_nll_and_tightens_with_T():
    x = MIXTURE.sample(400, np.random.default_rng(3))[0]
    exact = -MIXTURE.log_prob(x) / 2 / math.log(2)
    means = []
    for T in (10, 40, 200):
        bpd, info = nll(ExactGMM(MIXTURE, make_process("ddpm", T=T)), x, NllOptions(method="vlb"))
        gap = bpd - exact
        se = gap.std() / math.sqrt(len(x))
        assert gap.mean() > -3 * se  # an upper bound
        means.append(gap.mean())
        assert info["nfe"] == T and info["terms"] == T - 1
    # measured gaps: about 0.66, 0.2, 0.05 bits/dim
    assert means[0] > means[1] > means[2]
    assert means[0] > 0.3


def test_vlb_subsampled_terms_are_unbiased():
    x = MIXTURE.sample(400, np.random.default_rng(4))[0]
    model = ExactGMM(MIXTURE, make_process("ddpm", T=40))
    full, _ = nll(model, x, NllOptions(method="vlb"))
    part, info = nll(model, x, NllOptions(method="vlb", terms=8), seed=1)
    assert info["nfe"] == 9 and info["terms"] == 8
    se = math.hypot(full.std(), part.std()) / math.sqrt(len(x))
    assert abs(part.mean() - full.mean()) < 3.5 * se


def test_vlb_refuses_continuous_models_and_bad_terms():
    with pytest.raises(InputError, match="discrete"):
        nll(ExactGMM(MIXTURE, make_process("vp")), X, NllOptions(method="vlb"))
    with pytest.raises(InputError, match="--terms"):
        nll(ExactGMM(MIXTURE, make_process("ddpm", T=10)), X, NllOptions(method="vlb", terms=10))


def test_discretized_decoder_sums_to_one():
    """Ho et al. eq. 13: the 256 bins of one pixel hold all of the Gaussian's mass."""
    grid = torch.linspace(-1, 1, 256, dtype=torch.float64)[:, None]
    for mean in (-0.9, 0.0, 0.37):
        p = torch.exp(-discretized_gaussian_nll(grid, torch.full_like(grid, mean), 0.01, 1 / 255))
        assert abs(float(p.sum()) - 1) < 1e-9


def test_cli_nll_on_points_and_images(cli, tmp_path):
    r = cli("make-data", "gmm", "--n", "60", "--components", "2", "-o", tmp_path / "mix.npy")
    assert r.returncode == 0, r.stderr
    r = cli("nll", tmp_path / "mix.npz", tmp_path / "mix.npy", "--json", "--probes", "2")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    exact = -GaussianMixture.load(tmp_path / "mix.npz").log_prob(np.load(tmp_path / "mix.npy")).mean() / 2 / math.log(2)
    assert abs(info["bits_per_dim"] - exact) < 4 * info["bits_per_dim_se"] + 0.05
    r = cli("nll", tmp_path / "mix.npz", tmp_path / "mix.npy", "--method", "vlb", "--process", "ddpm", "--T", "20")
    assert r.returncode == 0 and b"bits/dim" in r.stdout, r.stderr
    r = cli("nll", tmp_path / "mix.npz", tmp_path / "mix.npy", "--method", "vlb")
    assert r.returncode == 2 and b"discrete" in r.stderr


def _gaussian_images(n, seed=0):
    """8-bit images drawn from test_restore's exact Gaussian prior N(MU, SIGMA) (model space)."""
    from test_restore import MU, SIGMA

    xm = np.random.default_rng(seed).multivariate_normal(MU, SIGMA, n)
    y = np.clip(np.round((xm + 1) / 2 * 255), 0, 255)
    return (y / 255).reshape(n, 1, 4, 4).astype(np.float32), y


def _gaussian_logpdf(xm):
    from scipy.stats import multivariate_normal
    from test_restore import MU, SIGMA

    return multivariate_normal(MU, SIGMA).logpdf(xm)


def test_ode_bits_per_dim_of_8bit_images_match_the_exact_density():
    """The change of units (L3): dequantised u = (y + U)/256, x_m = 2u - 1, bpd = -(log p_m/D + log 2)/ln 2 + 8,
    against the exact Gaussian's density averaged over 64 draws of U per image."""
    from test_restore import GaussianImages

    x, y = _gaussian_images(60)
    bpd, info = nll(GaussianImages(make_process("vp")), x, NllOptions(probes=4))
    rng = np.random.default_rng(9)
    draws = [_gaussian_logpdf(2 * (y + rng.random(y.shape)) / 256 - 1) for _ in range(64)]
    exact = np.mean([-(lp / 16 + math.log(2)) / math.log(2) + 8 for lp in draws], axis=0)
    err = bpd - exact
    assert abs(err.mean()) < 3 * err.std() / math.sqrt(len(x)) + 0.01, err.mean()
    assert info["units"].startswith("bits/dim of 8-bit images")


def test_vlb_of_8bit_images_bounds_the_discrete_nll():
    """The discretised decoder bounds -log2 P(y); P(y) of the Gaussian is about p_m(x_m) (2/255)^D."""
    from test_restore import GaussianImages

    x, y = _gaussian_images(200, seed=1)
    discrete = -(_gaussian_logpdf(2 * y / 255 - 1) + 16 * math.log(2 / 255)) / 16 / math.log(2)
    gaps = []
    for T in (10, 100):
        bpd, _ = nll(GaussianImages(make_process("ddpm", T=T)), x, NllOptions(method="vlb"))
        gap = bpd - discrete
        assert gap.mean() > -3 * gap.std() / math.sqrt(len(x))
        gaps.append(gap.mean())
    assert gaps[1] < gaps[0]
