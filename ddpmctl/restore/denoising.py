"""SDEdit (Meng et al. 2022) for denoising: the noisy observation is a state of the forward
process, so the reverse process starts from it."""

from __future__ import annotations

import math

import torch

from ddpmctl import samplers as S
from ddpmctl.restore.base import Observation
from ddpmctl.schedules import Process


def _f(v) -> float:
    return float(v)


def sdedit_start(process: Process, sigma_y: float) -> float:
    """The time t* where alpha^2/sigma^2 = 1/sigma_y^2 (VP: alpha_bar = 1/(1 + sigma_y^2)); on a
    discrete process the next grid time up (so sigma_t >= alpha_t sigma_y still holds), at most t_max."""
    t_star = process.t_from_log_snr(torch.tensor(-2.0 * math.log(sigma_y), dtype=torch.float64))
    t_star = _f(process.round_t(t_star, up=True))
    return min(max(t_star, _f(process.t_min)), _f(process.t_max))


def sdedit_times(process: Process, steps: int, sigma_y: float) -> torch.Tensor:
    """t*, then the times of the full ``steps``-step grid below t*, then 0."""
    t_star = sdedit_start(process, sigma_y)
    full = S.make_times(process, steps, process.default_spacing)
    return torch.cat([torch.tensor([t_star], dtype=torch.float64), full[full < t_star - 1e-12]])


@torch.no_grad()
def sdedit(denoiser, x, times, generator, callback=None, *, obs: Observation, eta: float = 1.0) -> torch.Tensor:
    """SDEdit denoising: y = x + sigma_y n is a noisy image at the time t* where
    alpha^2 / sigma^2 = 1 / sigma_y^2, so x_t* = alpha_t* y + sqrt(sigma_t*^2 - alpha_t*^2 sigma_y^2) z
    is exactly q(x_t* | x) (the square root is 0 when t* is exact); then DDIM(eta) steps to 0.
    NFE = len(times) - 1."""
    process, y, sigma_y = denoiser.process, obs.y, obs.sigma_y
    t0 = _f(times[0])
    a, sg = _f(process.alpha(t0)), _f(process.sigma(t0))
    extra = math.sqrt(max(sg**2 - (a * sigma_y) ** 2, 0.0))
    x = a * y + extra * S.randn_like(y, generator)
    for i, (t, s) in enumerate(S._steps(times)):
        pred = denoiser(x, t)
        z = S.randn_like(x, generator) if eta > 0 and s > 0 else None
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": pred.x0})
        x = S.ddim_step(x, pred, t, s, process, eta, z)
    return x
