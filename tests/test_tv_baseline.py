"""The total-variation baseline of benchmarks/restore_quality.py (benchmarks/tv.py): Chambolle-Pock
for 1/2 ||A x - y||^2 + lam TV(x) with ddpmctl's operators."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpmctl.operators import make_operator

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from tv import grad, grad_adjoint, objective, tv_norm, tv_restore  # noqa: E402

SHAPE = (1, 12, 12)


def edge(n=2):
    x = torch.zeros((n,) + SHAPE, dtype=torch.float64)
    x[..., 5:] = 1.0  # a vertical edge between columns 4 and 5
    return x


def test_grad_adjoint_is_the_adjoint():
    g = torch.Generator().manual_seed(0)
    x = torch.randn((3, 2, 7, 9), generator=g, dtype=torch.float64)
    p = torch.randn((3, 2, 2, 7, 9), generator=g, dtype=torch.float64)
    assert torch.allclose((grad(x) * p).sum(), (x * grad_adjoint(p)).sum())
    assert tv_norm(edge()).tolist() == [12.0, 12.0]  # one unit jump per row


def test_tv_fills_a_hole_across_an_edge_with_the_straight_edge():
    """The TV-minimal filling of a box hole that a vertical edge crosses is the straight edge
    (the shortest level line joins its ends), so inpainting recovers the image."""
    x = edge()
    op = make_operator("inpaint", SHAPE, 2, box=(2, 3, 6, 6))
    y = op.A(x)
    out = tv_restore(op, y, lam=1e-3, iterations=2000)
    assert (out - x).abs().max() < 0.02
    assert (op.pinv(y) - x).abs().max() == 1.0  # the hole itself is empty


@pytest.mark.parametrize(
    "task,kw,sigma,lam",
    [("denoise", {}, 0.2, 0.3), ("sr", {"scale": 2}, 0.0, 0.01), ("deblur", {"kernel_sigma": 1.0}, 0.01, 0.01)],
)
def test_tv_restore_minimises_its_objective(task, kw, sigma, lam):
    """The result beats A^+ y and random perturbations of itself on the convex objective, and
    it is closer to the truth than A^+ y."""
    x = edge(3)
    x[1] = x[1].transpose(-1, -2).clone()
    x[2] = torch.clamp(x[2] + x[1], max=1.0)
    op = make_operator(task, SHAPE, 3, **kw)
    y = op.observe(x, sigma, torch.Generator().manual_seed(1))
    out = tv_restore(op, y, lam, iterations=1500)
    f = objective(op, out, y, lam)
    assert (f < objective(op, op.pinv(y), y, lam) - 1e-6).all()
    g = torch.Generator().manual_seed(2)
    for scale in (1e-2, 1e-3):
        moved = out + scale * torch.randn(out.shape, generator=g, dtype=torch.float64)
        assert (objective(op, moved, y, lam) >= f - 1e-6).all(), scale
    err = (out - x).flatten(1).pow(2).mean(1)
    assert (err < (op.pinv(y) - x).flatten(1).pow(2).mean(1)).all()


def test_tv_with_vanishing_weight_solves_the_least_squares_problem():
    """lam -> 0 with A = I gives back y; noise-free SR gives a solution of A x = y."""
    x = edge()
    op = make_operator("denoise", SHAPE, 2)
    y = op.observe(x, 0.1, torch.Generator().manual_seed(3))
    assert torch.allclose(tv_restore(op, y, 1e-9, iterations=50), y, atol=1e-6)
    sr = make_operator("sr", SHAPE, 2, scale=3)
    y = sr.A(x + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64))
    out = tv_restore(sr, y, 1e-4, iterations=1000)
    assert np.abs((sr.A(out) - y).numpy()).max() < 1e-3
