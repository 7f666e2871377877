"""Degradation operators (ddpmctl.operators), image metrics (ddpmctl.metrics) and `ddpmctl degrade`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddpmctl import metrics
from ddpmctl.errors import InputError
from ddpmctl.operators import (
    FILL,
    degrade,
    gaussian_kernel,
    make_operator,
    observation_operator,
)

SHAPE = (2, 16, 12)  # C, H, W (not square, two channels)


def operators(n=3):
    return {
        "denoise": make_operator("denoise", SHAPE, n),
        "box": make_operator("inpaint", SHAPE, n, box=(2, 3, 5, 6)),
        "keep": make_operator("inpaint", SHAPE, n, keep=0.4, mask_seed=1),
        "sr2": make_operator("sr", SHAPE, n, scale=2),
        "sr4": make_operator("sr", SHAPE, n, scale=4),
        "deblur": make_operator("deblur", SHAPE, n, kernel_sigma=1.5),
        "points": make_operator("inpaint", (7,), n, keep=0.5),
    }


def rand(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def dot(a, b):
    return float((a * b).sum())


@pytest.mark.parametrize("name", list(operators()))
def test_adjoint_and_pseudo_inverse(name):
    op = operators()[name]
    x = rand((3,) + op.x_shape, 0)
    y = rand((3,) + op.y_shape, 1)
    ax = op.A(x)
    assert ax.shape == (3,) + op.y_shape and op.At(y).shape == x.shape and op.pinv(y).shape == x.shape
    # <A x, y> = <x, A^T y>
    assert abs(dot(ax, y) - dot(x, op.At(y))) < 1e-10 * (1 + abs(dot(ax, y)))
    # Moore-Penrose: A A^+ A = A, A^+ A A^+ = A^+, A^+ A symmetric
    assert torch.allclose(op.A(op.pinv(ax)), ax, atol=1e-10)
    p = op.pinv(y)
    assert torch.allclose(op.pinv(op.A(p)), p, atol=1e-9)
    u, v = rand(x.shape, 2), rand(x.shape, 3)
    assert abs(dot(op.project(u), v) - dot(u, op.project(v))) < 1e-9
    # the spectral primitives agree with the operator: V diag(s^2) V^T = A^T A, V 1[s>0] V^T = A^+ A
    assert torch.allclose(op.filter(x, lambda s: s**2), op.At(op.A(x)), atol=1e-10)
    assert torch.allclose(op.filter(x, lambda s: (s > 0).to(torch.float64)), op.project(x), atol=1e-10)
    assert torch.allclose(op.filter(x, lambda s: torch.ones_like(s)), x, atol=1e-10)
    assert torch.allclose(op.pinv_filter(y, lambda s: s), op.At(op.A(op.pinv(y))), atol=1e-10)


def test_operators_match_direct_definitions():
    x = rand((2,) + SHAPE, 5)
    # sr: block means, A^+ = nearest upsampling
    sr = make_operator("sr", SHAPE, 2, scale=4)
    blocks = x.reshape(2, 2, 4, 4, 3, 4).mean(dim=(3, 5))
    assert torch.allclose(sr.A(x), blocks)
    assert torch.equal(sr.pinv(blocks), blocks.repeat_interleave(4, -2).repeat_interleave(4, -1))
    # deblur: the FFT blur equals a direct circular convolution with the kernel, up to the removed
    # frequencies (gain < 1e-3)
    from scipy.ndimage import convolve

    op = make_operator("deblur", SHAPE, 2, kernel_sigma=1.0, kernel_size=5)
    k = gaussian_kernel(5, 1.0)
    direct = np.stack([[convolve(x[i, c].numpy(), k, mode="wrap") for c in range(2)] for i in range(2)])
    assert np.abs(op.A(x).numpy() - direct).max() < 1e-3 * np.abs(x.numpy()).max()
    assert np.isclose(k.sum(), 1.0) and k.shape == (5, 5) and np.allclose(k, k.T)
    # a mask multiplies; model-space observation: A(2x - 1) = 2 A x - A 1
    box = make_operator("inpaint", SHAPE, 2, box=(0, 0, 4, 4))
    assert torch.all(box.A(x)[..., :4, :4] == 0) and torch.equal(box.A(x)[..., 4:, :], x[..., 4:, :])
    for op in (box, sr, make_operator("deblur", SHAPE, 2)):
        assert torch.allclose(op.to_model_observation(op.A(x), 2.0, -1.0), op.A(2 * x - 1), atol=1e-10)


def test_degrade_noise_fill_and_seed():
    x = np.random.default_rng(0).random((8,) + SHAPE).astype(np.float32)
    op = make_operator("denoise", SHAPE, 8)
    y = degrade(x, op, 0.1, seed=3)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(float(np.std(y - x)) - 0.1) < 0.005
    assert np.array_equal(y, degrade(x, op, 0.1, seed=3)) and not np.array_equal(y, degrade(x, op, 0.1, seed=4))
    box = make_operator("inpaint", SHAPE, 8, box=(2, 2, 4, 4))
    yb = degrade(x, box, 0.05, seed=0)
    assert np.all(yb[..., 2:6, 2:6] == np.float32(FILL))  # missing pixels: the documented fill, no noise
    assert np.allclose(box.decode(torch.from_numpy(yb))[..., 2:6, 2:6], 0)
    sr = make_operator("sr", SHAPE, 8, scale=2)
    assert degrade(x, sr, 0.0).shape == (8, 2, 8, 6)
    keep = make_operator("inpaint", SHAPE, 8, keep=0.3, mask_seed=0)
    frac = float(keep.mask.mean())
    assert keep.mask.shape == (8, 1, 16, 12) and 0.2 < frac < 0.4
    assert not torch.equal(keep.mask[0], keep.mask[1])  # a new mask per image
    assert torch.equal(keep.select(slice(2, 4)).mask, keep.mask[2:4])


def test_bad_operator_input():
    with pytest.raises(InputError, match="not inside"):
        make_operator("inpaint", SHAPE, 1, box=(10, 0, 5, 5))
    with pytest.raises(InputError, match="not inside"):
        make_operator("inpaint", SHAPE, 1, box=(-1, 0, 5, 5))
    with pytest.raises(InputError, match="mask shape"):
        make_operator("inpaint", SHAPE, 2, mask=np.ones((16, 16)))
    with pytest.raises(InputError, match="sigma must be >= 0"):
        degrade(np.zeros((1,) + SHAPE, np.float32), make_operator("denoise", SHAPE), -0.1)
    with pytest.raises(InputError, match="divisible"):
        make_operator("sr", SHAPE, 1, scale=5)
    with pytest.raises(InputError, match="odd"):
        make_operator("deblur", SHAPE, 1, kernel_size=4)
    with pytest.raises(InputError, match="needs images"):
        make_operator("sr", (5,), 1, scale=2)
    with pytest.raises(InputError, match="unknown task"):
        make_operator("colorize", SHAPE, 1)


# ------------------------------------------------------------------------------------------
# metrics


def test_psnr_closed_form():
    ref = np.zeros((2, 1, 8, 8), np.float32)
    x = ref + np.array([0.1, 0.01], np.float32)[:, None, None, None]
    assert np.allclose(metrics.psnr(x, ref), [20.0, 40.0], atol=1e-4)
    assert metrics.psnr(ref, ref)[0] == pytest.approx(100.0)


def test_ssim_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.random((3, 2, 16, 16))
    assert np.allclose(metrics.ssim(x, x), 1.0)
    # constant images a and b: SSIM = (2ab + C1) / (a^2 + b^2 + C1) (the variances vanish)
    a, b, c1 = 0.3, 0.7, 1e-4
    val = metrics.ssim(np.full((1, 1, 16, 16), a), np.full((1, 1, 16, 16), b))[0]
    assert val == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)
    # symmetric, and lower for a noisier copy
    y1 = x + 0.05 * rng.standard_normal(x.shape)
    y2 = x + 0.2 * rng.standard_normal(x.shape)
    assert np.allclose(metrics.ssim(x, y1), metrics.ssim(y1, x))
    assert np.all(metrics.ssim(x, y2) < metrics.ssim(x, y1))
    # a brute-force single-window SSIM at one 11x11 position equals the map's value there
    xi, yi = x[0, 0, :11, :11], y1[0, 0, :11, :11]
    w = np.outer(*(2 * [metrics.gaussian_window(11).numpy()]))
    mx, my = (w * xi).sum(), (w * yi).sum()
    vx, vy, cxy = (w * xi * xi).sum() - mx**2, (w * yi * yi).sum() - my**2, (w * xi * yi).sum() - mx * my
    c2 = 9e-4
    brute = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    assert metrics.ssim(x[:1, :1, :11, :11], y1[:1, :1, :11, :11])[0] == pytest.approx(brute, rel=1e-9)


# ------------------------------------------------------------------------------------------
# the degrade command and its sidecar


def run(*args, cwd=None):
    """The real CLI in-process (typer's runner; one subprocess run is in test_restore.py)."""
    from typer.testing import CliRunner

    from ddpmctl.cli import app

    args = [str(cwd / a) if cwd is not None and a.endswith((".npy", ".png")) else a for a in args]
    r = CliRunner().invoke(app, args)
    r.returncode = r.exit_code
    return r


@pytest.fixture()
def clean(tmp_path):
    x = np.random.default_rng(1).random((3, 1, 16, 16)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return x


def test_degrade_cli_writes_observation_and_sidecar(tmp_path, clean):
    np.save(tmp_path / "m.npy", (np.arange(256).reshape(16, 16) % 3 == 0).astype(np.float32))
    cases = [
        (["--task", "inpaint", "--box", "4,4,8,8"], (3, 1, 16, 16)),
        (["--task", "inpaint", "--keep", "0.3", "--seed", "5"], (3, 1, 16, 16)),
        (["--task", "inpaint", "--mask", "m.npy"], (3, 1, 16, 16)),
        (["--task", "denoise", "--noise", "0.1"], (3, 1, 16, 16)),
        (["--task", "sr", "--scale", "4"], (3, 1, 4, 4)),
        (["--task", "deblur", "--kernel-sigma", "1", "--kernel-size", "5", "--noise", "0.01"], (3, 1, 16, 16)),
    ]
    (tmp_path / "sub").mkdir()
    for args, shape in cases:
        r = run("degrade", "x.npy", *args, "-o", "sub/y.npy", "--json", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        info = json.loads(r.stdout)
        y = np.load(tmp_path / "sub/y.npy")
        meta = json.loads((tmp_path / "sub/y.json").read_text())
        assert y.shape == shape and meta["observation_shape"] == list(shape) and info["operator"] == meta["operator"]
        # restore's reading of the sidecar rebuilds the very operator: A x + n reproduces y
        op, sigma, _ = observation_operator(tmp_path / "sub/y.npy", y.shape, clean.shape[1:])
        assert sigma == meta["noise"] and op.params()["task"] == args[1]
        assert np.allclose(degrade(clean, op, sigma, meta["seed"]), y, atol=1e-6)
    assert meta["operator"]["kernel_size"] == 5


def test_degrade_cli_bad_input(tmp_path, clean):
    np.save(tmp_path / "m.npy", np.ones((8, 8), np.float32))
    for args, words in [
        (["--task", "inpaint", "--box", "10,10,8,8"], "--box"),
        (["--task", "denoise", "--noise", "-0.5"], "--noise"),
        (["--task", "inpaint", "--mask", "m.npy"], "mask shape"),
        (["--task", "sr", "--box", "1,1,2,2"], "--box"),
        (["--task", "blur"], "unknown task"),
    ]:
        r = run("degrade", "x.npy", *args, "-o", "y.npy", cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0]
        assert not (tmp_path / "y.npy").exists() and not (tmp_path / "y.json").exists()
