"""encode / sample --from / interpolate, proven on the exact Gaussian-mixture model (no training):
encode then decode returns the input within an error that shrinks with the steps, for every ODE
solver and process; the latents of mixture data are standard normal."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ddpmctl.encode import decode, encode, interpolate, lerp, slerp
from ddpmctl.errors import InputError
from ddpmctl.exact import ExactGMM
from ddpmctl.gmm import GaussianMixture
from ddpmctl.schedules import make_process

MIXTURE = GaussianMixture.random(3, 2, np.random.default_rng(7))
X = MIXTURE.sample(300, np.random.default_rng(1))[0]
PROCESSES = {"vp": dict(sde="vp"), "ve": dict(sde="ve"), "ddpm": dict(sde="ddpm", T=1000), "subvp": dict(sde="subvp")}


def _model(name):
    return ExactGMM(MIXTURE, make_process(**PROCESSES[name]))


def _round_trip(model, steps, solver):
    z, info = encode(model, X, steps=steps, solver=solver)
    back, dinfo = decode(model, z, steps=steps, solver=solver)
    return float(np.abs(back - X).mean()), info, dinfo


# (solver, steps coarse, steps fine, error bound at the fine steps); measured mean |x - decode(encode(x))|
# on VP, 10 -> 40 steps: euler 0.42 -> 0.11, heun 0.12 -> 0.0010, dpm++2m 0.061 -> 0.0008, dpm++3m 0.048 -> 0.0011
# (VE and DDPM alike; docs/encode.md)
ROUND_TRIP = [("euler", 10, 40, 0.2), ("heun", 10, 40, 0.01), ("dpm++2m", 10, 40, 0.01), ("dpm++3m", 10, 40, 0.01)]


@pytest.mark.parametrize("process", ["vp", "ve", "ddpm", "subvp"])
@pytest.mark.parametrize("solver,coarse,fine,bound", ROUND_TRIP, ids=[r[0] for r in ROUND_TRIP])
def test_encode_then_decode_returns_the_input(process, solver, coarse, fine, bound):
    model = _model(process)
    e_coarse, _, _ = _round_trip(model, coarse, solver)
    e_fine, info, dinfo = _round_trip(model, fine, solver)
    assert e_fine < bound
    assert e_fine < 0.7 * e_coarse  # shrinks with the steps
    # the same grid reversed: the ODE intervals plus the denoising step, inverted with 2 NFE
    assert info["times"] == dinfo["times"]


def test_rk45_round_trip_is_at_its_tolerance():
    model = _model("vp")
    err, info, _ = _round_trip(model, 20, "rk45")
    assert err < 1e-4, err  # measured 1.5e-5
    assert info["nfe"] > 20  # adaptive


def test_latents_of_mixture_data_are_standard_normal():
    x = MIXTURE.sample(3000, np.random.default_rng(2))[0]
    for name in ("vp", "ddpm"):
        z, _ = encode(_model(name), x, steps=40, solver="heun")
        se = 1 / np.sqrt(len(z))
        assert np.abs(z.mean(0)).max() < 5 * se + 0.01  # VP keeps alpha(1) = 0.0067 of the data
        cov = np.cov(z.T)
        assert np.abs(cov - np.eye(2)).max() < 5 * np.sqrt(2) * se + 0.02
        # and standard normal beyond two moments: the kurtosis of each coordinate is 3
        kurt = ((z - z.mean(0)) ** 4).mean(0) / z.var(0) ** 2
        assert np.abs(kurt - 3).max() < 0.5


def test_encode_nfe_and_grid():
    model = _model("vp")
    z, info = encode(model, X[:10], steps=20)  # dpm++3m: 19 intervals + 2 to invert the denoising step
    assert info["nfe"] == 21 and info["solver"] == "dpm++3m" and info["spacing"] == "logsnr"
    with pytest.raises(InputError, match="--steps"):
        encode(model, X[:10], steps=1)
    with pytest.raises(InputError, match="does not fit"):
        encode(model, np.zeros((3, 5), np.float32))


def test_decode_refuses_stochastic_samplers_and_bad_latents():
    from ddpmctl.sampling import generate

    model = _model("vp")
    z = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    with pytest.raises(InputError, match="deterministic ode"):
        generate(model, "ddpm", 4, 10, start=z)
    with pytest.raises(InputError, match="do not fit"):
        generate(model, "ode", 4, 10, start=np.zeros((4, 3), np.float32))
    a, _ = generate(model, "ode", 4, 10, start=z, batch=1)
    b, _ = generate(model, "ode", 4, 10, start=z, batch=4, seed=5)
    np.testing.assert_allclose(a, b, atol=1e-6)  # a function of the latents alone


def test_slerp_and_lerp():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    s = slerp(a, b, 7)
    assert s.shape == (3, 7, 5)
    np.testing.assert_allclose(s[:, 0], a, atol=1e-6)
    np.testing.assert_allclose(s[:, -1], b, atol=1e-6)
    # the norm stays near that of the ends (lerp's midpoint shrinks by cos(theta / 2))
    mid = np.linalg.norm(s[:, 3], axis=1)
    ends = 0.5 * (np.linalg.norm(a, axis=1) + np.linalg.norm(b, axis=1))
    assert np.abs(mid / ends - 1).max() < 0.2
    np.testing.assert_allclose(slerp(a, a, 3)[:, 1], a, atol=1e-6)  # theta = 0
    np.testing.assert_allclose(lerp(a, b, 3)[:, 1], (a + b) / 2, atol=1e-6)


def test_interpolate_ends_are_the_inputs():
    model = _model("vp")
    out, info = interpolate(model, X[:4], X[4:8], k=5, steps=40, solver="heun")
    assert out.shape == (4, 5, 2)
    assert np.abs(out[:, 0] - X[:4]).mean() < 0.02 and np.abs(out[:, -1] - X[4:8]).mean() < 0.02
    assert info["nfe"] == info["nfe_encode"] + info["nfe_decode"]
    with pytest.raises(InputError, match="--k"):
        interpolate(model, X[:4], X[4:8], k=1)
    with pytest.raises(InputError, match="as many"):
        interpolate(model, X[:4], X[4:7])


def test_cli_encode_then_sample_from(cli, tmp_path):
    r = cli("make-data", "gmm", "--n", "200", "--components", "3", "-o", tmp_path / "mix.npy")
    assert r.returncode == 0, r.stderr
    r = cli("encode", tmp_path / "mix.npz", tmp_path / "mix.npy", "--steps", "40", "--solver", "heun",
            "-o", tmp_path / "z.npy", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["nfe"] == 80 and info["shape"] == [200, 2]
    r = cli("sample", tmp_path / "mix.npz", "--from", tmp_path / "z.npy", "--steps", "40", "--solver", "heun",
            "-o", tmp_path / "back.npy")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert b"NFE 79" in r.stdout
    x, back = np.load(tmp_path / "mix.npy"), np.load(tmp_path / "back.npy")
    assert np.abs(back - x).mean() < 0.02
    r = cli("sample", tmp_path / "mix.npz", "--from", tmp_path / "z.npy", "--sampler", "sde", "-o", tmp_path / "s.npy")
    assert r.returncode == 2 and "deterministic ode" in r.stderr.decode()


@pytest.fixture(scope="module")
def image_ckpt(tmp_path_factory):
    """An untrained 1x8x8 DDPM U-Net checkpoint (T = 20): the commands' plumbing on images."""
    import torch

    from ddpmctl.checkpoint import make_meta, save_model
    from ddpmctl.diffusion import IMAGE_NORMALIZATION
    from ddpmctl.nets import build_net, default_net_config, validate_net_config

    torch.manual_seed(0)
    shape = (1, 8, 8)
    cfg = validate_net_config({**default_net_config("images", shape), "base": 8, "mults": [1, 2], "groups": 4}, shape)
    d = tmp_path_factory.mktemp("imgckpt")
    meta = make_meta(cfg, make_process("ddpm", "linear", 20), "eps", "images", shape, IMAGE_NORMALIZATION)
    save_model(d / "model.safetensors", build_net(cfg), meta)
    x = np.random.default_rng(0).integers(0, 256, (3, *shape)).astype(np.float32) / 255
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", x[::-1].copy())
    return d


def test_cli_commands_on_an_image_checkpoint(cli, image_ckpt):
    d = image_ckpt
    r = cli("encode", d, d / "x.npy", "--steps", "5", "-o", d / "z.npy", "--json")
    assert r.returncode == 0, r.stderr
    assert np.load(d / "z.npy").shape == (3, 1, 8, 8)
    r = cli("sample", d, "--from", d / "z.npy", "--steps", "5", "-o", d / "back.png")
    assert r.returncode == 0, r.stderr
    for method in ("ode", "vlb"):
        r = cli("nll", d, d / "x.npy", "--method", method, "--rtol", "1e-3", "--atol", "1e-3", "--json")
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        assert np.isfinite(info["bits_per_dim"]) and info["bits_per_dim"] > 0 and "nats_per_dim" not in info
    r = cli("interpolate", d, d / "x.npy", d / "y.npy", "--k", "4", "--steps", "4", "-o", d / "strip.npy")
    assert r.returncode == 0, r.stderr
    assert np.load(d / "strip.npy").shape == (3, 4, 1, 8, 8)
    r = cli("interpolate", d, d / "x.npy", d / "y.npy", "--k", "4", "--space", "data", "-o", d / "strip.png")
    assert r.returncode == 0 and (d / "strip.png").exists(), r.stderr
