"""The forward process, its posterior and the parameterisation conversions."""

import numpy as np
import pytest
import torch

from ddpmctl.diffusion import (
    PREDICTIONS,
    Denoiser,
    from_eps_x0,
    posterior,
    q_sample,
    q_sample_sequential,
    to_eps_x0,
    transition,
)
from ddpmctl.schedules import VESDE, VPSDE, EDMProcess, SubVPSDE, make_process

PROCESSES = [make_process(None, "linear", 1000), VPSDE(), SubVPSDE(), VESDE(), EDMProcess()]


@pytest.mark.parametrize("proc", PROCESSES, ids=lambda p: p.kind)
@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_parameterisations_round_trip(proc, prediction):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(64, 3, generator=g, dtype=torch.float64)
    eps = torch.randn(64, 3, generator=g, dtype=torch.float64)
    t = torch.rand(64, generator=g, dtype=torch.float64) * 0.98 + 0.01
    xt = q_sample(proc, x0, t, eps)
    a, s = proc.alpha(t), proc.sigma(t)
    kw = {"sigma_data": 0.7} if prediction == "edm" else {}  # the edm formulas hold in sigma~ on every process
    target = from_eps_x0(eps, x0, a, s, prediction, **kw)
    eps2, x02 = to_eps_x0(target, xt, a, s, prediction, **kw)
    np.testing.assert_allclose(eps2, eps, atol=1e-8)
    np.testing.assert_allclose(x02, x0, atol=1e-6)


def test_posterior_is_ddpm_eq7():
    """On DDPM's grid, q(x_{t-1}|x_t,x0) has DDPM's coefficients (Ho et al. eq. 7)."""
    p = make_process(None, "linear", 1000)
    b, ab = p.betas, p.alpha_bar
    for i in (1, 10, 500, 999):  # index i is step t = i + 1
        t, s = p.index_to_t(i), p.index_to_t(i - 1)
        c_xt, c_x0, var = posterior(p, s, t)
        assert c_x0.item() == pytest.approx(np.sqrt(ab[i - 1]) * b[i] / (1 - ab[i]), rel=1e-9)
        assert c_xt.item() == pytest.approx(np.sqrt(1 - b[i]) * (1 - ab[i - 1]) / (1 - ab[i]), rel=1e-9)
        assert var.item() == pytest.approx((1 - ab[i - 1]) / (1 - ab[i]) * b[i], rel=1e-9)
        a_ts, var_ts = transition(p, s, t)
        assert var_ts.item() == pytest.approx(b[i], rel=1e-9)


def test_sequential_chain_matches_closed_form_marginal():
    p = make_process(None, "linear", 200)
    x0 = torch.full((20000, 1), 0.7, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    out = q_sample_sequential(p, x0, [0, 50, 200], generator=g)
    assert torch.equal(out[0], x0)
    for t in (50, 200):
        ab = p.alpha_bar[t - 1]
        x = out[t].numpy()
        assert x.mean() == pytest.approx(np.sqrt(ab) * 0.7, abs=0.02)
        assert x.var() == pytest.approx(1 - ab, rel=0.04)


def test_denoiser_counts_nfe_and_clips():
    p = VPSDE()
    d = Denoiser(lambda x, c: torch.zeros_like(x), p, "x0", clip=(-0.5, 0.5))
    # a fixed draw: the relative check below fails by chance where an eps component is near 0
    x = torch.randn(4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out = d(x, 0.3)
    assert d.nfe == 1
    assert torch.all(out.x0 == 0)
    d2 = Denoiser(lambda x, c: torch.full_like(x, 3.0), p, "x0", clip=(-1.0, 1.0))
    out = d2(x, torch.full((4,), 0.3))
    assert torch.all(out.x0 == 1.0)
    a, s = p.alpha(0.3), p.sigma(0.3)
    np.testing.assert_allclose(out.eps, (x - a * 1.0) / s, rtol=1e-6)  # t was float32


def test_uncounted_evaluations_leave_the_nfe_alone():
    p = make_process("vp")
    calls = []
    den = Denoiser(lambda x, c: calls.append(1) or torch.zeros_like(x), p, "eps")
    x = torch.randn(3, 2)
    den(x, 0.5)
    with den.uncounted():
        den(x, 0.4)
        den(x, 0.3)
    den(x, 0.2)
    assert den.nfe == 2 and len(calls) == 4  # the network ran four times; two were counted
    with pytest.raises(RuntimeError):
        with den.uncounted():
            den(x, 0.1)
            raise RuntimeError("stop")
    assert den.nfe == 2 and len(calls) == 5
