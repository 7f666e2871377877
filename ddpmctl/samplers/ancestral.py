"""The ancestral and score-SDE family: DDPM, DDIM, the reverse SDE, predictor-corrector and annealed
Langevin dynamics and the step primitives they share (also used by ``restore`` and the other
families); their records are in ``registry``. See ``ddpmctl.samplers`` for the signature every sampler has."""

from __future__ import annotations

import math

import torch

from ddpmctl.diffusion import Denoiser, Prediction, posterior, transition
from ddpmctl.errors import InputError
from ddpmctl.schedules import Process


def randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    """Noise shaped like x from a noise stream (a callable such as ``sampling.NoiseStream``: a
    generator per sample), a torch.Generator (one stream for the batch) or None."""
    if generator is None:
        return torch.randn_like(x)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    z = generator()
    if z.shape != x.shape:
        raise ValueError(f"noise stream gives {tuple(z.shape)}, state is {tuple(x.shape)}")
    return z.to(device=x.device, dtype=x.dtype)


# --------------------------------------------------------------------------------------------
# step primitives (also used by restore.py)


def _f(v) -> float:
    return float(v)


def ancestral_step(x, pred: Prediction, t, s, process: Process, variance="small", noise=None) -> torch.Tensor:
    """One DDPM step x_t -> x_s: a draw from q(x_s | x_t, x0 = pred.x0) (DDPM eq. 6-7, seed 004):

        x_s = c_xt x_t + c_x0 x0 + sigma z,
        c_xt = alpha_{t|s} sigma_s^2 / sigma_t^2,  c_x0 = alpha_s sigma_{t|s}^2 / sigma_t^2,
        sigma^2 = sigma_{t|s}^2 sigma_s^2 / sigma_t^2 (``small``: beta-tilde) or sigma_{t|s}^2 (``large``: beta_t).

    On DDPM's grid (s = t - 1) this is Algorithm 2's
    x_{t-1} = (x_t - beta_t / sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_t) + sigma_t z. No noise is
    added when s = 0 or ``noise`` is None."""
    c_xt, c_x0, var = posterior(process, s, t)
    if variance == "large":
        var = transition(process, s, t)[1]
    elif variance != "small":
        raise InputError(f"--variance: unknown variance '{variance}' (choose from small, large)")
    out = _f(c_xt) * x + _f(c_x0) * pred.x0
    if noise is not None and _f(s) > 0:
        out = out + math.sqrt(max(_f(var), 0.0)) * noise
    return out


def ddim_step(
    x: torch.Tensor, pred: Prediction, t, s, process: Process, eta: float = 0.0, noise: torch.Tensor | None = None
) -> torch.Tensor:
    """One DDIM step x_t -> x_s (Song et al. 2021a, eq. 12 and 16, written with alpha/sigma):

        x_s = alpha_s x0 + sqrt(sigma_s^2 - c^2) eps + c z,   c^2 = eta^2 sigma_{t|s}^2 sigma_s^2 / sigma_t^2.

    eta = 0 is deterministic (Euler on the probability-flow ODE in sigma~ = sigma/alpha);
    eta = 1 makes c^2 the posterior variance, which is the ancestral (DDPM) step.

    ``t`` and ``s`` are one time each (a sampler's grid) or one per sample, (B,) tensors
    (``ddpmctl.distill`` steps a batch drawn at several times of its grid)."""
    a_s, s_s = process.alpha(s), process.sigma(s)  # float64
    var = eta**2 * posterior(process, s, t)[2] * (s_s > 0) if eta > 0 else torch.zeros_like(s_s)
    out = _coef(a_s, x) * pred.x0 + _coef(torch.sqrt((s_s**2 - var).clamp(min=0.0)), x) * pred.eps
    if noise is not None and bool((var > 0).any()):
        out = out + _coef(torch.sqrt(var), x) * noise
    return out


def _coef(c: torch.Tensor, x: torch.Tensor):
    """A step's coefficient: a Python float for one time, or per sample ((B,) float64) shaped to
    broadcast against x (B, ...) in x's dtype."""
    if c.ndim == 0:
        return float(c)
    return c.to(device=x.device, dtype=x.dtype).reshape(c.shape + (1,) * (x.ndim - c.ndim))


def langevin_step(x: torch.Tensor, score: torch.Tensor, step: float, noise: torch.Tensor) -> torch.Tensor:
    """One unadjusted Langevin step x + eps s(x) + sqrt(2 eps) z (seeds 000 and 001)."""
    return x + step * score + math.sqrt(2 * step) * noise


def _cb(callback, i, t, x, pred):
    if callback is not None:
        callback({"i": i, "t": _f(t), "x": x, "x0": pred.x0})


def _steps(times):
    times = [float(v) for v in times]
    return list(zip(times[:-1], times[1:]))


# --------------------------------------------------------------------------------------------
# the samplers


@torch.no_grad()
def sample_ddpm(denoiser: Denoiser, x, times, generator=None, callback=None, variance: str = "small") -> torch.Tensor:
    """Ancestral sampling (DDPM Algorithm 2; seeds 000, 001, 004) on any grid: each step draws
    x_s ~ q(x_s | x_t, x0_pred) with variance beta-tilde (``small``) or beta_t (``large``).
    NFE = steps."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        noise = randn_like(x, generator) if s > 0 else None
        x = ancestral_step(x, pred, t, s, process, variance, noise)
    return x


@torch.no_grad()
def sample_ddim(denoiser: Denoiser, x, times, generator=None, callback=None, eta: float = 0.0) -> torch.Tensor:
    """DDIM (Song et al. 2021a) with stochasticity eta in [0, 1]. NFE = steps."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        noise = randn_like(x, generator) if eta > 0 and s > 0 else None
        x = ddim_step(x, pred, t, s, process, eta, noise)
    return x


@torch.no_grad()
def sample_sde(denoiser: Denoiser, x, times, generator=None, callback=None) -> torch.Tensor:
    """Euler-Maruyama on the reverse-time SDE (Anderson 1982; Song et al. 2021b eq. 6; seeds 000, 001):

        dx = [f(t) x - g(t)^2 score(x, t)] dt + g(t) dw-bar,   t: t_max -> t_min,

    x_s = x_t - [f x_t - g^2 score] (t - s) + g sqrt(t - s) z, then the denoising step to 0. NFE = steps."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        if s == 0:
            x = pred.x0
            continue
        dt = t - s
        f, g2, sig = _f(process.f(t)), _f(process.g2(t)), _f(process.sigma(t))
        score = -pred.eps / sig
        x = x - (f * x - g2 * score) * dt + math.sqrt(g2 * dt) * randn_like(x, generator)
    return x


@torch.no_grad()
def sample_pc(
    denoiser: Denoiser, x, times, generator=None, callback=None, snr: float = 0.16, corrector_steps: int = 1
) -> torch.Tensor:
    """Predictor-corrector sampling (Song et al. 2021b, Algorithms 2-3; seed 001).

    Predictor, the reverse-diffusion step of the discretised forward step x_t = alpha_{t|s} x_s + sigma_{t|s} z:
        x_s = (2 - alpha_{t|s}) x_t + sigma_{t|s}^2 score(x_t, t) + sigma_{t|s} z
    (VE: x + (sigma_t^2 - sigma_s^2) s + sqrt(sigma_t^2 - sigma_s^2) z;
    VP: (2 - sqrt(1 - beta)) x + beta s + sqrt(beta) z).
    Corrector, ``corrector_steps`` Langevin steps at s with the signal-to-noise step size
        x <- x + e score(x, s) + sqrt(2 e) z,   e = 2 alpha_{t|s}^2 (r sigma_s)^2,
    which is score_sde's e = 2 alpha (r ||z|| / ||score||)^2 with the norms at their values for a
    correct score (||score|| = ||z|| / sigma); r = ``snr``. NFE = steps + corrector_steps * (steps - 1)."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        if s == 0:
            x = pred.x0
            continue
        a_ts, var_ts = (_f(v) for v in transition(process, s, t))
        score = -pred.eps / _f(process.sigma(t))
        x = (2 - a_ts) * x + var_ts * score + math.sqrt(var_ts) * randn_like(x, generator)
        sig_s = _f(process.sigma(s))
        step = 2 * a_ts**2 * (snr * sig_s) ** 2
        for _ in range(corrector_steps):
            score = -denoiser(x, s).eps / sig_s
            x = langevin_step(x, score, step, randn_like(x, generator))
    return x


@torch.no_grad()
def sample_langevin(
    denoiser: Denoiser, x, times, generator=None, callback=None, snr: float = 0.5, corrector_steps: int = 2
) -> torch.Tensor:
    """Annealed Langevin dynamics (SMLD: Song & Ermon 2019, Algorithm 1; seed 000), for VE models.

    At each noise level sigma_i (the grid's times, largest first), ``corrector_steps`` steps
        x <- x + e_i score(x, sigma_i) + sqrt(2 e_i) z,   e_i = 2 (r sigma_i)^2,
    i.e. SMLD's alpha_i = 2 e_i = eps sigma_i^2 / sigma_L^2 with eps = (2 r sigma_L)^2 (r = ``snr``),
    then NCSNv2's final denoising step. NFE = levels * corrector_steps + 1."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        sig = _f(process.sigma(t))
        step = 2 * (snr * sig) ** 2
        for m in range(corrector_steps):
            pred = denoiser(x, t)
            if m == 0:
                _cb(callback, i, t, x, pred)
            x = langevin_step(x, -pred.eps / sig, step, randn_like(x, generator))
        if s == 0:
            x = denoiser(x, t).x0
    return x
