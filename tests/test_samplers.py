"""Samplers proven correct without training: with the exact model of a Gaussian mixture
(ddpmctl.exact) every sampler must reproduce the mixture, and the samplers must satisfy the
identities that define them (DDPM Algorithm 2, DDIM eta = 1 = DDPM, Euler = DDIM eta = 0, ...)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpmctl import samplers as S
from ddpmctl.diffusion import Denoiser
from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM, mixture_quality, mmd2, sliced_wasserstein
from ddpmctl.gmm import GaussianMixture
from ddpmctl.sampling import DEFAULT_GUIDANCE, NoiseStream, generate, trajectory_frames
from ddpmctl.schedules import DiscreteProcess, discrete_steps, get_betas, make_process

N = 2000


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.random(3, 2, np.random.default_rng(7))


def exact(mixture, kind="vp", **kw):
    return ExactGMM(mixture, make_process(kind, **kw))


def _ode_reference(model):
    """200 initial points and their ODE solutions by 3M with 1000 steps (error ~1e-7)."""
    x = NoiseStream.for_samples(3, range(200), (2,), dtype=torch.float64)()
    return x, S.sample_ode(model.denoiser(), x, S.make_times(model.process, 1000, "logsnr"), None, solver="dpm++3m")


@pytest.fixture(scope="module")
def vp_reference(mixture):
    m = exact(mixture, "vp")
    return (m, *_ode_reference(m))


@pytest.fixture(scope="module")
def ddpm_reference(mixture):
    m = exact(mixture, "ddpm")
    return (m, *_ode_reference(m))


# ------------------------------------------------------------------------------------------
# the exact model


@pytest.mark.parametrize("kind", ["vp", "subvp", "ve", "ddpm"])
def test_exact_score_is_the_gradient_of_log_p(mixture, kind):
    m = exact(mixture, kind)
    x = torch.randn(64, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2
    for t in (0.05, 0.3, 0.9):
        xr = x.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(m.log_prob(xr, t).sum(), xr)
        assert torch.allclose(m.score(x, t), grad, rtol=1e-9, atol=1e-9)
        a, s = float(m.process.alpha(t)), float(m.process.sigma(t))
        # Tweedie: x0 = (x + sigma^2 score) / alpha and eps = -sigma score
        assert torch.allclose(m.x0(x, t), (x + s**2 * grad) / a, rtol=1e-9, atol=1e-9)
        assert torch.allclose(m.eps(x, t), -s * grad, rtol=1e-9, atol=1e-9)
        # the marginal is the mixture with means alpha mu_k and covariances alpha^2 Sigma_k + sigma^2 I
        assert np.allclose(m.marginal(t).log_prob(x.numpy()), m.log_prob(x, t).numpy(), rtol=1e-9, atol=1e-9)


def test_exact_x0_is_the_posterior_mean_by_monte_carlo(mixture):
    """E[x0 | x_t] estimated by importance weighting of exact data samples agrees with the closed form."""
    m = exact(mixture, "vp")
    t = 0.4
    a, s = float(m.process.alpha(t)), float(m.process.sigma(t))
    x0, _ = mixture.sample(400_000, np.random.default_rng(1))
    x0 = x0.astype(np.float64)
    xt = np.array([[0.3, -0.2], [-1.5, 1.0]]) * a
    for q in xt:
        logw = -0.5 * ((q - a * x0) ** 2).sum(1) / s**2
        w = np.exp(logw - logw.max())
        mc = (w[:, None] * x0).sum(0) / w.sum()
        closed = m.x0(torch.tensor(q[None]), t)[0].numpy()
        assert np.abs(mc - closed).max() < 0.02


def test_mixture_quality_detects_a_wrong_distribution(mixture):
    rng = np.random.default_rng(3)
    good, _ = mixture.sample(N, rng)
    q = mixture_quality(good, mixture)
    assert q["weight_error"] < 0.04 and q["mean_error"] < 0.2 and q["cov_error"] < 0.25
    assert q["swd"] < 2.5 * q["swd_floor"]
    shifted = mixture_quality(good + np.float32(0.5), mixture)
    assert shifted["swd"] > 5 * q["swd"]
    wider = mixture_quality(mixture.means.mean(0) + 1.3 * (good - mixture.means.mean(0)), mixture)
    assert wider["cov_error"] > 2 * q["cov_error"] and wider["swd"] > 3 * q["swd"]
    assert abs(q["mmd2"]) < 1e-3 < shifted["mmd2"]  # unbiased: exact samples score 0 +- O(1/n)
    # two sample sets from the same mixture are close, from different ones are not
    other, _ = mixture.sample(N, rng)
    assert sliced_wasserstein(good, other) < 0.1 < sliced_wasserstein(good, other + 0.5)


def test_mmd2_closed_form_terms_match_monte_carlo(mixture):
    """MMD^2 with its closed-form mixture terms equals the estimate whose E_p terms are Monte Carlo
    averages over many exact samples (independent pairs for E_pp)."""
    rng = np.random.default_rng(4)
    y = mixture.sample(300, rng)[0].astype(np.float64) * 1.1
    z = mixture.sample(10_000, rng)[0].astype(np.float64)
    a, b = (mixture.sample(1_000_000, rng)[0].astype(np.float64) for _ in range(2))
    s2 = np.mean(np.trace(mixture.covs, axis1=1, axis2=2)) / 2
    total = 0.0
    for c in (0.5, 1.0, 2.0):
        h2 = c * c * s2
        k_yy = np.exp(-((y[:, None] - y[None]) ** 2).sum(-1) / (2 * h2))
        k_yz = np.exp(-((y[:, None] - z[None]) ** 2).sum(-1) / (2 * h2))
        k_pp = np.exp(-((a - b) ** 2).sum(-1) / (2 * h2))
        total += (k_yy.sum() - 300) / (300 * 299) - 2 * k_yz.mean() + k_pp.mean()
    assert abs(mmd2(y, mixture) - total) < 1.5e-3
    assert mmd2(y, mixture) > 0.02  # 10% too wide: detected


# ------------------------------------------------------------------------------------------
# time grids


def _t_start(p, spacing):
    """Where a grid starts: t_max, or for karras the time where sigma~ = 80 if sigma~(t_max) is above it
    (rounded to a step on a discrete process)."""
    if spacing != "karras" or float(S.sigma_tilde(p, p.t_max)) <= 80:
        return p.t_max
    t = float(p.t_from_log_snr(torch.tensor(-2 * math.log(80.0), dtype=torch.float64)))
    return round(t * p.T) / p.T if isinstance(p, DiscreteProcess) else t


@pytest.mark.parametrize("kind", ["vp", "subvp", "ve", "ddpm", "edm"])
@pytest.mark.parametrize("spacing", S.SPACINGS)
def test_make_times_is_decreasing_from_t_max_to_t_min_then_zero(kind, spacing):
    p = make_process(kind)
    t = S.make_times(p, 25, spacing)
    assert t.dtype == torch.float64 and t[-1] == 0
    assert math.isclose(float(t[0]), _t_start(p, spacing)) and math.isclose(float(t[-2]), p.t_min, rel_tol=1e-9)
    assert (t[1:] < t[:-1]).all()
    assert len(t) == 26  # 25 steps, on a discrete process too
    if kind != "ddpm":
        inner = t[:-1]
        if spacing == "logsnr":
            d = torch.diff(p.log_snr(inner))
            assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-6)
        if spacing == "karras":
            d = torch.diff(S.sigma_tilde(p, inner) ** (1 / 7))
            assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-6)
        if spacing == "quadratic":
            d = torch.diff(inner.sqrt())
            assert torch.allclose(d, d.mean().expand_as(d), rtol=1e-9)
    else:  # on DDPM's own steps
        assert torch.allclose(t * 1000, torch.round(t * 1000), atol=1e-9)
    assert torch.equal(S.make_times(p, 25, spacing, zero=False), t[:-1])


@pytest.mark.parametrize("spacing", S.SPACINGS)
def test_discrete_grid_has_exactly_the_requested_steps(ddpm_reference, spacing):
    """On a DDPM process (T = 1000) --steps K is K distinct training steps for every K <= T (before,
    rounding dropped repeats: 20 log-SNR steps on the cosine schedule became 17); the NFE is K; and
    the ODE converges on that grid."""
    p = make_process("ddpm")
    for proc in (p, make_process("ddpm", "cosine")):  # cosine: log-SNR and karras steps collide near t = 1 too
        for k in (1, 2, 7, 20, 50, 333, 999, 1000):
            t = S.make_times(proc, k, spacing)
            idx = torch.round(t[:-1] * 1000).long()
            assert len(t) == k + 1 and torch.allclose(t[:-1] * 1000, idx.double(), atol=1e-9)
            start = round(_t_start(proc, spacing) * 1000)
            assert (idx[1:] < idx[:-1]).all() and (k == 1 or idx[-1] == 1)
            # the grid starts where it should, unless K steps do not fit below that (they move up)
            assert idx[0] == start if k <= 50 else start <= idx[0] <= 1000, (k, idx[:3])
    if spacing == "uniform":  # uniform targets never collide: exactly DDIM's rounded respacing
        u = torch.linspace(1000, 1, 20, dtype=torch.float64)
        assert torch.equal(torch.round(S.make_times(p, 20)[:-1] * 1000).long(), torch.round(u).long())
    model, x, ref = ddpm_reference
    m = Counting(model)
    _, info = generate(m, "ode", solver="dpm++3m", steps=20, spacing=spacing, n=8, batch=8)
    assert info["nfe"] == 20 == m.calls and info["steps"] == 20
    errs = []
    for k in (10, 20, 40):
        y = S.sample_ode(model.denoiser(), x, S.make_times(p, k, spacing), None, solver="dpm++3m")
        errs.append(float((y - ref).norm(dim=1).median()))
    assert errs[0] > 2 * errs[1] > 4 * errs[2], errs


def test_discrete_steps_moves_collisions_to_the_next_free_integer():
    target = torch.tensor([10.0, 6.2, 2.4, 1.3, 1.1, 1.0])
    assert discrete_steps(target, 10).tolist() == [10, 6, 4, 3, 2, 1]
    assert discrete_steps(torch.linspace(10, 1, 10), 10).tolist() == list(range(10, 0, -1))
    assert discrete_steps(torch.tensor([10.0, 9.9, 9.8, 1.0]), 10).tolist() == [10, 9, 8, 1]  # room kept below T
    with pytest.raises(InputError, match="T = 3"):
        discrete_steps(torch.linspace(3, 1, 4), 3)


def test_make_times_full_ddpm_grid_and_errors():
    p = DiscreteProcess(get_betas("linear", 100))
    t = S.make_times(p, 100)
    assert torch.equal(
        t, torch.cat([torch.arange(100, 0, -1, dtype=torch.float64) / 100, torch.zeros(1, dtype=torch.float64)])
    )
    with pytest.raises(InputError, match="T = 100"):
        S.make_times(p, 101)
    with pytest.raises(InputError, match="--steps"):
        S.make_times(p, 0)
    with pytest.raises(InputError, match="--spacing"):
        S.make_times(p, 10, "cubic")


# ------------------------------------------------------------------------------------------
# identities


def algorithm_2(eps_model, betas: np.ndarray, x_T: torch.Tensor, noise, large: bool) -> torch.Tensor:
    """DDPM's Algorithm 2, literally (Ho et al. 2020; seeds 000/001/004)."""
    T = len(betas)
    alphas = 1 - betas
    alpha_bar = np.cumprod(alphas)
    x = x_T
    for t in range(T, 0, -1):
        z = noise() if t > 1 else torch.zeros_like(x)
        a, ab, b = alphas[t - 1], alpha_bar[t - 1], betas[t - 1]
        ab_prev = alpha_bar[t - 2] if t > 1 else 1.0
        sigma2 = b if large else (1 - ab_prev) / (1 - ab) * b
        eps = eps_model(x, torch.full((x.shape[0],), t / T, dtype=torch.float64))
        x = 1 / math.sqrt(a) * (x - (1 - a) / math.sqrt(1 - ab) * eps) + math.sqrt(sigma2) * z
    return x


@pytest.mark.parametrize("variance", ["small", "large"])
def test_ddpm_sampler_is_algorithm_2_on_the_full_grid(mixture, variance):
    betas = get_betas("linear", 200, beta_end=0.05)
    m = ExactGMM(mixture, DiscreteProcess(betas))
    stream = NoiseStream.for_samples(5, range(300), (2,), dtype=torch.float64)
    x_T = stream()
    den = m.denoiser()
    ours = S.sample_ddpm(den, x_T, S.make_times(m.process, 200), stream, variance=variance)
    assert den.nfe == 200
    ref_stream = NoiseStream.for_samples(5, range(300), (2,), dtype=torch.float64)
    ref = algorithm_2(m, betas, ref_stream(), ref_stream, large=(variance == "large"))
    assert stream.draws == ref_stream.draws == 200  # x_T and the 199 z's of steps t > 1
    assert torch.allclose(ours, ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", ["vp", "ve", "ddpm"])
def test_ddim_eta_1_is_ddpm_with_posterior_variance(mixture, kind):
    m = exact(mixture, kind)
    times = S.make_times(m.process, 40)
    runs = []
    for fn, kw in ((S.sample_ddim, {"eta": 1.0}), (S.sample_ddpm, {"variance": "small"})):
        stream = NoiseStream.for_samples(1, range(100), (2,), dtype=torch.float64)
        x = m.process.prior_std() * stream()
        runs.append(fn(m.denoiser(), x, times, stream, **kw))
    assert torch.allclose(runs[0], runs[1], rtol=1e-9, atol=1e-9)


def test_euler_ode_is_ddim_eta_0(mixture):
    for kind in ("vp", "subvp", "ve"):
        m = exact(mixture, kind)
        times = S.make_times(m.process, 30, "logsnr")
        x = m.process.prior_std() * NoiseStream.for_samples(2, range(50), (2,), dtype=torch.float64)()
        a = S.sample_ddim(m.denoiser(), x, times, None, eta=0.0)
        b = S.sample_ode(m.denoiser(), x, times, None, solver="euler")
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-9)


def test_ddim_eta_0_and_the_ode_solvers_agree_at_high_nfe(mixture):
    """Deterministic samplers integrate the same probability-flow ODE: from the same x_T they end at
    the same point, and DDIM's error shrinks as its steps grow."""
    m = exact(mixture, "vp")
    x = NoiseStream.for_samples(3, range(300), (2,), dtype=torch.float64)()
    ref = S.sample_ode(m.denoiser(), x, S.make_times(m.process, 2), None, solver="rk45", rtol=1e-8, atol=1e-8)

    def err(y):
        return float((y - ref).norm(dim=1).max())

    ddim = {k: err(S.sample_ddim(m.denoiser(), x, S.make_times(m.process, k), None)) for k in (50, 200, 800)}
    assert ddim[800] < 0.05
    assert ddim[50] > 2.5 * ddim[200] > 2.5 * 2.5 * ddim[800]  # first order: error ~ 1/steps
    for solver in ("heun", "dpm++2m", "dpm++3m"):  # second/third order: 100 steps do better than DDIM's 800
        assert err(S.sample_ode(m.denoiser(), x, S.make_times(m.process, 100, "logsnr"), None, solver=solver)) < 0.03
    assert (
        err(S.sample_ode(m.denoiser(), x, S.make_times(m.process, 2), None, solver="rk45")) < 0.005
    )  # default tolerances


def test_dpmpp_3m_converges_faster_than_2m(vp_reference):
    """DPM-Solver++(3M) is third order: from the same x_T, doubling the steps of the log-SNR grid
    divides its error by ~8 (2M: ~4), and it is more accurate than 2M at every step count."""
    m, x, ref = vp_reference

    def rms(solver, k):
        y = S.sample_ode(m.denoiser(), x, S.make_times(m.process, k, "logsnr"), None, solver=solver)
        return float((y - ref).norm(dim=1).pow(2).mean().sqrt())

    e2 = {k: rms("dpm++2m", k) for k in (20, 40, 80)}
    e3 = {k: rms("dpm++3m", k) for k in (20, 40, 80)}
    assert all(e3[k] < 0.6 * e2[k] for k in e3), (e2, e3)
    assert e3[40] / e3[80] > 5.5 and e3[40] / e3[80] > 1.4 * e2[40] / e2[80], (e2, e3)
    assert 3 < e2[40] / e2[80] < 5  # second order


def test_dpmpp_update_integrates_polynomial_x0_exactly():
    """An order-k step integrates the interpolant of the last k x0 exactly: when x0(lambda) is a
    polynomial of degree k - 1 (for k = 1, 3), the step is the exact solution
    x_s / sigma_s = x_t / sigma_t + int e^lambda x0 dlambda = ... + [e^lambda (P - P' + P'')]."""
    c = torch.tensor([[0.7, -1.2], [0.3, 0.5], [-0.4, 0.2]], dtype=torch.float64)  # P = c0 + c1 l + c2 l^2
    P = lambda lam: c[0] + c[1] * lam + c[2] * lam**2  # noqa: E731
    prim = lambda lam: math.exp(lam) * (P(lam) - (c[1] + 2 * c[2] * lam) + 2 * c[2])  # noqa: E731
    lams, lam_s, sig_t, sig_s = [-0.9, -0.3, 0.1], 0.8, 0.9, 0.35
    x = torch.tensor([0.2, -0.1], dtype=torch.float64)
    exact_x = sig_s * (x / sig_t + prim(lam_s) - prim(lams[-1]))
    alpha_s = sig_s * math.exp(lam_s)
    got = S.dpmpp_update(x, [P(v) for v in lams], lams, lam_s, sig_s / sig_t, alpha_s, order=3)
    assert torch.allclose(got, exact_x, rtol=1e-12, atol=1e-12)
    c[1] = c[2] = 0  # constant x0: first order is exact
    got1 = S.dpmpp_update(x, [P(v) for v in lams], lams, lam_s, sig_s / sig_t, alpha_s, order=1)
    assert torch.allclose(got1, sig_s * (x / sig_t + prim(lam_s) - prim(lams[-1])), rtol=1e-12, atol=1e-12)


def test_dpmpp_order_drops_on_a_step_much_wider_than_the_last(vp_reference):
    """The step-ratio safeguard: on a time-uniform VP grid the last step is ~5x wider in lambda than
    the one before; extrapolating x0 that far ruins 3M (median error 0.6 without the safeguard, 0.04 with), so that
    step drops to first order."""
    m, x, ref = vp_reference
    times = S.make_times(m.process, 20, "uniform")
    lam = 0.5 * m.process.log_snr(times[:-1])
    h = torch.diff(lam)
    assert h[-1] > 2 * h[-2]
    y = S.sample_ode(m.denoiser(), x, times, None, solver="dpm++3m")
    assert float((y - ref).norm(dim=1).median()) < 0.1


class Counting:
    """An exact model whose network calls are counted independently of the Denoiser."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        for k in ("process", "prediction", "normalization", "data_kind", "data_shape", "dtype", "meta"):
            setattr(self, k, getattr(model, k))

    def net(self, x, t):
        self.calls += 1
        return self.model(x, t)

    def denoiser(self, clip=None):
        return Denoiser(self.net, self.process, "eps", conditioning="t")


@pytest.mark.parametrize(
    "sampler, kind, kw, expected",
    [
        ("ddpm", "vp", {"steps": 13}, 13),
        ("ddim", "ddpm", {"steps": 13, "eta": 0.5}, 13),
        ("sde", "subvp", {"steps": 13}, 13),
        ("pc", "vp", {"steps": 13, "corrector_steps": 2}, 13 + 2 * 12),
        ("ode", "vp", {"steps": 13, "solver": "euler"}, 13),
        ("ode", "vp", {"steps": 13, "solver": "heun"}, 2 * 13 - 1),
        ("ode", "ve", {"steps": 13, "solver": "dpm++2m"}, 13),
        ("ode", "ddpm", {"steps": 20, "solver": "dpm++3m", "spacing": "logsnr"}, 20),
        ("ode", "ddpm", {"steps": 20, "solver": "dpm++2m", "spacing": "karras"}, 20),
        ("langevin", "ve", {"steps": 13, "corrector_steps": 3}, 13 * 3 + 1),
        ("ode", "vp", {"solver": "rk45"}, None),
    ],
)
def test_nfe_is_exact(mixture, sampler, kind, kw, expected):
    model = Counting(exact(mixture, kind))
    _, info = generate(model, sampler, n=10, batch=5, **kw)
    assert sum(info.get("nfe_per_batch", [info["nfe"]] * 2)) == model.calls  # two batches
    if expected is not None:
        options = {k: v for k, v in kw.items() if k in ("solver", "corrector_steps")}
        assert info["nfe"] == expected == S.expected_nfe(sampler, kw["steps"], **options)
    else:
        assert info["nfe"] > 10


# ------------------------------------------------------------------------------------------
# per-sample seeds


@pytest.mark.parametrize(
    "sampler, kw", [("ddpm", {"steps": 30}), ("pc", {"steps": 15}), ("ode", {"steps": 8}), ("langevin", {"steps": 10})]
)
def test_sample_i_is_the_same_whatever_the_batch(mixture, sampler, kw):
    m = exact(mixture, "ve")
    a, _ = generate(m, sampler, n=23, batch=23, seed=11, **kw)
    b, _ = generate(m, sampler, n=23, batch=4, seed=11, **kw)
    assert np.array_equal(a, b)
    # two processes sharing the work (sample indices 0..9 and 10..22) give the same samples
    c1, _ = generate(m, sampler, n=10, batch=3, seed=11, start_index=0, **kw)
    c2, _ = generate(m, sampler, n=13, batch=6, seed=11, start_index=10, **kw)
    assert np.array_equal(a, np.concatenate([c1, c2]))
    # a prefix of a larger run is the smaller run; other seeds differ
    d, _ = generate(m, sampler, n=5, batch=2, seed=11, **kw)
    assert np.array_equal(a[:5], d)
    e, _ = generate(m, sampler, n=5, batch=5, seed=12, **kw)
    assert not np.allclose(d, e)
    assert len(np.unique(a[:, 0])) == 23


def test_noise_stream_is_standard_normal_and_independent():
    s = NoiseStream.for_samples(0, range(4000), (3,))
    z = torch.cat([s() for _ in range(3)], 0).numpy()  # 12000 x 3
    assert abs(z.mean()) < 0.03 and abs(z.std() - 1) < 0.03
    c = np.corrcoef(z.reshape(3, 4000, 3).transpose(1, 0, 2).reshape(4000, 9).T)
    assert np.abs(c - np.eye(9)).max() < 0.08


# ------------------------------------------------------------------------------------------
# every sampler reproduces the mixture, better with more steps

CASES = [
    ("ddpm", "vp", {}, 10, 200),
    ("ddpm", "ddpm", {"variance": "large"}, 10, 200),
    ("ddim", "vp", {}, 5, 100),
    ("sde", "vp", {}, 5, 300),
    ("pc", "ve", {}, 10, 150),
    ("ode", "vp", {"solver": "dpm++2m"}, 4, 30),
    ("ode", "ddpm", {"solver": "dpm++3m"}, 4, 20),
    ("ode", "ve", {"solver": "heun"}, 4, 25),
    ("ode", "subvp", {"solver": "euler"}, 5, 100),
    ("ode", "vp", {"solver": "rk45", "rtol": 1e-3, "atol": 1e-3}, None, 0),
    ("langevin", "ve", {}, 10, 100),
]


@pytest.mark.parametrize(
    "sampler, kind, kw, few, many",
    CASES,
    ids=[f"{c[0]}-{c[1]}-{c[2].get('solver', c[2].get('variance', ''))}" for c in CASES],
)
def test_sampler_reproduces_the_mixture(mixture, sampler, kind, kw, few, many):
    m = exact(mixture, kind)
    x, info = generate(m, sampler, n=N, steps=many or None, batch=N, seed=0, **kw)
    q = mixture_quality(x, mixture)
    assert q["nonfinite"] == 0
    assert q["swd"] < 0.06, q  # exact samples score ~0.025 (swd_floor)
    assert q["weight_error"] < 0.04 and q["mean_error"] < 0.25 and q["cov_error"] < 0.3, q
    if few is not None:  # the error shrinks as steps grow
        y, _ = generate(m, sampler, n=N, steps=few, batch=N, seed=0, **kw)
        assert mixture_quality(y, mixture)["swd"] > 1.5 * q["swd"]


def test_langevin_corrector_reduces_the_error_of_the_predictor(mixture):
    m = exact(mixture, "ve")
    alone, _ = generate(m, "pc", n=N, steps=20, corrector_steps=0, batch=N)
    corrected, _ = generate(m, "pc", n=N, steps=20, corrector_steps=2, snr=0.3, batch=N)
    q0, q2 = mixture_quality(alone, mixture), mixture_quality(corrected, mixture)
    assert q2["swd"] < 0.7 * q0["swd"], (q0, q2)
    assert q2["cov_error"] < 0.6 * q0["cov_error"], (q0, q2)


def test_fast_ode_default_is_close_to_the_exact_ode_solution(mixture):
    """The default (DPM-Solver++(3M), 20 steps on a log-SNR grid = 20 NFE) lands, from the same x_T,
    within 2% of the data's spread of the tightly solved ODE (median), so its quality is the ODE's own
    (benchmarks/sampler_quality.py compares it with 1000-step DDPM on many samples)."""
    m = exact(mixture, "vp")
    x, info = generate(m, n=N, batch=N, seed=1)
    assert info["nfe"] == 20 and info["solver"] == "dpm++3m" and info["spacing"] == "logsnr"
    ref, _ = generate(m, "ode", solver="rk45", rtol=1e-7, atol=1e-7, n=N, batch=N, seed=1)
    spread = float(np.sqrt(np.trace(mixture.cov())))
    assert np.median(np.linalg.norm(x - ref, axis=1)) < 0.02 * spread
    assert mixture_quality(x, mixture)["swd"] < mixture_quality(ref, mixture)["swd"] + 0.01


# ------------------------------------------------------------------------------------------
# errors, trajectories, clipping


def test_sampler_errors(mixture):
    vp = exact(mixture, "vp")
    with pytest.raises(InputError, match="langevin does not apply to a vp model"):
        generate(vp, "langevin", n=2)
    with pytest.raises(InputError, match="langevin does not apply to a ddpm model"):
        generate(exact(mixture, "ddpm"), "langevin", n=2)
    with pytest.raises(InputError, match="unknown sampler 'foo'"):
        generate(vp, "foo", n=2)
    with pytest.raises(InputError, match="unknown ODE solver"):
        generate(vp, "ode", solver="rk4", n=2)
    with pytest.raises(InputError, match="only the ode sampler takes a solver"):
        generate(vp, "ddim", solver="heun", n=2)
    with pytest.raises(InputError, match="--eta"):
        generate(vp, "ddim", eta=1.5, n=2)
    with pytest.raises(InputError, match="--steps"):
        generate(vp, "ddpm", steps=0, n=2)
    with pytest.raises(InputError, match="--variance"):
        generate(vp, "ddpm", variance="huge", n=2)
    with pytest.raises(InputError, match="--snr"):
        generate(vp, "pc", snr=-1, n=2, steps=3)
    with pytest.raises(InputError, match="-n"):
        generate(vp, n=0)


def test_trajectory_shape_and_content(mixture):
    m = exact(mixture, "vp")
    x, info = generate(m, "ddpm", n=6, steps=20, batch=4, trajectory=5)
    tr = info["trajectory"]
    assert tr.shape == (6, 5, 2, 2) and tr.dtype == np.float32
    assert trajectory_frames(20, 5) == [0, 5, 10, 15, 20]
    assert info["trajectory_times"][0] == 1.0 and info["trajectory_times"][-1] == 0.0
    assert np.array_equal(tr[:, -1, 0], x) and np.array_equal(tr[:, -1, 1], x)
    # the first state is the prior noise, its x0 the exact posterior mean
    x_T = torch.from_numpy(tr[:, 0, 0]).double()
    assert np.allclose(tr[:, 0, 1], m.x0(x_T, 1.0).numpy(), atol=1e-5)
    _, info = generate(m, "ode", solver="rk45", n=3, trajectory=3, steps=10)
    assert info["trajectory"].shape == (3, 3, 2, 2) and info["nfe"] > 3


def test_clipping_keeps_x0_in_range():
    """A denoiser with clip keeps every predicted x0 in [-1, 1] (and eps consistent with it)."""
    p = make_process("vp")

    def wild(x, c):  # an eps-network that predicts x0 far out of range
        return -5 * torch.ones_like(x)

    seen = []
    den = Denoiser(wild, p, "eps", clip=(-1.0, 1.0))
    x = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    out = S.sample_ddim(den, x, S.make_times(p, 10), None, callback=lambda d: seen.append(d["x0"]))
    assert all(float(v.abs().max()) <= 1.0 for v in seen)
    assert float(out.abs().max()) <= 1.0 + 1e-6


def test_karras_grid_on_a_cosine_ddpm_starts_at_sigma_80(mixture):
    """On a cosine DDPM sigma~(t = 1) is about 2e4: a karras ramp from there spends most steps at pure
    noise (before: 12 of 20 steps within 1% of T, and DPM-Solver++(3M) broke). The ramp starts at
    EDM's sigma~ = 80 instead, sampling starts there from N(0, sigma(t0)^2), and every solver on it
    reproduces the mixture as well as on the log-SNR grid."""
    m = ExactGMM(mixture, DiscreteProcess(get_betas("cosine", 1000), "cosine"))
    t = S.make_times(m.process, 20, "karras")
    assert abs(float(S.sigma_tilde(m.process, t[0])) - 80) < 15  # the step nearest to sigma~ = 80
    assert int(round(float(t[1]) * 1000)) < 990  # no run of steps at pure noise
    ref = mixture_quality(generate(m, "ode", n=N, batch=N, steps=20, spacing="logsnr")[0], mixture)["swd"]
    for solver, steps in (("dpm++3m", 20), ("dpm++2m", 20), ("heun", 18), ("euler", 40)):
        x, info = generate(m, "ode", n=N, batch=N, steps=steps, solver=solver, spacing="karras")
        q = mixture_quality(x, mixture)
        assert info["nfe"] == (2 * steps - 1 if solver == "heun" else steps)
        assert q["nonfinite"] == 0 and q["swd"] < max(0.06, 1.5 * ref), (solver, q, ref)


# ------------------------------------------------------------------------------------------
# autoguidance (Karras et al. 2024)


def test_autoguidance_extrapolates_x0_and_eps_from_the_guide(mixture):
    """The guided denoiser is x0_guide + w (x0 - x0_guide), eps likewise, and it stays a consistent
    pair (x = alpha x0 + sigma eps); each call costs 2 network evaluations."""
    from ddpmctl.diffusion import marginal

    good = exact(mixture, "vp")
    bad = ExactGMM(GaussianMixture(mixture.weights, mixture.means + 0.7, mixture.covs * 1.5), good.process)
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2
    for t in (0.1, 0.5, 0.9):
        pg, pb = good.denoiser()(x, t), bad.denoiser()(x, t)
        d = good.denoiser().set_guide(bad.denoiser(), 2.5)
        p = d(x, t)
        assert torch.allclose(p.x0, pb.x0 + 2.5 * (pg.x0 - pb.x0), atol=1e-10)
        assert torch.allclose(p.eps, pb.eps + 2.5 * (pg.eps - pb.eps), atol=1e-10)
        alpha, sigma = marginal(good.process, torch.tensor([t], dtype=torch.float64))
        assert torch.allclose(alpha * p.x0 + sigma * p.eps, x, atol=1e-9)
        assert d.nfe == 2
    with pytest.raises(ValueError, match="must not clip"):
        Denoiser(
            lambda x, t: x,
            good.process,
            "eps",
            guide=Denoiser(lambda x, t: x, good.process, "eps", clip=(-1, 1)),
            guidance=2.0,
        )


def test_autoguidance_identities_and_sharpening(mixture):
    """w = 1 is the model alone (the guide is not even evaluated), w = 0 the guide alone, and a
    model guiding itself is unchanged at any w; guided by a blurrier version of itself (wider
    components), the samples come out sharper than without guidance."""
    good = exact(mixture, "vp")
    blurry = ExactGMM(GaussianMixture(mixture.weights, mixture.means, mixture.covs * 2.0), good.process)
    opts = dict(n=400, steps=12, seed=3)
    plain, info = generate(good, "ode", **opts)
    same, info1 = generate(good, "ode", guide=blurry, guidance=1.0, **opts)
    assert np.array_equal(plain, same) and info1["nfe"] == info["nfe"] == 12 and "guidance" not in info1
    selfg, info3 = generate(good, "ode", guide=exact(mixture, "vp"), guidance=3.0, **opts)
    assert np.allclose(selfg, plain, atol=1e-9) and info3["nfe"] == 24 and info3["guidance"] == 3.0
    guide_only, _ = generate(blurry, "ode", **opts)
    zero, _ = generate(good, "ode", guide=blurry, guidance=0.0, **opts)
    assert np.allclose(zero, guide_only, atol=1e-9)

    # sharper: the mean distance of a sample to its nearest component mean shrinks
    def spread(x):
        d = np.linalg.norm(x[:, None, :] - mixture.means[None], axis=-1)
        return d.min(axis=1).mean()

    guided, _ = generate(good, "ode", guide=blurry, guidance=2.0, **opts)
    assert spread(guided) < 0.9 * spread(plain)
    assert spread(guide_only) > spread(plain)

    # a guide without a weight guides with the documented default, from Python as from the CLI
    default, info_d = generate(good, "ode", guide=blurry, **opts)
    explicit, _ = generate(good, "ode", guide=blurry, guidance=DEFAULT_GUIDANCE, **opts)
    assert DEFAULT_GUIDANCE == 3.0 and info_d["guidance"] == 3.0 and np.array_equal(default, explicit)


def test_autoguidance_refuses_a_guide_that_does_not_fit(mixture):
    good = exact(mixture, "vp")
    with pytest.raises(InputError, match="--guide: the guide's process"):
        generate(good, "ode", n=2, guide=exact(mixture, "ve"), guidance=2.0)
    other = ExactGMM(GaussianMixture.random(2, 3, np.random.default_rng(0)), good.process)
    with pytest.raises(InputError, match="--guide: the guide's data shape"):
        generate(good, "ode", n=2, guide=other, guidance=2.0)
    for w in (-1.0, float("nan"), float("inf")):
        with pytest.raises(InputError, match="--guidance"):
            generate(good, "ode", n=2, guide=good, guidance=w)


# ------------------------------------------------------------------------------------------
# the registry


REGISTRY_CASES = [(name, None) for name in S.SAMPLERS if name != "ode"] + [("ode", solver) for solver in S.SOLVERS]


@pytest.mark.parametrize("sampler, solver", REGISTRY_CASES)
def test_registry_nfe_formula_is_the_counted_nfe(mixture, sampler, solver):
    record = S.SAMPLERS_BY_NAME[sampler]
    kind = record.processes[0] if record.processes else "vp"
    model = Counting(exact(mixture, kind))
    options = {"corrector_steps": 3} if "corrector_steps" in record.options else {}
    x, info = generate(model, sampler, n=4, batch=4, steps=7, solver=solver, **options)
    plan = S.plan(model.process, sampler, 7, solver=solver, **options)
    assert info["nfe"] == model.calls and info["steps"] == plan.steps == 7
    assert plan.nfe == S.expected_nfe(sampler, 7, solver, **options)
    if plan.nfe is None:  # adaptive (rk45): a trajectory's extra evaluations are not counted
        assert not plan.free_report and plan.solver.name == "rk45"
        calls = model.calls
        y, traj = generate(model, sampler, n=4, batch=4, steps=7, solver=solver, trajectory=3)
        assert traj["nfe"] == info["nfe"] and model.calls > calls + info["nfe"] and np.array_equal(x, y)
    else:
        assert info["nfe"] == plan.nfe


def test_registry_defaults_and_processes(mixture):
    ddpm = make_process("ddpm", T=40)
    for name, record in S.SAMPLERS_BY_NAME.items():
        fn_name = "sample_" + name.replace("++", "pp_").replace("-", "_")  # dpm++2m-sde: sample_dpmpp_2m_sde
        assert record.fn.__name__ == fn_name and record.spacing in S.SPACINGS
        if name == "ode":
            assert S.default_steps(name, make_process("vp"), "heun") == S.ODE_SOLVERS["heun"].steps == 10
            continue
        assert S.default_steps(name, make_process("vp")) == record.steps
        assert S.default_steps(name, ddpm) == (40 if record.all_steps else min(record.steps, 40))
    with pytest.raises(InputError, match="langevin .*ve process"):
        S.plan(make_process("vp"), "langevin")
    assert S.plan(make_process("ve"), "langevin").options == {"snr": 0.5, "corrector_steps": 2}
    assert S.plan(make_process("vp"), "ode", solver="rk45").options == {"solver": "rk45", "rtol": 1e-5, "atol": 1e-5}
    assert S.plan(make_process("vp"), "ode").options == {"solver": S.DEFAULT_SOLVER}
    # generate takes every option of every record
    from dataclasses import fields

    from ddpmctl.sampling import SAMPLER_KEYWORDS, SampleOptions

    records = (*S.SAMPLERS_BY_NAME.values(), *S.ODE_SOLVERS.values())
    assert set(SAMPLER_KEYWORDS) == {k for r in records for k in r.options}
    assert set(SAMPLER_KEYWORDS) <= {f.name for f in fields(SampleOptions)}


def test_docs_sampler_table_is_the_registry():
    from pathlib import Path

    docs = (Path(__file__).resolve().parent.parent / "docs" / "sample.md").read_text()
    assert S.markdown_table() in docs
    for name in S.SAMPLERS:
        assert f"| `{name}` |" in S.markdown_table()


def test_dpmpp_2m_is_the_order_2_multistep_solver(vp_reference):
    """Algorithm 2 written out gives the generic multistep solver's order-2 result, bit for bit."""
    m, x, _ = vp_reference
    for spacing in ("logsnr", "karras", "uniform"):
        times = S.make_times(m.process, 9, spacing)
        a = S.ode_dpmpp_2m(m.denoiser(), x, times)
        b = S.ode_dpmpp(m.denoiser(), x, times, order=2)
        assert torch.equal(a, b), spacing
