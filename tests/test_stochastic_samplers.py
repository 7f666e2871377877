"""The stochastic samplers of ``ddpmctl.samplers.stochastic`` (EDM's stochastic sampler, Euler
ancestral, DPM-Solver++(2M) SDE, Restart) proven on the exact model of a Gaussian mixture: each
reduces to the deterministic solver it extends when its noise is switched off (bit for bit), each
reproduces the mixture itself (not the ODE's output) and better with more steps, and each reports
the NFE of its registry formula."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_cli

from ddpmctl import samplers as S
from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM, mixture_quality
from ddpmctl.gmm import GaussianMixture
from ddpmctl.sampling import NoiseStream, generate
from ddpmctl.schedules import make_process

N = 2000
KINDS = ["vp", "subvp", "ve", "ddpm"]


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.random(3, 2, np.random.default_rng(7))


def exact(mixture, kind):
    return ExactGMM(mixture, make_process(kind))


def start(model, times, seed=2, n=200):
    stream = NoiseStream.for_samples(seed, range(n), (2,), dtype=torch.float64)
    return S.start_std(model.process, float(times[0])) * stream(), stream


# ------------------------------------------------------------------------------------------
# without noise, each is the deterministic solver it extends


@pytest.mark.parametrize("kind", KINDS)
def test_edm_without_churn_is_ode_heun_bit_for_bit(mixture, kind):
    m = exact(mixture, kind)
    times = S.make_times(m.process, 12, "karras")
    x, stream = start(m, times)
    heun = S.ode_heun(m.denoiser(), x, times)
    assert torch.equal(S.sample_edm(m.denoiser(), x, times, stream, churn=0.0), heun)
    # churn outside [S_tmin, S_tmax] (an empty window) is no churn either, and draws no noise
    draws = stream.draws
    assert torch.equal(S.sample_edm(m.denoiser(), x, times, stream, churn=40.0, s_tmin=1e6, s_tmax=1e7), heun)
    assert stream.draws == draws
    # with churn the result differs and noise is drawn
    assert not torch.allclose(S.sample_edm(m.denoiser(), x, times, stream, churn=40.0), heun)
    assert stream.draws > draws


@pytest.mark.parametrize("kind", KINDS)
def test_restart_without_restarts_is_ode_heun_bit_for_bit(mixture, kind):
    m = exact(mixture, kind)
    times = S.make_times(m.process, 18, "karras")
    x, stream = start(m, times)
    heun = S.ode_heun(m.denoiser(), x, times)
    assert torch.equal(S.sample_restart(m.denoiser(), x, times, stream, restarts=0), heun)
    assert stream.draws == 1  # only the start
    seen = []
    y = S.sample_restart(m.denoiser(), x, times, stream, restarts=2, callback=lambda d: seen.append(d["i"]))
    assert seen == list(range(18)) and not torch.allclose(y, heun)  # each grid step reported once, in order
    assert stream.draws == 3  # one jump back to t_max per restart


@pytest.mark.parametrize("kind", ["vp", "ve", "ddpm"])
@pytest.mark.parametrize("eta", [1.0, 0.5, 0.0])
def test_euler_ancestral_is_ddim_with_the_same_eta(mixture, kind, eta):
    """k-diffusion's Euler ancestral step is DDIM's step in other variables: sigma_up^2 = eta^2 x the
    posterior variance, x~ + (sigma_down - sigma~) eps = x0 + sigma_down eps."""
    m = exact(mixture, kind)
    times = S.make_times(m.process, 25, "karras")
    runs = []
    for fn in (S.sample_euler_a, S.sample_ddim):
        x, stream = start(m, times, seed=4)
        runs.append(fn(m.denoiser(), x, times, stream, eta=eta))
    assert torch.allclose(runs[0], runs[1], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_dpmpp_2m_sde_with_eta_0_is_dpmpp_2m_bit_for_bit(mixture, kind):
    """Both run ``dpmpp_2m``; so that this can fail, the reference is the generic multistep solver
    of order 2 (``ode_dpmpp``, written independently of Algorithm 2)."""
    m = exact(mixture, kind)
    for spacing in ("karras", "logsnr", "uniform"):  # uniform: the step-ratio safeguard acts (VP's last step)
        times = S.make_times(m.process, 15, spacing)
        x, stream = start(m, times)
        ode = S.ode_dpmpp(m.denoiser(), x, times, order=2)
        assert torch.equal(S.ode_dpmpp_2m(m.denoiser(), x, times), ode), spacing
        assert torch.equal(S.sample_dpmpp_2m_sde(m.denoiser(), x, times, stream, eta=0.0), ode), spacing
        assert stream.draws == 1


# ------------------------------------------------------------------------------------------
# discrete processes: churned and restarted levels are trained steps


def test_on_a_discrete_process_the_network_sees_only_trained_steps(mixture):
    """EDM's churn and Restart's t_max move to noise levels off the grid; round_t (EDM's
    round_sigma) keeps every evaluation on a step i/T of the DDPM process, and the churn is real
    (some evaluations happen above the grid's times)."""
    m = exact(mixture, "ddpm")
    T = m.process.T
    seen: list[float] = []

    def net(x, t):
        seen.extend(torch.as_tensor(t, dtype=torch.float64).reshape(-1).tolist())
        return m(x, t)

    from ddpmctl.diffusion import Denoiser

    den = Denoiser(net, m.process, "eps", conditioning="t")
    times = S.make_times(m.process, 20, "karras")
    grid = {round(float(t) * T) for t in times}
    for fn, kw in ((S.sample_edm, {"churn": 40.0}), (S.sample_restart, {"restarts": 2})):
        seen.clear()
        x, stream = start(m, times, n=50)
        y = fn(den, x, times, stream, **kw)
        steps = np.array(seen) * T
        assert np.allclose(steps, np.round(steps), atol=1e-6), fn.__name__
        assert set(np.round(steps).astype(int)) - grid, fn.__name__  # off the grid, on trained steps
        assert torch.isfinite(y).all()


# ------------------------------------------------------------------------------------------
# each reproduces the mixture, better with more steps

CASES = [
    ("edm", "vp", {}, 16, 64),
    ("edm", "ddpm", {}, 16, 64),
    ("edm", "ve", {"churn": 10.0}, 16, 64),
    ("euler-a", "vp", {}, 10, 200),
    ("euler-a", "subvp", {}, 10, 200),
    ("dpm++2m-sde", "vp", {}, 10, 100),
    ("dpm++2m-sde", "ve", {}, 10, 100),
    ("restart", "vp", {}, 8, 18),
    ("restart", "ddpm", {}, 8, 18),
    ("restart", "subvp", {"restarts": 3}, 8, 30),
]


@pytest.mark.parametrize("sampler, kind, kw, few, many", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_sampler_reproduces_the_mixture(mixture, sampler, kind, kw, few, many):
    """Quality against the exact mixture (sliced W1 to its exact quantiles, weights, means,
    covariances); exact samples score swd ~0.025."""
    m = exact(mixture, kind)
    x, info = generate(m, sampler, n=N, steps=many, batch=N, seed=0, **kw)
    q = mixture_quality(x, mixture)
    assert q["nonfinite"] == 0
    assert q["swd"] < 0.06, q
    assert q["weight_error"] < 0.04 and q["mean_error"] < 0.25 and q["cov_error"] < 0.3, q
    assert info["nfe"] == S.expected_nfe(sampler, many, **kw)
    y, _ = generate(m, sampler, n=N, steps=few, batch=N, seed=0, **kw)
    assert mixture_quality(y, mixture)["swd"] > 1.5 * q["swd"]


@pytest.mark.parametrize("sampler, steps", [("euler-a", 400), ("dpm++2m-sde", 200), ("edm", 256)])
def test_stochastic_samplers_converge_to_the_exact_distribution(mixture, sampler, steps):
    """With many steps the samples are as close to the mixture as exact samples are. One draw of
    4000 exact samples scores sliced W1 0.015-0.020 (floor 0.020), MMD^2 0 +- 3e-4, weights within
    0.006, covariances within 3-6%; the bounds below leave room for the noise of one draw."""
    m = exact(mixture, "vp")
    x, _ = generate(m, sampler, n=2 * N, steps=steps, batch=2 * N, seed=1)
    q = mixture_quality(x, mixture)
    assert q["swd"] < 2 * q["swd_floor"] and abs(q["mmd2"]) < 1e-3, q
    assert q["weight_error"] < 0.03 and q["mean_error"] < 0.1 and q["cov_error"] < 0.1, q


def test_restart_beats_its_ode_at_the_same_grid(mixture):
    """Restart's claim (Xu et al. 2023): the restarts contract the ODE's accumulated error. On the
    default 18-step karras grid Restart (43 NFE) is closer to the mixture than Heun alone (35 NFE),
    and than Heun with 22 steps (43 NFE)."""
    m = exact(mixture, "vp")
    swd = {}
    for label, sampler, steps in (("restart", "restart", 18), ("heun18", "ode", 18), ("heun22", "ode", 22)):
        kw = {"solver": "heun", "spacing": "karras"} if sampler == "ode" else {}
        x, info = generate(m, sampler, n=N, steps=steps, batch=N, seed=0, **kw)
        swd[label] = mixture_quality(x, mixture)["swd"]
    assert swd["restart"] < 0.9 * swd["heun18"] and swd["restart"] < swd["heun22"], swd


# ------------------------------------------------------------------------------------------
# NFE, options and errors


@pytest.mark.parametrize(
    "sampler, kind, kw, expected",
    [
        ("edm", "ddpm", {"steps": 13}, 25),
        ("edm", "ve", {"steps": 13, "churn": 80.0}, 25),
        ("euler-a", "subvp", {"steps": 13}, 13),
        ("dpm++2m-sde", "vp", {"steps": 13, "eta": 0.5}, 13),
        ("restart", "vp", {"steps": 13, "restarts": 3, "restart_steps": 4}, 25 + 2 * 3 * 4),
        ("restart", "ddpm", {"steps": 13}, 25 + 2 * 2 * 2),
        ("restart", "vp", {"steps": 1}, 1),
    ],
)
def test_nfe_is_the_registry_formula(mixture, sampler, kind, kw, expected):
    m = exact(mixture, kind)
    _, info = generate(m, sampler, n=6, batch=3, **kw)
    options = {k: v for k, v in kw.items() if k != "steps"}
    assert info["nfe"] == expected == S.expected_nfe(sampler, kw["steps"], **options)


def test_defaults_and_errors(mixture):
    vp = make_process("vp")
    assert S.plan(vp, "edm").options == {"churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.0}
    assert S.plan(vp, "restart").options == {"restarts": 2, "restart_steps": 2, "s_tmin": 0.06, "s_tmax": 0.30}
    assert S.plan(vp, "restart").nfe == 43 and S.plan(vp, "restart").spacing == "karras"
    assert S.plan(vp, "euler-a").options == {"eta": 1.0} == S.plan(vp, "dpm++2m-sde").options
    assert S.plan(vp, "ddim").options == {"eta": 0.0}  # each sampler its own default for the shared --eta
    m = exact(mixture, "vp")
    for sampler, kw, flag in [
        ("edm", {"churn": -1}, "--option churn"),
        ("edm", {"s_tmin": 2.0, "s_tmax": 1.0}, "s_tmin/s_tmax"),
        ("edm", {"s_noise": 0.0}, "--option s_noise"),
        ("euler-a", {"eta": 1.5}, "--eta"),
        ("restart", {"restarts": -1}, "--option restarts:"),
        ("restart", {"restart_steps": 0}, "--option restart_steps"),
        ("restart", {"s_tmin": 0.3, "s_tmax": 0.3}, "s_tmin/s_tmax"),
        ("restart", {"restarts": "x"}, "restarts takes int"),
    ]:
        with pytest.raises(InputError, match=flag):
            generate(m, sampler, n=2, steps=5, **kw)
    with pytest.raises(InputError, match="restart: sigma~ at t_max"):  # the interval lies below the grid
        generate(m, "restart", n=2, steps=3, s_tmin=3.0, s_tmax=3.2)
    no_restart, _ = generate(m, "restart", n=5, steps=3, restarts=0, s_tmin=3.0, s_tmax=3.2)  # nothing to check
    heun, _ = generate(m, "ode", n=5, steps=3, solver="heun", spacing="karras")
    assert np.array_equal(no_restart, heun)
    assert S.parse_options(["churn=10", "s-noise=1.007"]) == {"churn": "10", "s_noise": "1.007"}
    with pytest.raises(InputError, match="no sampler takes 'foo'"):
        S.parse_options(["foo=1"])
    with pytest.raises(InputError, match="NAME=VALUE"):
        S.parse_options(["churn"])


def test_cli_runs_the_new_samplers_with_their_options(tmp_path):
    GaussianMixture.random(3, 2, np.random.default_rng(0)).save(tmp_path / "mix.npz")
    r = run_cli(
        "sample", tmp_path / "mix.npz", "--sampler", "restart", "-O", "restarts=3", "--option", "restart_steps=4",
        "--steps", 10, "-n", 50, "-o", tmp_path / "r.npy", "--json",
    )
    assert r.returncode == 0, r.stderr.decode()
    info = json.loads(r.stdout)
    assert info["nfe"] == 2 * 10 - 1 + 2 * 3 * 4
    assert info["options"] == {"restarts": 3, "restart_steps": 4, "s_tmin": 0.06, "s_tmax": 0.3}
    r = run_cli(
        "sample", tmp_path / "mix.npz", "--sampler", "euler-a", "--steps", 8, "-n", 20, "-o", tmp_path / "e.npy",
        "--json",
    )
    assert r.returncode == 0 and json.loads(r.stdout)["options"] == {"eta": 1.0}, r.stderr.decode()
    r = run_cli("sample", tmp_path / "mix.npz", "--sampler", "edm", "-O", "churn=abc", "-o", tmp_path / "x.npy")
    assert r.returncode == 2 and "churn takes float" in r.stderr.decode()
    r = run_cli("sample", tmp_path / "mix.npz", "-O", "chrun=1", "-o", tmp_path / "x.npy")
    assert r.returncode == 2 and "no sampler takes 'chrun'" in r.stderr.decode()
