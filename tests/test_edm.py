"""EDM's preconditioning and training (Karras et al. 2022, Table 1, "Ours"): the edm process
(sigma(t) = t, ln sigma ~ N(P_mean, P_std^2)), the edm parameterisation (c_skip, c_out, c_in,
c_noise) in the one conversion, the loss weight, the exact mixture sampled through both, and the
command line from data to samples."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import run_cli

from ddpmctl import checkpoint as ckpt
from ddpmctl import diffusion
from ddpmctl import samplers as S
from ddpmctl.exact import ExactGMM, mixture_quality
from ddpmctl.gmm import GaussianMixture
from ddpmctl.objectives import Objective, edm_lambda, loss_weight
from ddpmctl.sampling import generate
from ddpmctl.schedules import EDMProcess, make_process

SIGMAS = torch.tensor([0.002, 0.01, 0.1, 0.5, 1.0, 3.0, 20.0, 80.0], dtype=torch.float64)
N = 2000


@pytest.fixture(scope="module")
def mixture():
    return GaussianMixture.random(3, 2, np.random.default_rng(7))


# ------------------------------------------------------------------------------------------
# the preconditioning


def test_preconditioning_closed_forms():
    """Table 1: c_skip = sd^2/(s^2+sd^2), c_out = s sd/sqrt(s^2+sd^2), c_in = 1/sqrt(s^2+sd^2);
    c_skip + c_out^2/sd^2 = 1, D -> x as sigma -> 0 and D -> sd F as sigma -> inf; the training
    target is (x0 - c_skip x)/c_out (EDM eq. 8), and lambda c_out^2 = 1."""
    sd = 0.5
    c_skip, c_out, c_in = diffusion.edm_precond(SIGMAS, sd)
    np.testing.assert_allclose(c_skip, sd**2 / (SIGMAS**2 + sd**2), rtol=1e-15)
    np.testing.assert_allclose(c_out, SIGMAS * sd / torch.sqrt(SIGMAS**2 + sd**2), rtol=1e-15)
    np.testing.assert_allclose(c_in, 1 / torch.sqrt(SIGMAS**2 + sd**2), rtol=1e-15)
    np.testing.assert_allclose(c_skip + c_out**2 / sd**2, torch.ones_like(SIGMAS), rtol=1e-14)
    np.testing.assert_allclose(edm_lambda(SIGMAS, sd) * c_out**2, torch.ones_like(SIGMAS), rtol=1e-14)
    g = torch.Generator().manual_seed(0)
    x, F = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    one = torch.ones(5, dtype=torch.float64)
    _, x0 = diffusion.to_eps_x0(F, x, one, 1e-9 * one, "edm", sd)  # D(x; sigma -> 0) = x
    np.testing.assert_allclose(x0, x, atol=1e-8)
    _, x0 = diffusion.to_eps_x0(F, x, one, 1e9 * one, "edm", sd)  # D(x; sigma -> inf) = sd F
    np.testing.assert_allclose(x0, sd * F, atol=1e-8)
    # D = c_skip x + c_out F, and the target is what F must be for D = x0
    for s in SIGMAS.tolist():
        cs, co, _ = diffusion.edm_precond(s, sd)
        eps, x0 = diffusion.to_eps_x0(F, x, one, s * one, "edm", sd)
        np.testing.assert_allclose(x0, cs * x + co * F, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(eps, (x - x0) / s, rtol=1e-9, atol=1e-9)
        target = diffusion.from_eps_x0(eps, x0, one, s * one, "edm", sd)
        np.testing.assert_allclose(target, (x0 - cs * (x0 + s * eps)) / co, rtol=1e-6, atol=1e-9)


def test_edm_with_sigma_data_1_is_minus_v_prediction():
    """With sd = 1 on a VE process, F's target and input are those of v-prediction up to the sign:
    F = -v and c_in x = x / sqrt(1 + sigma^2)."""
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(8, 2, generator=g, dtype=torch.float64)
    a, s = torch.ones(8, dtype=torch.float64), SIGMAS
    f = diffusion.from_eps_x0(eps, x0, a, s, "edm", 1.0)
    np.testing.assert_allclose(f, -diffusion.from_eps_x0(eps, x0, a, s, "v"), rtol=1e-12, atol=1e-14)
    x = x0 + s[:, None] * eps
    np.testing.assert_allclose(diffusion.net_input(x, a, s, "edm", 1.0), x / torch.sqrt(1 + s[:, None] ** 2))
    assert diffusion.net_input(x, a, s, "v") is x  # other parameterisations: the same tensor


@pytest.mark.parametrize("sd", [0.5, 1.3])
def test_network_input_and_target_have_unit_variance(sd):
    """EDM section 5: for data of std sd, c_in x and the target (x0 - c_skip x)/c_out have unit
    variance at every noise level (Gaussian data, 200,000 draws)."""
    process = make_process("edm", sigma_data=sd)
    g = torch.Generator().manual_seed(2)
    n = 200_000
    for s in SIGMAS.tolist():
        x0 = sd * torch.randn(n, generator=g, dtype=torch.float64)
        eps = torch.randn(n, generator=g, dtype=torch.float64)
        t = torch.full((n,), s, dtype=torch.float64)
        obj = Objective(process, "edm")
        x_t, c_noise, target, weight = obj.inputs(x0[:, None], t, eps[:, None])
        assert float(target.var()) == pytest.approx(1.0, rel=0.012), s
        assert float(obj.net_input(x_t, t).var()) == pytest.approx(1.0, rel=0.012), s
        assert torch.equal(weight, torch.ones_like(weight))  # lambda c_out^2 = 1
        np.testing.assert_allclose(c_noise[:1].double(), [math.log(s) / 4], rtol=1e-6)


def test_loss_is_lambda_times_the_denoiser_error():
    """The per-sample loss of an output F is EDM's lambda(sigma) |D - x0|^2 (Table 1), with D the
    x0 that the Denoiser / x0_estimate derive from F."""
    process = make_process("edm", sigma_data=0.7)
    g = torch.Generator().manual_seed(3)
    x0 = torch.randn(500, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(500, 4, generator=g, dtype=torch.float64)
    t = process.training_times(500, g)
    obj = Objective(process, "edm")
    x_t, _, target, weight = obj.inputs(x0, t, eps)
    out = target + 0.3 * torch.randn(target.shape, generator=g, dtype=torch.float64)
    d = obj.x0_estimate(out, x_t, t)
    expected = edm_lambda(t, 0.7) * (d - x0).square().mean(1)
    np.testing.assert_allclose(obj.per_sample(out, target, weight).double(), expected, rtol=1e-5)
    # L1: the square root of the weight, as for the other parameterisations
    assert torch.equal(loss_weight(process, t, "edm", "l1"), torch.ones_like(t))


# ------------------------------------------------------------------------------------------
# the process


def test_lognormal_training_times():
    """ln sigma ~ N(P_mean, P_std^2) (Table 1 "Noise distribution"): moments of 200,000 draws."""
    for p_mean, p_std in ((-1.2, 1.2), (0.4, 0.5)):
        p = make_process("edm", p_mean=p_mean, p_std=p_std)
        t = p.training_times(200_000, torch.Generator().manual_seed(4))
        assert t.dtype == torch.float64 and (t > 0).all()
        ln = torch.log(t)
        se = p_std / math.sqrt(len(t))
        assert abs(float(ln.mean()) - p_mean) < 5 * se
        assert float(ln.std()) == pytest.approx(p_std, rel=0.01)
        z = (ln - ln.mean()) / ln.std()
        assert abs(float((z**3).mean())) < 0.03 and float((z**4).mean()) == pytest.approx(3.0, abs=0.08)
        assert torch.equal(t, p.training_times(200_000, torch.Generator().manual_seed(4)))  # the generator's


def test_process_is_sigma_of_t_equals_t():
    p = EDMProcess()
    assert (p.t_min, p.t_max, p.prior_std(), p.sigma_data) == (0.002, 80.0, 80.0, 0.5)
    t = SIGMAS
    assert torch.equal(p.sigma(t), t) and torch.equal(p.alpha(t), torch.ones_like(t))
    np.testing.assert_allclose(p.c_noise(t), torch.log(t) / 4)
    # karras spacing on this process is EDM's eq. 5 with sigma_max 80, sigma_min 0.002, rho 7
    k = S.make_times(p, 18, "karras")[:-1]
    i = torch.arange(18, dtype=torch.float64)
    eq5 = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(k, eq5, rtol=1e-12)
    # samplers whose own grid is uniform in t get karras here (uniform in sigma would waste the steps)
    assert S.plan(p, "ddim").spacing == S.plan(p, "ddpm").spacing == S.plan(p, "pc").spacing == "karras"
    assert S.plan(p, "ode").spacing == "logsnr" and S.plan(p, "ddim", spacing="uniform").spacing == "uniform"
    assert S.plan(make_process("ve"), "ddim").spacing == "uniform"  # the other processes as before


# ------------------------------------------------------------------------------------------
# the exact mixture: F of the exact denoiser, its loss, and sampling it


def exact_F(m: ExactGMM):
    """The network F of the exact denoiser, called like a trained one: F(c_in x; c_noise) with
    sigma = exp(4 c_noise) and x = (c_in x) / c_in, F = (x0(x, sigma) - c_skip x) / c_out."""
    sd = m.process.sigma_data

    def net(x_in, c_noise):
        s = torch.exp(4 * c_noise.double())[:, None]
        c_skip, c_out, c_in = diffusion.edm_precond(s, sd)
        x = x_in / c_in
        return (m.x0(x, s[:, 0]) - c_skip * x) / c_out

    return net


def test_exact_denoiser_has_the_smallest_edm_loss(mixture):
    """E[target | x_t] = F*(x_t), so at the exact F the loss is the irreducible minimum: a
    perturbation g raises it by E g^2 (up to a mean-zero cross term)."""
    process = make_process("edm")
    m = ExactGMM(mixture, process)
    F = exact_F(m)
    g = torch.Generator().manual_seed(5)
    n = 40_000
    x0 = torch.from_numpy(mixture.sample(n, np.random.default_rng(5))[0]).double()
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = process.training_times(n, g)
    obj = Objective(process, "edm")
    x_t, c_noise, target, weight = obj.inputs(x0, t, eps)
    best = obj.per_sample(F(obj.net_input(x_t, t), c_noise.double()), target, weight).double()
    assert float(best.mean()) < 0.9 * float(obj.per_sample(torch.zeros_like(target), target, weight).mean())
    for scale in (0.5, 1.0):  # the cross term grows as the scale, the gap as its square
        bump = scale * torch.tanh(x_t + c_noise[:, None].double())
        worse = obj.per_sample(F(obj.net_input(x_t, t), c_noise.double()) + bump, target, weight).double()
        gap = float(worse.mean() - best.mean())
        assert gap > 0 and gap == pytest.approx(float(bump.square().mean()), rel=0.1), scale


def test_denoiser_applies_c_in_and_c_noise(mixture):
    """The Denoiser calls F on c_in x with c_noise = ln(sigma)/4 and turns F into the exact x0 and eps."""
    m = ExactGMM(mixture, make_process("edm"))
    den = diffusion.Denoiser(exact_F(m), m.process, "edm")
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(6), dtype=torch.float64) * 3
    for s in (0.01, 0.7, 25.0):
        pred = den(x, s)
        np.testing.assert_allclose(pred.x0, m.x0(x, s), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(pred.eps, m.eps(x, s), rtol=1e-4, atol=1e-4)
    with pytest.raises(Exception, match="needs --sde edm"):
        diffusion.Denoiser(exact_F(m), make_process("vp"), "edm")


@pytest.mark.parametrize("sampler, kw", [("ode", {"solver": "heun"}), ("edm", {})])
def test_exact_mixture_through_the_edm_process(mixture, sampler, kw):
    """Sampling the exact mixture on the edm process (karras grid, sigma 80 -> 0.002) reproduces it,
    and better with more steps; exact samples score sliced W1 about 0.025."""
    m = ExactGMM(mixture, make_process("edm"))
    x, info = generate(m, sampler, n=N, steps=40, batch=N, seed=0, spacing="karras", **kw)
    q = mixture_quality(x, mixture)
    assert q["swd"] < 0.06 and q["weight_error"] < 0.04 and q["cov_error"] < 0.25, q
    assert info["nfe"] == 79
    y, _ = generate(m, sampler, n=N, steps=6, batch=N, seed=0, spacing="karras", **kw)
    assert mixture_quality(y, mixture)["swd"] > 1.5 * q["swd"]


@pytest.mark.parametrize("sampler, steps", [("ode", 20), ("edm", 64), ("dpm++2m-sde", 40), ("restart", 18)])
def test_every_sampler_through_the_edm_parameterisation(mixture, sampler, steps):
    """A network of the edm parameterisation (here the exact F) sampled through the one core: the
    samplers reproduce the mixture."""
    m = ExactGMM(mixture, make_process("edm"))

    class FModel:  # a checkpoint-like model whose network outputs F
        process, prediction = m.process, "edm"
        normalization, data_kind, data_shape, dtype = m.normalization, "points", (2,), torch.float64

        def denoiser(self, clip=None):
            return diffusion.Denoiser(exact_F(m), m.process, "edm")

    x, _ = generate(FModel(), sampler, n=N, steps=steps, batch=N, seed=1)
    q = mixture_quality(x, mixture)
    assert q["swd"] < 0.06 and q["weight_error"] < 0.05, q


# ------------------------------------------------------------------------------------------
# the command line


def test_cli_train_sample_resume(tmp_path):
    """make-data, train --sde edm (options recorded in the self-describing checkpoint), sample with
    several samplers, and a resumed run bit for bit equal to an uninterrupted one."""
    d = tmp_path
    assert run_cli("make-data", "gmm", "--n", 256, "-o", d / "g.npy").returncode == 0
    common = ["--sde", "edm", "--p-mean", "-1.0", "--sigma-data", "1.0", "--batch", 16, "--base", 16,
              "--blocks", 1, "--log-every", 1, "-q"]  # fmt: skip
    r = run_cli("train", d / "g.npy", *common, "--steps", 6, "-o", d / "full")
    assert r.returncode == 0, r.stderr.decode()
    meta = ckpt.read_meta(d / "full")
    assert meta["prediction"] == "edm"
    assert meta["process"] == {"kind": "edm", "sigma_min": 0.002, "sigma_max": 80.0, "p_mean": -1.0, "p_std": 1.2,
                               "sigma_data": 1.0}  # fmt: skip
    model = ckpt.load_model(d / "full")
    assert model.process.sigma_data == 1.0 and model.process.p_mean == -1.0
    for sampler, extra, nfe in (("ode", [], 20), ("edm", ["--steps", 5], 9), ("ddim", ["--steps", 4], 4),
                                ("euler-a", ["--steps", 4], 4), ("restart", ["--steps", 4], 15)):  # fmt: skip
        r = run_cli("sample", d / "full", "--sampler", sampler, *extra, "-n", 8, "-o", d / f"{sampler}.npy", "--json")
        assert r.returncode == 0, (sampler, r.stderr.decode())
        info = json.loads(r.stdout)
        assert info["nfe"] == nfe and np.isfinite(np.load(d / f"{sampler}.npy")).all(), sampler
        assert info["process"].startswith("edm") and info["spacing"] == ("logsnr" if sampler == "ode" else "karras")
    r = run_cli("train", d / "g.npy", *common, "--steps", 3, "-o", d / "part")
    assert r.returncode == 0, r.stderr.decode()
    r = run_cli("train", "--resume", d / "part", "--steps", 6, "-q")
    assert r.returncode == 0, r.stderr.decode()
    a, b = ckpt.load_state(d / "full"), ckpt.load_state(d / "part")
    for part in ("model", "ema", "optimizer"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)


def test_cli_noise_and_exact_mixture_on_edm(tmp_path):
    GaussianMixture.random(3, 2, np.random.default_rng(0)).save(tmp_path / "mix.npz")
    r = run_cli("sample", tmp_path / "mix.npz", "--process", "edm", "--sampler", "edm", "--steps", 24, "-n", 500,
                "-o", tmp_path / "s.npy", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr.decode()
    info = json.loads(r.stdout)
    assert info["nfe"] == 47 and info["quality"]["swd"] < 3 * info["quality"]["swd_floor"]  # 500 points
    np.save(tmp_path / "x.npy", np.zeros((4, 2), np.float32))
    r = run_cli("noise", tmp_path / "x.npy", "--sde", "edm", "--t", "0,2,80", "-o", tmp_path / "n.npy", "--seed", 1)
    assert r.returncode == 0, r.stderr.decode()
    out = np.load(tmp_path / "n.npy")  # x_t = x0 + sigma eps with one eps per point: columns scale by sigma
    assert out.shape == (4, 3, 2) and np.all(out[:, 0] == 0)
    np.testing.assert_allclose(out[:, 2], 40 * out[:, 1], rtol=1e-5)


def test_demo_edm_config_differs_from_the_demo_in_the_objective_only():
    """examples/triangles/edm.yaml (`make demo-edm`) is demo.yaml with EDM's process and
    parameterisation: the same network, optimiser, batch, learning rate schedule and EMA."""
    from pathlib import Path

    from ddpmctl.train.config import read_config_file, resolve_config

    here = Path(__file__).resolve().parent.parent / "examples" / "triangles"
    demo, edm = resolve_config(file=here / "demo.yaml"), resolve_config(file=here / "edm.yaml")
    assert (edm.sde, edm.prediction, edm.min_snr) == ("edm", "edm", None)
    assert edm.make_process().to_dict() == EDMProcess().to_dict()  # the paper's values
    objective = {"sde", "schedule", "prediction", "min_snr", "p_mean", "p_std", "sigma_data"}
    differ = {k for k in demo.to_dict() if getattr(demo, k) != getattr(edm, k)}
    assert differ <= objective and {"sde", "prediction"} <= differ, differ
    assert set(read_config_file(here / "edm.yaml")) - objective <= set(read_config_file(here / "demo.yaml"))
