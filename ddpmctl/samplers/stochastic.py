"""Stochastic samplers beyond the ancestral family, each written in sigma~ = sigma/alpha (x~ = x/alpha,
the VE form of any process, EDM's convention) or in lambda = log(alpha/sigma), so that every one runs
on every process: EDM's stochastic sampler, Euler ancestral, DPM-Solver++(2M) SDE and Restart
sampling; their records are in ``registry``. See ``ddpmctl.samplers`` for the signature every sampler has.

Where a sampler moves to a noise level that is not on the grid (EDM's churn, Restart's t_max), the
level is turned into the process's time and rounded to a trained time with ``Process.round_t``
(EDM's ``round_sigma``): on a discrete DDPM process the nearest step i/T, so the network is only
asked about steps it was trained on; on a continuous process the time itself."""

from __future__ import annotations

import math

import torch

from ddpmctl.diffusion import Denoiser
from ddpmctl.errors import InputError
from ddpmctl.samplers.ancestral import _cb, _f, _steps, randn_like
from ddpmctl.samplers.ode import dpmpp_2m, ode_heun
from ddpmctl.schedules import Process, sigma_tilde


def time_at(process: Process, sig: float) -> float:
    """The trained time whose sigma~ = sigma/alpha is ``sig`` (clamped to [t_min, t_max], then
    rounded by ``process.round_t``: EDM's ``round_sigma``)."""
    t = process.t_from_log_snr(torch.tensor(-2 * math.log(sig), dtype=torch.float64))
    return float(process.round_t(t.clamp(process.t_min, process.t_max)))


# --------------------------------------------------------------------------------------------
# EDM's stochastic sampler


@torch.no_grad()
def sample_edm(
    denoiser: Denoiser,
    x,
    times,
    generator=None,
    callback=None,
    churn: float = 40.0,
    s_tmin: float = 0.05,
    s_tmax: float = 50.0,
    s_noise: float = 1.0,
) -> torch.Tensor:
    """EDM's stochastic sampler (Karras et al. 2022, Algorithm 2), in sigma~ = sigma/alpha. Step i
    of N, from sigma~_i to sigma~_{i+1}:

        gamma_i = min(S_churn / N, sqrt(2) - 1) if S_tmin <= sigma~_i <= S_tmax, else 0
        sigma^_i = sigma~_i (1 + gamma_i)                  (rounded to a trained time: round_t)
        x~^_i = x~_i + sqrt(sigma^_i^2 - sigma~_i^2) S_noise z
        d = eps(x^_i, t^_i);  x~' = x~^_i + (sigma~_{i+1} - sigma^_i) d
        x~_{i+1} = x~^_i + (sigma~_{i+1} - sigma^_i) (d + eps(x', t_{i+1})) / 2     (Euler when sigma~_{i+1} = 0)

    with x = alpha_t x~. S_churn = 0 (or gamma_i = 0 everywhere) is ``ode_heun`` exactly. The
    churned level sigma^_i is a time t^_i = round_t(t(sigma^_i)) <= t_max; where rounding or
    t_max leaves t^_i = t_i, the step adds no noise. NFE = 2 steps - 1."""
    process = denoiser.process
    steps = _steps(times)
    gamma_max = min(churn / len(steps), math.sqrt(2) - 1)
    for i, (t, s) in enumerate(steps):
        a_t, st = _f(process.alpha(t)), _f(sigma_tilde(process, t))
        if gamma_max > 0 and s_tmin <= st <= s_tmax:
            t_hat = time_at(process, st * (1 + gamma_max))
            if t_hat > t:
                a_hat, s_hat = _f(process.alpha(t_hat)), _f(sigma_tilde(process, t_hat))
                z = randn_like(x, generator)
                x = a_hat * (x / a_t + math.sqrt(max(s_hat**2 - st**2, 0.0)) * s_noise * z)
                t, a_t, st = t_hat, a_hat, s_hat
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        a_s, ss = _f(process.alpha(s)), _f(sigma_tilde(process, s))
        xt = x / a_t
        x_next = xt + (ss - st) * pred.eps
        if s > 0:
            d_next = denoiser(a_s * x_next, s).eps
            x_next = xt + (ss - st) * 0.5 * (pred.eps + d_next)
        x = a_s * x_next
    return x


# --------------------------------------------------------------------------------------------
# Euler ancestral and DPM-Solver++(2M) SDE (k-diffusion)


@torch.no_grad()
def sample_euler_a(denoiser: Denoiser, x, times, generator=None, callback=None, eta: float = 1.0) -> torch.Tensor:
    """Euler ancestral (k-diffusion ``sample_euler_ancestral`` with ``get_ancestral_step``), in
    sigma~: from sigma~_t to sigma~_s,

        sigma_up = min(sigma~_s, eta sqrt(sigma~_s^2 (sigma~_t^2 - sigma~_s^2) / sigma~_t^2)),
        sigma_down = sqrt(sigma~_s^2 - sigma_up^2),
        x~_s = x~_t + (sigma_down - sigma~_t) eps(x_t, t) + sigma_up z,     x = alpha x~.

    sigma_up^2 is eta^2 times the posterior variance of q(x~_s | x~_t, x0) and
    x~_t + (sigma_down - sigma~_t) eps = x0 + sigma_down eps, so this is DDIM with the same eta
    (Song et al. 2021a eq. 12) in k-diffusion's form: eta = 1 is the ancestral DDPM step. The last
    step (sigma~_s = 0) returns x0. NFE = steps."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        a_t, a_s = _f(process.alpha(t)), _f(process.alpha(s))
        st, ss = _f(sigma_tilde(process, t)), _f(sigma_tilde(process, s))
        up = min(ss, eta * math.sqrt(max(ss**2 * (st**2 - ss**2) / st**2, 0.0)))
        down = math.sqrt(max(ss**2 - up**2, 0.0))
        xt = x / a_t + (down - st) * pred.eps
        if eta > 0 and s > 0:
            xt = xt + up * randn_like(x, generator)
        x = a_s * xt
    return x


def sample_dpmpp_2m_sde(denoiser: Denoiser, x, times, generator=None, callback=None, eta: float = 1.0) -> torch.Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022, DPM-Solver++ section 4 / Appendix for the SDE variant;
    k-diffusion ``sample_dpmpp_2m_sde``, ``solver_type="midpoint"``): ``ode.dpmpp_2m`` with noise
    ``eta`` (its docstring gives the step). eta = 0 is DPM-Solver++(2M) (``ode_dpmpp_2m``, bit for
    bit); eta = 1 solves the reverse SDE. NFE = steps."""
    return dpmpp_2m(denoiser, x, times, callback, eta=eta, generator=generator)


# --------------------------------------------------------------------------------------------
# Restart sampling


def _restart_index(process: Process, times, s_tmin: float) -> int:
    """The index of the interior grid time whose sigma~ is nearest ``s_tmin``."""
    tl = [float(v) for v in times]
    return min(range(1, len(tl) - 1), key=lambda i: abs(_f(sigma_tilde(process, tl[i])) - s_tmin))


def restart_grid(process: Process, times, s_tmin: float, s_tmax: float, steps: int, rho: float = 7.0):
    """Restart's interval on a sampling grid: (j, the restart's own grid). t_min is the interior grid
    time whose sigma~ is nearest ``s_tmin`` (index j: neither the first time nor the final 0); t_max the
    trained time at sigma~ = ``s_tmax`` (``time_at``); the restart's grid takes ``steps`` steps from
    t_max down to t_min, sigma~^(1/rho) uniform (EDM's spacing, as the paper's code does), on the
    process's trained times (``Process.grid``)."""
    j = _restart_index(process, times, s_tmin)
    t_lo, t_hi = float(times[j]), time_at(process, s_tmax)
    lo, hi = _f(sigma_tilde(process, t_lo)), _f(sigma_tilde(process, t_hi))
    if not hi > lo:
        raise InputError(
            f"restart: sigma~ at t_max ({hi:.4g}) is not above the grid's sigma~ nearest t_min ({lo:.4g}); "
            "raise s_tmax or take more --steps"
        )
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    sig = (hi ** (1 / rho) + u * (lo ** (1 / rho) - hi ** (1 / rho))) ** rho
    t = process.t_from_log_snr(-2 * torch.log(sig)).clamp(t_lo, t_hi)
    t[0], t[-1] = t_hi, t_lo
    return j, process.grid(t)


@torch.no_grad()
def sample_restart(
    denoiser: Denoiser,
    x,
    times,
    generator=None,
    callback=None,
    restarts: int = 2,
    restart_steps: int = 2,
    s_tmin: float = 0.06,
    s_tmax: float = 0.30,
) -> torch.Tensor:
    """Restart sampling (Xu et al. 2023, Algorithm 1 with one restart interval), in sigma~: Heun
    (``ode_heun``) along the grid down to t_min (the interior grid time nearest sigma~ = ``s_tmin``),
    then K = ``restarts`` times

        x~_{t_max} = x~_{t_min} + sqrt(sigma~_{t_max}^2 - sigma~_{t_min}^2) z     (forward: back to t_max)
        x~_{t_min} = Heun from t_max to t_min in ``restart_steps`` steps              (backward ODE)

    with x = alpha_t x~ and t_max the trained time at sigma~ = ``s_tmax`` (``restart_grid``), then
    Heun along the rest of the grid. restarts = 0 is ``ode_heun`` on the grid. A grid of one step
    has no interior time and no restart. NFE = 2 steps - 1 + 2 K restart_steps (steps >= 2)."""
    if len(times) < 3:
        return ode_heun(denoiser, x, times, callback)
    process = denoiser.process
    if restarts == 0:  # the same split of the grid; no interval to check
        j = _restart_index(process, times, s_tmin)
        x = ode_heun(denoiser, x, times[: j + 1], callback)
    else:
        j, inner = restart_grid(process, times, s_tmin, s_tmax, restart_steps)
        t_lo, t_hi = float(inner[-1]), float(inner[0])
        a_lo, a_hi = _f(process.alpha(t_lo)), _f(process.alpha(t_hi))
        jump = math.sqrt(_f(sigma_tilde(process, t_hi)) ** 2 - _f(sigma_tilde(process, t_lo)) ** 2)
        x = ode_heun(denoiser, x, times[: j + 1], callback)
        for _ in range(restarts):
            x = a_hi * (x / a_lo + jump * randn_like(x, generator))
            x = ode_heun(denoiser, x, inner)
    late = None if callback is None else (lambda d: callback({**d, "i": d["i"] + j}))
    return ode_heun(denoiser, x, times[j:], late)
