"""Restoration methods (ddpmctl.restore) and `ddpmctl restore`.

The methods are checked against an exact prior: a single Gaussian on 1 x 4 x 4 "images" (the
exact-mixture model of ddpmctl.exact with one component), for which the posterior of a linear
Gaussian problem y = A x + n is closed form:
  E[x | y] = mu + S A^T (A S A^T + sigma^2 I)^+ (y - A mu),  Cov = S - S A^T (A S A^T + sigma^2 I)^+ A S.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddpmctl.diffusion import IMAGE_NORMALIZATION, Denoiser
from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM
from ddpmctl.gmm import GaussianMixture
from ddpmctl.operators import degrade, make_operator
from ddpmctl.restore import (
    RestoreOptions,
    check_method,
    plan_restore,
    repaint_path,
    restoration_seed,
    restore,
    sdedit_start,
)
from ddpmctl.schedules import make_process

SHAPE = (1, 4, 4)
_r, _c = np.divmod(np.arange(16), 4)
SIGMA = 0.2 * np.exp(-((_r[:, None] - _r[None]) ** 2 + (_c[:, None] - _c[None]) ** 2) / 8.0) + 0.005 * np.eye(16)
MU = np.full(16, 0.2)


class GaussianImages:
    """The exact Gaussian prior N(MU, SIGMA) in model space as a 1x4x4 image model (data = (x + 1) / 2)."""

    data_kind = "images"
    data_shape = SHAPE
    normalization = IMAGE_NORMALIZATION
    dtype = torch.float64

    def __init__(self, process):
        self.process = process
        self.exact = ExactGMM(GaussianMixture(np.ones(1), MU[None], SIGMA[None]), process)

    def denoiser(self, clip=None):
        ex, bounds = self.exact, (-1.0, 1.0) if clip else None  # clip: the data range [-1, 1] of model space

        def net(x, t):
            return ex(x.reshape(x.shape[0], 16), t).reshape(x.shape)

        return Denoiser(net, self.process, "eps", bounds, "t")


@pytest.fixture(scope="module")
def model():
    return GaussianImages(make_process("vp"))


def truth(n, seed):
    x_m = np.random.default_rng(seed).multivariate_normal(MU, SIGMA, size=n)
    return x_m, ((x_m + 1) / 2).reshape((n,) + SHAPE)


def posterior(op, y_file, sigma):
    """Closed-form posterior mean and covariance (model space) of one observation."""
    A = op.A(torch.eye(16, dtype=torch.float64).reshape((16,) + SHAPE)).reshape(16, -1).T.numpy()
    y = (
        op.to_model_observation(op.decode(torch.from_numpy(np.asarray(y_file, np.float64))), 2.0, -1.0)
        .reshape(-1)
        .numpy()
    )
    rows = np.abs(A).sum(1) > 0  # a mask's unobserved rows carry nothing
    A, y = A[rows], y[rows]
    gain = SIGMA @ A.T @ np.linalg.pinv(A @ SIGMA @ A.T + (2 * sigma) ** 2 * np.eye(len(y)))
    return MU + gain @ (y - A @ MU), SIGMA - gain @ A @ SIGMA


def observation_model_space(op, y_file):
    shown = op.display(op.decode(torch.from_numpy(np.asarray(y_file, np.float64)))).numpy()
    return shown.reshape(len(shown), -1) * 2 - 1


TASKS = {
    "inpaint": (dict(box=(0, 0, 2, 4)), 0.0),
    "denoise": ({}, 0.2),
    "sr": (dict(scale=2), 0.0),
    "deblur": (dict(kernel_sigma=1.0, kernel_size=3), 0.02),
}
METHOD_OPTS = {
    "ddnm": dict(steps=50),
    "repaint": dict(steps=30, jump_length=5, jump_n=3),
    "dps": dict(steps=100, zeta=0.5),
    "sdedit": dict(steps=200),
}


# ------------------------------------------------------------------------------------------
# exactness of the data-consistency steps


def test_noise_free_inpainting_keeps_known_pixels(model):
    _, x = truth(8, 0)
    for kw in (dict(box=(1, 1, 2, 2)), dict(keep=0.5, mask_seed=3)):
        op = make_operator("inpaint", SHAPE, 8, **kw)
        y = degrade(x, op, 0.0)
        m = op.mask.expand(x.shape).numpy() > 0
        for method in ("ddnm", "repaint"):
            out, info = restore(model, y, op, 0.0, method, **METHOD_OPTS[method])
            assert np.abs(out[m] - x[m]).max() < 1e-6, method
            assert np.abs(out[~m] - x[~m]).max() > 1e-3  # the rest is filled in, not copied


@pytest.mark.parametrize("task", ["sr", "deblur"])
def test_ddnm_output_satisfies_a_x_equals_y(model, task):
    _, x = truth(4, 1)
    op = make_operator(task, SHAPE, 4, **TASKS[task][0])
    y = degrade(x, op, 0.0)
    out, _ = restore(model, y, op, 0.0, "ddnm", steps=20, clip=False)
    assert np.abs(op.A(torch.from_numpy(out).double()).numpy() - y).max() < 1e-5
    if task == "sr":  # not simply the truth: the null space comes from the prior (a 3x3 blur of 4x4 is invertible)
        assert np.abs(out - x).max() > 1e-3


# ------------------------------------------------------------------------------------------
# against the closed-form posterior


def test_sdedit_samples_the_exact_posterior(model):
    """y = x + sigma n is the forward process at t* (alpha^2/sigma^2 = 1/sigma_y^2), so SDEdit
    with an exact model draws from p(x | y): the mean and spread of 256 draws match the closed form."""
    n, sigma = 256, 0.2
    _, x = truth(1, 2)
    op = make_operator("denoise", SHAPE, n)
    y = np.repeat(degrade(x, op, sigma, seed=1), n, 0)
    mean, cov = posterior(op, y[:1], sigma)
    out, info = restore(model, y, op, sigma, "sdedit", steps=300, clip=False)
    samples = out.reshape(n, -1) * 2 - 1
    t_star = sdedit_start(model.process, 2 * sigma)
    a, s = float(model.process.alpha(t_star)), float(model.process.sigma(t_star))
    assert a**2 / s**2 == pytest.approx(1 / (2 * sigma) ** 2, rel=1e-6)
    assert info["t_start"] == pytest.approx(t_star) and info["nfe"] < 300
    mc = np.sqrt(np.trace(cov) / n)  # Monte-Carlo error of the sample mean
    assert np.linalg.norm(samples.mean(0) - mean) < 4 * mc
    assert 0.8 < np.trace(np.cov(samples.T)) / np.trace(cov) < 1.25


@pytest.mark.parametrize(
    "task,method",
    [("denoise", "ddnm"), ("sr", "ddnm"), ("sr", "repaint"), ("sr", "dps"), ("deblur", "ddnm"), ("deblur", "dps")],
)
def test_restorations_average_near_the_posterior_mean(model, task, method):
    """The mean of 64 restorations of one y is much closer to E[x | y] than the observation is."""
    n = 64
    kw, sigma = TASKS[task]
    _, x = truth(1, 3)
    op = make_operator(task, SHAPE, n, **kw)
    y = np.repeat(degrade(x, make_operator(task, SHAPE, 1, **kw), sigma, seed=1), n, 0)
    mean, _ = posterior(op, y[:1], sigma)
    out, _ = restore(model, y, op, sigma, method, clip=False, **METHOD_OPTS[method])
    est = (out.reshape(n, -1) * 2 - 1).mean(0)
    obs = observation_model_space(op, y[:1])[0]
    assert np.linalg.norm(est - mean) < 0.5 * np.linalg.norm(obs - mean)


@pytest.mark.parametrize("task", list(TASKS))
def test_restoration_error_below_observation_error(model, task):
    """Over 48 images drawn from the prior, every method that applies has a lower mean squared
    error than the observation (inpainting: the hole filled with grey)."""
    op, y, sigma, check = error_bracket(task)
    methods = {
        "inpaint": ["ddnm", "repaint", "dps"],
        "denoise": ["ddnm", "dps", "sdedit"],
        "sr": ["ddnm", "repaint", "dps"],
        "deblur": ["ddnm", "dps"],
    }[task]
    for method in methods:
        out, _ = restore(model, y, op, sigma, method, clip=False, **METHOD_OPTS[method])
        check(method, out)


def error_bracket(task: str, n: int = 48):
    """(op, y, sigma, check) for ``n`` images drawn from the prior: ``check(name, out)`` asserts that
    the restoration's mean squared error (model space) lies between the exact posterior mean's and
    the observation's."""
    kw, sigma = TASKS[task]
    x_m, x = truth(n, 4)
    op = make_operator(task, SHAPE, n, **kw)
    y = degrade(x, op, sigma, seed=2)
    obs_mse = np.mean((observation_model_space(op, y) - x_m) ** 2)
    post_mse = np.mean([(posterior(op, y[i : i + 1], sigma)[0] - x_m[i]) ** 2 for i in range(n)])

    def check(name, out):
        mse = np.mean((out.reshape(n, -1) * 2 - 1 - x_m) ** 2)
        assert post_mse < mse < obs_mse, (name, post_mse, mse, obs_mse)

    return op, y, sigma, check


def test_results_do_not_depend_on_batch(model):
    _, x = truth(5, 5)
    op = make_operator("inpaint", SHAPE, 5, keep=0.5)
    y = degrade(x, op, 0.05)
    for method in ("ddnm", "dps"):
        a, _ = restore(model, y, op, 0.05, method, steps=10, seed=7)
        b, _ = restore(model, y, op, 0.05, method, steps=10, seed=7, batch=2)
        c, _ = restore(model, y, op, 0.05, method, steps=10, seed=8, batch=2)
        assert np.allclose(a, b, atol=1e-6) and not np.allclose(a, c, atol=1e-3)


# ------------------------------------------------------------------------------------------
# --samples K: the mean of K restorations (Monte-Carlo posterior mean) and their spread


@pytest.mark.parametrize("task,method", [("denoise", "sdedit"), ("inpaint", "ddnm")])
def test_sample_mean_approaches_the_posterior_mean(model, task, method):
    """The mean of K restorations estimates E[x | y]: with SDEdit (an exact posterior sampler here)
    its error to the closed form shrinks like 1/sqrt(K); with DDNM on a half-image hole it moves
    towards E[x | y] too. Either way its squared error to the truth is well below one sample's
    (about half in expectation; 32 observations keep the comparison steady)."""
    n = 32
    kw, sigma = TASKS[task]
    x_m, x = truth(n, 6)
    op = make_operator(task, SHAPE, n, **kw)
    y = degrade(x, op, sigma, seed=3)
    post = [posterior(op, y[i : i + 1], sigma) for i in range(n)]
    mean = np.stack([p[0] for p in post])
    spread = np.sqrt(np.mean([np.trace(p[1]) for p in post]))  # RMS distance of one posterior draw to E[x|y]
    err, mse = {}, {}
    for k in (1, 64):
        out, info = restore(model, y, op, sigma, method, clip=False, samples=k, seed=1, **METHOD_OPTS[method])
        est = out.reshape(n, -1) * 2 - 1
        assert info["samples"] == k and info["n"] == n
        err[k] = np.sqrt(np.mean(np.sum((est - mean) ** 2, 1)))
        mse[k] = np.mean((est - x_m) ** 2)
    post_mse = np.mean((mean - x_m) ** 2)
    if method == "sdedit":  # exact: err_K ~ spread / sqrt(K)
        assert 0.6 * spread < err[1] < 1.5 * spread, (err, spread)
        assert err[64] < 1.5 * spread / 8, (err, spread)
        assert mse[64] < 1.1 * post_mse, (mse, post_mse)
    else:  # DDNM is no exact posterior sampler (too spread for a large hole), its mean still moves towards E[x|y]
        assert err[64] < 0.75 * err[1], err
    assert mse[64] < 0.85 * mse[1], (mse, post_mse)


def test_sample_mean_keeps_known_pixels(model):
    """Noise-free DDNM restorations all satisfy A x = y, so their mean keeps the known pixels
    exactly and their spread there is 0 (to rounding)."""
    _, x = truth(4, 7)
    for kw in (dict(box=(1, 1, 2, 2)), dict(keep=0.5, mask_seed=3)):
        op = make_operator("inpaint", SHAPE, 4, **kw)
        y = degrade(x, op, 0.0)
        m = op.mask.expand(x.shape).numpy() > 0
        out, std, info = restore(model, y, op, 0.0, "ddnm", steps=20, samples=6, batch=5, return_std=True, clip=False)
        assert np.abs(out[m] - x[m]).max() < 1e-6 and info["samples"] == 6
        assert std.shape == x.shape and std.dtype == np.float32
        assert std[m].max() < 1e-6 and std[~m].min() > 1e-3


def test_sample_mean_does_not_depend_on_batch(model):
    """Restoration j of observation i has its own seed, so the mean and spread are the same for
    any --batch (chunks that split an observation's K restorations included), and per-image masks
    follow their rows."""
    _, x = truth(3, 5)
    op = make_operator("inpaint", SHAPE, 3, keep=0.5)
    y = degrade(x, op, 0.05)
    for method in ("ddnm", "dps"):
        a, sa, _ = restore(model, y, op, 0.05, method, steps=10, seed=7, samples=3, batch=2, return_std=True)
        b, sb, _ = restore(model, y, op, 0.05, method, steps=10, seed=7, samples=3, batch=7, return_std=True)
        c, _ = restore(model, y, op, 0.05, method, steps=10, seed=8, samples=3, batch=7)
        assert np.allclose(a, b, atol=1e-6) and np.allclose(sa, sb, atol=1e-6), method
        assert not np.allclose(a, c, atol=1e-3)
    seeds = {restoration_seed(7, i, j) for i in range(50) for j in range(50)}
    assert len(seeds) == 2500


def test_one_sample_is_the_plain_run(model):
    """--samples 1 is the single-restoration run (sample i seeded from (seed, i) as in
    sampling.NoiseStream, built here from the method function directly); with K = 2 the first
    restoration is that run, so mean and std follow from it: s1 = 2 mean - s0, std = |s1 - s0| / sqrt 2."""
    from ddpmctl.restore import Observation, ddnm
    from ddpmctl.sampling import NoiseStream

    n, sigma = 5, 0.05
    _, x = truth(n, 8)
    op = make_operator("deblur", SHAPE, n, kernel_sigma=1.0, kernel_size=3)
    y = degrade(x, op, sigma)
    one, info = restore(model, y, op, sigma, "ddnm", steps=12, seed=4, batch=3, samples=1)
    default, _ = restore(model, y, op, sigma, "ddnm", steps=12, seed=4, batch=3)
    assert info["samples"] == 1 and np.array_equal(one, default)

    process = model.process
    times = plan_restore(model, op, sigma, "ddnm", 12, n).times
    stream = NoiseStream.for_samples(4, range(n), SHAPE, dtype=torch.float64)
    y_m = op.to_model_observation(op.decode(torch.from_numpy(y).double()), 2.0, -1.0)
    with torch.no_grad():
        x = float(process.prior_std()) * stream()
        ref = ddnm(model.denoiser(), x, times, stream, obs=Observation(op, y_m, 2 * sigma), eta=0.85)
    ref = np.clip(((ref + 1) / 2).numpy(), 0, 1)
    assert np.abs(one - ref).max() < 1e-6

    two, std, _ = restore(model, y, op, sigma, "ddnm", steps=12, seed=4, samples=2, return_std=True)
    second = 2 * two.astype(np.float64) - one
    assert np.abs(second - one).max() > 1e-3  # a different draw
    assert np.allclose(std, np.abs(second - one) / np.sqrt(2), atol=1e-5)


# ------------------------------------------------------------------------------------------
# schedules and applicability


def test_repaint_schedule_counts():
    # RePaint's paper setting: 250 steps, jump length 10, 10 passes -> 2410 network calls
    path = repaint_path(250, 10, 10)
    down = sum(1 for a, b in zip(path[:-1], path[1:]) if b == a + 1)
    jumps = [a - b for a, b in zip(path[:-1], path[1:]) if b < a]
    assert path[0] == 0 and path[-1] == 250 and down == 2410 and len(jumps) == 216 and set(jumps) == {10}
    assert repaint_path(7, 0, 10) == list(range(8))  # no jumps
    model, op = GaussianImages(make_process("vp")), make_operator("inpaint", SHAPE, 1)
    assert plan_restore(model, op, 0.0, "repaint", 250).nfe == 2410
    assert (
        plan_restore(model, op, 0.0, "repaint", 250, options=RestoreOptions(jump_length=5, jump_n=2)).nfe == 250 + 245
    )
    assert plan_restore(model, op, 0.0, "ddnm", 50).nfe == 50


def test_methods_that_do_not_apply():
    inpaint = make_operator("inpaint", SHAPE, 1)
    denoise = make_operator("denoise", SHAPE, 1)
    with pytest.raises(InputError, match="sdedit applies to denoising only"):
        check_method("sdedit", inpaint, 0.1)
    with pytest.raises(InputError, match="needs a noisy observation"):
        check_method("sdedit", denoise, 0.0)
    with pytest.raises(InputError, match="repaint does not apply to denoising"):
        check_method("repaint", denoise, 0.1)
    with pytest.raises(InputError, match="unknown method"):
        check_method("ddrm", denoise, 0.1)


# ------------------------------------------------------------------------------------------
# the command line, end to end on a tiny untrained U-Net


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from ddpmctl.checkpoint import make_meta, save_model
    from ddpmctl.diffusion import IDENTITY_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config, validate_net_config

    d = tmp_path_factory.mktemp("restore")
    torch.manual_seed(0)
    cfg = validate_net_config(
        {**default_net_config("images", (1, 8, 8)), "base": 8, "mults": [1, 2], "groups": 4}, (1, 8, 8)
    )
    process = make_process(None, T=50)
    (d / "ck").mkdir()
    save_model(
        d / "ck" / "model.safetensors",
        build_net(cfg),
        make_meta(cfg, process, "eps", "images", (1, 8, 8), IMAGE_NORMALIZATION),
    )
    pcfg = validate_net_config({**default_net_config("points", (2,)), "hidden": 16, "blocks": 1, "emb_dim": 16}, (2,))
    (d / "pts").mkdir()
    save_model(
        d / "pts" / "model.safetensors",
        build_net(pcfg),
        make_meta(pcfg, process, "eps", "points", (2,), IDENTITY_NORMALIZATION),
    )
    x = np.zeros((2, 1, 8, 8), np.float32)
    x[:, :, 2:6, 1:7] = 1.0  # two bright bars
    np.save(d / "x.npy", x)
    return d


def invoke(*args):
    from typer.testing import CliRunner

    from ddpmctl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_degrade_restore_psnr_subprocess(files, cli):
    d = files
    r = cli("degrade", d / "x.npy", "--task", "inpaint", "--box", "2,2,4,4", "-o", d / "y.npy")
    assert r.returncode == 0, r.stderr
    r = cli(
        "restore",
        d / "ck",
        d / "y.npy",
        "--method",
        "ddnm",
        "--steps",
        "5",
        "--truth",
        d / "x.npy",
        "--json",
        "--quiet",
        "-o",
        d / "out.npy",
    )
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    out = np.load(d / "out.npy")
    assert out.shape == (2, 1, 8, 8) and out.dtype == np.float32 and out.min() >= 0 and out.max() <= 1
    assert info["method"] == "ddnm" and info["nfe"] == 5 and info["task"] == "inpaint"
    q = info["quality"]["restored"]
    x = np.load(d / "x.npy")
    mse = np.mean((out - x) ** 2, axis=(1, 2, 3))
    assert q["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / mse)), abs=1e-4) and -1 <= q["ssim"] <= 1
    known = np.ones((8, 8), bool)
    known[2:6, 2:6] = False
    assert np.abs(out[:, 0][:, known] - x[:, 0][:, known]).max() < 1e-6


def test_cli_every_method_and_task_runs(files):
    d = files
    for task_args, methods in [
        (["--task", "sr", "--scale", "2", "--noise", "0.05"], ["ddnm", "dps", "repaint"]),
        (["--task", "deblur", "--kernel-sigma", "1", "--kernel-size", "3"], ["ddnm"]),
        (["--task", "denoise", "--noise", "0.1"], ["sdedit"]),
    ]:
        r = invoke("degrade", d / "x.npy", *task_args, "-o", d / "o.npy")
        assert r.exit_code == 0, r.stderr
        for method in methods:
            r = invoke(
                "restore",
                d / "ck",
                d / "o.npy",
                "--method",
                method,
                "--steps",
                "4",
                "--truth",
                d / "x.npy",
                "-o",
                d / "r.png",
            )
            assert r.exit_code == 0, (method, r.stderr)
            assert "PSNR" in r.stdout and "SSIM" in r.stdout and (d / "r.png").exists()
            from PIL import Image

            with Image.open(d / "r.png") as im:  # rows observation | restored | truth of 2 images
                assert im.height > im.width
    r = invoke(
        "restore",
        d / "ck",
        d / "o.npy",
        "--method",
        "sdedit",
        "--steps",
        "4",
        "--noise",
        "0.3",
        "--json",
        "-o",
        d / "r.npy",
    )
    assert r.exit_code == 0 and json.loads(r.stdout)["noise"] == 0.3  # flags override the sidecar


def test_cli_restore_posterior_mean(files):
    """--samples K --std through the CLI: JSON reports K, PSNR is that of the mean, the known
    pixels are kept, the uncertainty map is written, and --batch 2 vs 7 gives the same files."""
    d = files
    r = invoke("degrade", d / "x.npy", "--task", "inpaint", "--box", "2,2,4,4", "-o", d / "ym.npy")
    assert r.exit_code == 0, r.stderr
    outs = {}
    for b in (2, 7):
        r = invoke(
            "restore",
            d / "ck",
            d / "ym.npy",
            "--method",
            "ddnm",
            "--steps",
            "3",
            "--samples",
            "3",
            "--batch",
            b,
            "--std",
            d / f"s{b}.npy",
            "--truth",
            d / "x.npy",
            "--json",
            "-o",
            d / f"m{b}.npy",
        )
        assert r.exit_code == 0, r.stderr
        info = json.loads(r.stdout)
        outs[b] = np.load(d / f"m{b}.npy"), np.load(d / f"s{b}.npy")
        assert info["samples"] == 3 and info["n"] == 2 and info["std"] == str(d / f"s{b}.npy")
    (m2, s2), (m7, s7) = outs[2], outs[7]
    assert np.allclose(m2, m7, atol=1e-6) and np.allclose(s2, s7, atol=1e-6)
    x = np.load(d / "x.npy")
    mse = np.mean((m2 - x) ** 2, axis=(1, 2, 3))
    assert info["quality"]["restored"]["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / mse)), abs=1e-3)
    known = np.ones((8, 8), bool)
    known[2:6, 2:6] = False
    assert np.abs(m2[:, 0][:, known] - x[:, 0][:, known]).max() < 1e-6 and s2[:, 0][:, known].max() < 1e-6
    r = invoke("restore", d / "ck", d / "ym.npy", "--steps", "3", "--samples", "1", "-o", d / "one.npy")
    r0 = invoke("restore", d / "ck", d / "ym.npy", "--steps", "3", "-o", d / "plain.npy")
    assert r.exit_code == 0 and r0.exit_code == 0
    assert (d / "one.npy").read_bytes() == (d / "plain.npy").read_bytes()


def test_cli_restore_bad_input(files):
    d = files
    invoke("degrade", d / "x.npy", "--task", "inpaint", "-o", d / "yi.npy")
    np.save(d / "bare.npy", np.load(d / "yi.npy"))
    np.save(d / "pts.npy", np.zeros((3, 2), np.float32))
    cases = [
        (["restore", d / "ck", d / "bare.npy"], "no sidecar"),
        (["restore", d / "ck", d / "yi.npy", "--method", "sdedit"], "sdedit applies to denoising only"),
        (["restore", d / "ck", d / "yi.npy", "--truth", d / "pts.npy"], "does not match"),
        (["restore", d / "ck", d / "yi.npy", "--box", "6,6,4,4"], "not inside"),
        (["restore", d / "pts", d / "pts.npy", "--task", "sr", "--scale", "2"], "needs images"),
        (["restore", d / "ck", d / "yi.npy", "--noise", "-1"], "--noise"),
        (["restore", d / "ck", d / "yi.npy", "--samples", "0"], "--samples"),
        (["restore", d / "ck", d / "yi.npy", "--samples", "-3"], "--samples"),
        (["restore", d / "ck", d / "yi.npy", "--std", d / "bad_std.npy"], "--samples >= 2"),
        (["restore", d / "ck", d / "yi.npy", "--samples", "2", "--std", d / "bad_std.png"], "--std"),
    ]
    for args, words in cases:
        out = d / "bad.npy"
        r = invoke(*args, "-o", out)
        assert r.exit_code == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], lines
        assert not out.exists() and not (d / "bad_std.npy").exists() and not (d / "bad_std.png").exists()


# ------------------------------------------------------------------------------------------
# the registry of methods


@pytest.mark.parametrize("method", ["ddnm", "dps", "repaint", "sdedit", "pigdm", "diffpir", "ddnm-travel"])
def test_method_record_nfe_is_the_counted_nfe(method):
    from ddpmctl.restore import METHODS

    travel = method == "ddnm-travel"
    method = "ddnm" if travel else method
    record = METHODS[method]
    task = record.tasks[0]
    params, sigma = TASKS[task]
    _, x = truth(3, 2)
    op = make_operator(task, SHAPE, 3, **params)
    y = degrade(x, op, max(sigma, 0.1))
    model = GaussianImages(make_process("ddpm", T=60))
    calls = []
    inner = model.denoiser
    model.denoiser = lambda clip=None: Denoiser(
        lambda x, t: calls.append(1) or inner().net(x, t), model.process, "eps", None, "t"
    )
    given = dict(jump_length=3, jump_n=2) if method == "repaint" else {}
    given = dict(travel_length=2, travel_interval=3, travel_repeat=2) if travel else given
    job = plan_restore(model, op, max(sigma, 0.1), method, 12, 3, 2, RestoreOptions(**given))
    out, info = restore(model, y, op, max(sigma, 0.1), method, 12, batch=2, **given)
    assert job.nfe > 12 if travel else True
    assert info["nfe"] == job.nfe and len(calls) == 2 * job.nfe  # two batches
    assert job.progress_total == 2 * job.nfe
    assert set(job.options) == set(record.options) and all(info[k] == v for k, v in job.options.items())
    assert record.default_steps(model.process) == min(record.steps, 60)


def test_methods_accept_exactly_their_tasks():
    from ddpmctl.operators import TASKS as ALL_TASKS
    from ddpmctl.restore import METHODS

    for name, record in METHODS.items():
        for task in ALL_TASKS:
            op = make_operator(task, SHAPE, 1, **TASKS[task][0])
            if task in record.tasks:
                check_method(name, op, 0.1)
            else:
                with pytest.raises(InputError, match=f"--method {name} .*use "):
                    check_method(name, op, 0.1)
    assert {t for r in METHODS.values() for t in r.tasks} == set(ALL_TASKS)
