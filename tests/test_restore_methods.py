"""The restoration methods added for issue #20 (DDNM's time travel, PiGDM, DiffPIR), the per-task
default method, and the posterior mean of K restorations against its own samples. Exact models
as in test_restore.py: a Gaussian prior on 1 x 4 x 4 images, where posteriors are closed form."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_restore import SHAPE, TASKS, GaussianImages, error_bracket, invoke, truth

import ddpmctl.restore.driver as driver
from ddpmctl.diffusion import Denoiser
from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM
from ddpmctl.gmm import GaussianMixture
from ddpmctl.operators import degrade, make_operator
from ddpmctl.restore import (
    DEFAULT_METHOD,
    METHODS,
    OPTION_TYPES,
    Observation,
    RestoreOptions,
    diffpir_x0,
    down_steps,
    jump_path,
    parse_options,
    pigdm,
    pigdm_r2,
    plan_restore,
    repaint_path,
    restore,
)
from ddpmctl.schedules import make_process

TRAVEL = dict(travel_length=5, travel_interval=5, travel_repeat=2)


@pytest.fixture(scope="module")
def model():
    return GaussianImages(make_process("vp"))


def dense(op) -> np.ndarray:
    """A as a matrix (rows: y entries, columns: the 16 pixels)."""
    return op.A(torch.eye(16, dtype=torch.float64).reshape((16,) + SHAPE)).reshape(16, -1).T.numpy()


# ------------------------------------------------------------------------------------------
# --samples K: the mean of K restorations and its samples (issue #20's "lower PSNR with K = 4")


def test_mean_of_k_restorations_has_at_most_their_average_squared_error(model, monkeypatch):
    """Per image, ||mean_k x_k - x||^2 = mean_k ||x_k - x||^2 - mean_k ||x_k - mean||^2 (exactly), so
    the mean of K restorations never has a larger squared error than their average. The mean
    restore returns is the plain average of the K restorations that the seeds j = 0..K-1 give.
    Mean PSNR over images is another matter: a log of the error, it can favour single samples."""
    n, k = 24, 4
    kw, sigma = TASKS["inpaint"]
    _, x = truth(n, 11)
    op = make_operator("inpaint", SHAPE, n, **kw)
    y = degrade(x, op, sigma)
    mean, std, _ = restore(model, y, op, sigma, "ddnm", steps=20, samples=k, return_std=True, seed=3)
    seed_of = driver.restoration_seed
    singles = []
    for j in range(k):  # restoration j alone: the single-sample run with the seeds of restoration j
        monkeypatch.setattr(driver, "restoration_seed", lambda seed, i, _j=0, j=j: seed_of(seed, i, j))
        singles.append(restore(model, y, op, sigma, "ddnm", steps=20, seed=3)[0].astype(np.float64))
    singles = np.stack(singles)
    assert np.abs(singles.mean(0) - mean).max() < 1e-6
    mse_k = ((singles - x) ** 2).mean(axis=(2, 3, 4))
    mse_mean = ((mean.astype(np.float64) - x) ** 2).mean(axis=(1, 2, 3))
    spread = (std.astype(np.float64) ** 2).mean(axis=(1, 2, 3)) * (k - 1) / k
    assert np.allclose(mse_mean, mse_k.mean(0) - spread, atol=1e-6)
    assert (mse_mean <= mse_k.mean(0) + 1e-9).all() and (spread > 1e-4).all()


# ------------------------------------------------------------------------------------------
# DDNM's time travel


def test_jump_path_counts():
    """RePaint's path is jump_path with length = interval; DDNM's (l, s, r) adds r l steps per point."""
    assert jump_path(250, 10, 10, 9) == repaint_path(250, 10, 10)
    assert jump_path(7, 0, 1, 3) == list(range(8)) == jump_path(7, 2, 2, 0)
    path = jump_path(50, 5, 5, 2)  # jump points 5, 10, ..., 45: 9 points x 2 repeats x 5 steps
    assert down_steps(path) == 50 + 9 * 2 * 5 and path[-1] == 50
    assert down_steps(jump_path(100, 5, 10, 1)) == 100 + 9 * 5
    assert down_steps(jump_path(10, 4, 2, 1)) == 10 + 3 * 4  # points 4, 6, 8: position 2 cannot go back 4
    model, op = GaussianImages(make_process("vp")), make_operator("inpaint", SHAPE, 1)
    assert plan_restore(model, op, 0.0, "ddnm", 50, options=RestoreOptions(**TRAVEL)).nfe == 140


def test_time_travel_keeps_consistency_and_improves_a_large_hole(model):
    """Noise-free, every DDNM step keeps A x0 = y, so travelling keeps the known pixels exactly;
    over 48 images from the prior a half-image hole is filled closer to the truth."""
    n = 48
    kw, sigma = TASKS["inpaint"]
    x_m, x = truth(n, 4)
    op = make_operator("inpaint", SHAPE, n, **kw)
    y = degrade(x, op, sigma, seed=2)
    plain, _ = restore(model, y, op, sigma, "ddnm", 50, clip=False)
    travel, info = restore(model, y, op, sigma, "ddnm", 50, clip=False, **TRAVEL)
    m = op.mask.expand(x.shape).numpy() > 0
    assert np.abs(travel[m] - x[m]).max() < 1e-6 and info["nfe"] == 140 and info["travel_repeat"] == 2
    mse = {k: np.mean((v.reshape(n, -1) * 2 - 1 - x_m) ** 2) for k, v in (("plain", plain), ("travel", travel))}
    assert mse["travel"] < 0.85 * mse["plain"], mse


# ------------------------------------------------------------------------------------------
# PiGDM


@pytest.mark.parametrize("task,sigma", [("sr", 0.0), ("inpaint", 0.0), ("deblur", 0.05), ("denoise", 0.2)])
def test_pigdm_guided_x0_is_the_exact_posterior_mean_under_a_standard_normal_prior(task, sigma):
    """For x0 ~ N(0, I): d x0^/d x_t = alpha/(alpha^2 + sigma^2) I and Cov[x0 | x_t] = r_t^2 I, so
    PiGDM's guided x0 equals E[x0 | x_t, y] = x0^ + r^2 A^T (r^2 A A^T + sigma_y^2 I)^+ (y - A x0^)."""
    process = make_process("vp")
    exact = ExactGMM(GaussianMixture(np.ones(1), np.zeros((1, 16)), np.eye(16)[None]), process)
    denoiser = Denoiser(lambda x, t: exact(x.reshape(x.shape[0], 16), t).reshape(x.shape), process, "eps", None, "t")
    op = make_operator(task, SHAPE, 2, **TASKS[task][0])
    g = torch.Generator().manual_seed(0)
    x0_true = torch.randn((2,) + SHAPE, generator=g, dtype=torch.float64)
    y = op.observe(x0_true, sigma, g)
    t = 0.4
    a, s = float(process.alpha(t)), float(process.sigma(t))
    x_t = a * x0_true + s * torch.randn(x0_true.shape, generator=g, dtype=torch.float64)
    seen = {}
    pigdm(denoiser, x_t, torch.tensor([t, 0.2]), g, lambda info: seen.update(info), obs=Observation(op, y, sigma))
    A, r2 = dense(op), pigdm_r2(a, s)
    assert r2 == pytest.approx(s**2 / (a**2 + s**2))
    for i in range(2):
        prior_mean = a / (a**2 + s**2) * x_t[i].reshape(-1).numpy()
        gain = r2 * A.T @ np.linalg.pinv(r2 * A @ A.T + sigma**2 * np.eye(len(A)))
        want = prior_mean + gain @ (y[i].reshape(-1).numpy() - A @ prior_mean)
        assert np.abs(seen["x0"][i].reshape(-1).numpy() - want).max() < 1e-6


def test_pigdm_is_consistent_without_noise_and_improves_with_steps(model):
    n = 16
    _, x = truth(n, 5)
    op = make_operator("sr", SHAPE, n, scale=2)
    y = degrade(x, op, 0.0)
    out, info = restore(model, y, op, 0.0, "pigdm", 50, clip=False)
    assert np.abs(op.A(torch.from_numpy(out).double()).numpy() - y).max() < 2e-3 and info["nfe"] == 50
    kw, sigma = TASKS["deblur"]
    x_m, x = truth(48, 4)
    op = make_operator("deblur", SHAPE, 48, **kw)
    y = degrade(x, op, sigma, seed=2)
    mse = {k: np.mean((restore(model, y, op, sigma, "pigdm", k, clip=False)[0].reshape(48, -1) * 2 - 1 - x_m) ** 2)
           for k in (5, 50)}  # fmt: skip
    assert mse[50] < 0.7 * mse[5], mse


# ------------------------------------------------------------------------------------------
# DiffPIR


@pytest.mark.parametrize("task", list(TASKS))
def test_diffpir_data_step_solves_the_proximal_problem(task):
    """x = argmin ||y - A x||^2 + rho ||x - x0||^2 solves (A^T A + rho I) x = A^T y + rho x0."""
    op = make_operator(task, SHAPE, 3, **TASKS[task][0])
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn((3,) + SHAPE, generator=g, dtype=torch.float64)
    y = op.observe(torch.randn((3,) + SHAPE, generator=g, dtype=torch.float64), 0.1, g)
    A = dense(op)
    for rho in (0.0, 0.3, 5.0):
        out = diffpir_x0(op, x0, y, rho).reshape(3, -1).numpy()
        for i in range(3):
            lhs = (A.T @ A + rho * np.eye(16)) @ out[i]
            assert np.abs(lhs - A.T @ y[i].reshape(-1).numpy() - rho * x0[i].reshape(-1).numpy()).max() < 1e-9
        if rho == 0:  # the minimum-norm change: DDNM's x0 - A^+ (A x0 - y)
            assert np.allclose(out, (x0 - op.pinv(op.A(x0) - y)).reshape(3, -1).numpy())


def test_diffpir_consistency_and_determinism(model):
    """Noise-free SR: A x ~ y; zeta = 0 draws no noise after the start, so two seeds that share the
    start agree only through it (different seeds differ, the same seed repeats)."""
    _, x = truth(8, 6)
    op = make_operator("sr", SHAPE, 8, scale=2)
    y = degrade(x, op, 0.0)
    out, _ = restore(model, y, op, 0.0, "diffpir", 50, clip=False, lam=7.0, zeta=0.3)
    prior_gap = np.abs(op.A(torch.from_numpy(truth(8, 7)[1]).double()).numpy() - y).max()
    assert np.abs(op.A(torch.from_numpy(out).double()).numpy() - y).max() < 0.02 * prior_gap
    a, _ = restore(model, y, op, 0.0, "diffpir", 20, seed=1, zeta=0.0)
    b, _ = restore(model, y, op, 0.0, "diffpir", 20, seed=1, zeta=0.0, batch=3)
    assert np.array_equal(a, b)


@pytest.mark.parametrize("task", list(TASKS))
def test_new_methods_lie_between_the_posterior_mean_and_the_observation(model, task):
    op, y, sigma, check = error_bracket(task)
    for method, opts in (("pigdm", {}), ("diffpir", {"lam": 7.0, "zeta": 0.3}), ("ddnm", TRAVEL)):
        out, _ = restore(model, y, op, sigma, method, 50, clip=False, **opts)
        check(method, out)


# ------------------------------------------------------------------------------------------
# the registry, defaults and options


def test_every_method_option_has_a_field_and_a_type():
    fields = set(RestoreOptions.__dataclass_fields__)
    for record in METHODS.values():
        assert set(record.options) <= fields & set(OPTION_TYPES), record.name
    assert set(DEFAULT_METHOD) == {"inpaint", "denoise", "sr", "deblur"}
    assert all(task in METHODS[m].tasks for task, m in DEFAULT_METHOD.items())


@pytest.mark.parametrize("task", list(TASKS))
def test_restore_without_a_method_uses_the_tasks_default(model, task):
    kw, sigma = TASKS[task]
    _, x = truth(2, 1)
    op = make_operator(task, SHAPE, 2, **kw)
    y = degrade(x, op, sigma)
    _, info = restore(model, y, op, sigma, steps=4)
    assert info["method"] == DEFAULT_METHOD[task]


def test_options_parse_and_check():
    assert parse_options(["travel-repeat=2", "lam = 3"]) == {"travel_repeat": 2, "lam": 3.0}
    for bad, words in ((["nope=1"], "no method takes"), (["travel_repeat=x"], "int"), (["eta"], "NAME=VALUE")):
        with pytest.raises(InputError, match=words):
            parse_options(bad)
    model, op = GaussianImages(make_process("vp")), make_operator("sr", SHAPE, 1, scale=2)
    for method, opts, words in (
        ("diffpir", dict(zeta=1.5), "zeta"),
        ("diffpir", dict(lam=0.0), "lam"),
        ("pigdm", dict(weight=-1.0), "weight"),
        ("ddnm", dict(travel_interval=0, travel_repeat=1, travel_length=2), "travel_interval"),
    ):
        with pytest.raises(InputError, match=words):
            plan_restore(model, op, 0.0, method, 10, options=RestoreOptions(**opts))


def test_cli_option_flag(tmp_path):
    x = np.zeros((2, 1, 8, 8), np.float32)
    x[:, :, 2:6, 1:7] = 1.0
    np.save(tmp_path / "x.npy", x)
    r = invoke("degrade", tmp_path / "x.npy", "--task", "inpaint", "--box", "2,2,4,4", "-o", tmp_path / "y.npy")
    assert r.exit_code == 0
    from ddpmctl.checkpoint import make_meta, save_model
    from ddpmctl.diffusion import IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config, validate_net_config

    torch.manual_seed(0)
    cfg = validate_net_config(
        {**default_net_config("images", (1, 8, 8)), "base": 8, "mults": [1, 2], "groups": 4}, (1, 8, 8)
    )
    (tmp_path / "ck").mkdir()
    meta = make_meta(cfg, make_process(None, T=50), "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION)
    save_model(tmp_path / "ck" / "model.safetensors", build_net(cfg), meta)
    args = ["restore", tmp_path / "ck", tmp_path / "y.npy", "--method", "ddnm", "--steps", "6", "--json"]
    travel = ["-O", "travel_length=2", "-O", "travel-interval=2", "-O", "travel_repeat=1"]
    r = invoke(*args, *travel, "-o", tmp_path / "o.npy")
    assert r.exit_code == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["nfe"] == 6 + 2 * 2 and info["travel_repeat"] == 1  # jump points 2 and 4


def test_the_tasks_default_brings_its_measured_steps_and_options(model):
    """Without --method the task's DEFAULT_SETTINGS apply (steps capped by a discrete process's T);
    given options still override them."""
    from ddpmctl.restore import DEFAULT_SETTINGS

    for task in TASKS:
        op = make_operator(task, SHAPE, 1, **TASKS[task][0])
        steps, settings = DEFAULT_SETTINGS[task]
        job = plan_restore(model, op, 0.1, None)
        assert job.method.name == DEFAULT_METHOD[task] and len(job.times) - 1 == steps
        assert all(job.options[k] == v for k, v in settings.items())
        small = GaussianImages(make_process("ddpm", T=20))
        assert len(plan_restore(small, op, 0.1, None).times) - 1 == min(steps, 20)
        if "eta" in job.options:
            assert plan_restore(model, op, 0.1, None, options=RestoreOptions(eta=0.25)).options["eta"] == 0.25
