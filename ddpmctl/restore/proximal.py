"""DiffPIR (Zhu et al. 2023, "Denoising diffusion models for plug-and-play image restoration"):
half-quadratic splitting with the diffusion model as the denoiser. Each step solves the data
subproblem in closed form through the operator's SVD, then takes a DDIM-like step.
"""

from __future__ import annotations

import math

import torch

from ddpmctl import samplers as S
from ddpmctl.restore.base import Observation

# The noise level DiffPIR's rho_t uses for a noise-free y, in model units (0.001 in image units):
# with sigma_n = 0, rho_t = 0 and the data step would be the exact projection of DDNM at every step.
SIGMA_N_MIN = 2e-3


def _f(v) -> float:
    return float(v)


def diffpir_x0(op, x0: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """The data step: argmin_x ||y - A x||^2 + rho ||x - x0||^2 = x0 + (A^T A + rho I)^-1 A^T (y - A x0)
    = x0 + V diag(s / (s^2 + rho)) U^T (y - A x0), exact for every operator (its SVD)."""
    return x0 + op.pinv_filter(y - op.A(x0), lambda sv: sv / (sv**2 + rho))


@torch.no_grad()
def diffpir(
    denoiser, x, times, generator, callback=None, *, obs: Observation, lam: float = 7.0, zeta: float = 0.3
) -> torch.Tensor:
    """DiffPIR (Zhu et al. 2023, Algorithm 1), written for any process x_t = alpha_t x0 + sigma_t eps:

        x0^   = denoiser(x_t, t)
        x0    = argmin_x ||y - A x||^2 + rho_t ||x - x0^||^2,  rho_t = lam sigma_n^2 / sigma~_t^2
        eps^  = (x_t - alpha_t x0) / sigma_t
        x_s   = alpha_s x0 + sigma_s (sqrt(1 - zeta) eps^ + sqrt(zeta) z)

    with sigma~_t = sigma_t / alpha_t (the paper's sqrt(1 - alpha_bar_t) / sqrt(alpha_bar_t)) and
    sigma_n = max(sigma_y, ``SIGMA_N_MIN``) the noise of y in model units. Early (sigma~_t large)
    the data step nearly projects onto A x = y; late it trusts the denoiser (rho_t -> inf).
    ``zeta`` in [0, 1] is the share of fresh noise (0: DDIM, deterministic). NFE = steps."""
    process, op, y = denoiser.process, obs.op, obs.y
    sigma_n = max(float(obs.sigma_y), SIGMA_N_MIN)
    for i, (t, s) in enumerate(S._steps(times)):
        pred = denoiser(x, t)
        a_t, sg_t = _f(process.alpha(t)), _f(process.sigma(t))
        a_s, sg_s = _f(process.alpha(s)), _f(process.sigma(s))
        rho = lam * (sigma_n * a_t / sg_t) ** 2
        x0 = diffpir_x0(op, pred.x0, y, rho)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
        if sg_s == 0:
            x = x0
            continue
        eps = (x - a_t * x0) / sg_t
        z = S.randn_like(x, generator) if zeta > 0 else torch.zeros_like(x)
        x = a_s * x0 + sg_s * (math.sqrt(1 - zeta) * eps + math.sqrt(zeta) * z)
    return x
