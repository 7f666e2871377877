"""Total-variation regularised least squares with a known operator, the classical baseline of
benchmarks/restore_quality.py:

    x* = argmin_x  1/2 ||A x - y||^2 + lam TV(x),   TV(x) = sum_ij |(grad x)_ij|_2  (isotropic)

solved by the primal-dual algorithm of Chambolle & Pock (2011, "A first-order primal-dual
algorithm for convex problems with applications to imaging", Algorithm 1 with theta = 1) with
K = grad (forward differences, Neumann boundary), F(p) = lam ||p||_{2,1} and G(x) = 1/2 ||A x - y||^2:

    p     <- proj_{|p_ij| <= lam}(p + sigma grad x_bar)                 (prox of F*)
    x_new <- (I + tau A^T A)^-1 (x - tau grad^T p + tau A^T y)          (prox of G)
    x_bar <- 2 x_new - x

The prox of G is exact for every ddpmctl operator through its SVD (``op.filter`` with
h(s) = 1 / (1 + tau s^2), h(0) = 1 on the null space): a mask, average pooling, the circular blur
and the identity. Step sizes tau = 0.99 / (sqrt(8) sqrt(lam)), sigma = 0.99 sqrt(lam) / sqrt(8)
(||grad||^2 <= 8, so tau sigma ||K||^2 < 1), balanced as tau / sigma = 1 / lam because the dual
variable lives on the scale lam and the image on the scale 1: with tau = sigma a hole in an
inpainting problem (no data term there) took > 8000 iterations to fill, with this balance < 2000.

A baseline for the benchmark, not a ddpmctl feature: ``restore`` is for diffusion priors.
"""

from __future__ import annotations

import math

import torch


def grad(x: torch.Tensor) -> torch.Tensor:
    """Forward differences (N, C, H, W) -> (N, C, 2, H, W), zero at the last row / column."""
    dy = torch.zeros_like(x)
    dx = torch.zeros_like(x)
    dy[..., :-1, :] = x[..., 1:, :] - x[..., :-1, :]
    dx[..., :, :-1] = x[..., :, 1:] - x[..., :, :-1]
    return torch.stack([dy, dx], dim=2)


def grad_adjoint(p: torch.Tensor) -> torch.Tensor:
    """grad^T p (= -div p): <grad x, p> = <x, grad^T p>."""
    py, px = p[:, :, 0], p[:, :, 1]
    out = torch.zeros_like(py)
    out[..., :-1, :] -= py[..., :-1, :]
    out[..., 1:, :] += py[..., :-1, :]
    out[..., :, :-1] -= px[..., :, :-1]
    out[..., :, 1:] += px[..., :, :-1]
    return out


def tv_norm(x: torch.Tensor) -> torch.Tensor:
    """Isotropic TV per image (N,)."""
    return torch.linalg.vector_norm(grad(x), dim=2).flatten(1).sum(1)


def objective(op, x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """1/2 ||A x - y||^2 + lam TV(x) per image (N,)."""
    return 0.5 * (op.A(x) - y).flatten(1).pow(2).sum(1) + lam * tv_norm(x)


def tv_restore(op, y: torch.Tensor, lam: float, iterations: int = 2000, x_init: torch.Tensor | None = None):
    """Chambolle-Pock for 1/2 ||A x - y||^2 + lam TV(x) (module docstring); y = A x + n as
    ``op.decode`` gives it, float64 (N, C, H, W) images. Starts from A^+ y unless ``x_init``."""
    y = y.to(torch.float64)
    tau, sigma = 0.99 / math.sqrt(8.0 * lam), 0.99 * math.sqrt(lam / 8.0)
    x = op.pinv(y) if x_init is None else x_init.to(torch.float64)
    x_bar, p = x.clone(), torch.zeros_like(grad(x))
    aty = op.At(y)

    def shrink(s):
        return 1.0 / (1.0 + tau * s**2)

    for _ in range(iterations):
        p = p + sigma * grad(x_bar)
        p = p / torch.clamp(torch.linalg.vector_norm(p, dim=2, keepdim=True) / lam, min=1.0)
        x_new = op.filter(x - tau * grad_adjoint(p) + tau * aty, shrink)
        x_bar = 2 * x_new - x
        x = x_new
    return x
