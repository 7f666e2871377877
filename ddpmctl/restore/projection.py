"""Methods that put the observation into the state by projection: DDNM (range-null-space
decomposition of x0, with DDNM's time-travel resampling) and RePaint (replacement of the observed
part, with resampling jumps).

Both walk a path over the grid positions that may jump back: ``restore_registry.jump_path``
(torch-free: the records' NFE formulas count it).
"""

from __future__ import annotations

import math

import torch

from ddpmctl import samplers as S
from ddpmctl.diffusion import Prediction, transition
from ddpmctl.restore.base import Observation
from ddpmctl.restore_registry import jump_path, repaint_path


def _f(v) -> float:
    return float(v)


def jump_back(process, x: torch.Tensor, t: float, t_back: float, generator) -> torch.Tensor:
    """x_t' ~ q(x_t' | x_t) for t' = t_back > t: alpha_{t'|t} x_t + sigma_{t'|t} z."""
    a_ts, var_ts = transition(process, t, t_back)
    return _f(a_ts) * x + math.sqrt(max(_f(var_ts), 0.0)) * S.randn_like(x, generator)


# --------------------------------------------------------------------------------------------
# DDNM


def _ddnm_x0(op, x0, y, sigma_y, a_s, sg_s):
    """DDNM's x0^ = x0 - A^+ (A x0 - y); DDNM+ for sigma_y > 0: x0 - V diag(lambda_s / s) U^T (A x0 - y)
    with lambda_s = min(1, sigma_next s / (alpha_next sigma_y)) (DDNM paper eq. 17-19, in SVD form)."""
    if sigma_y > 0:
        return x0 - op.pinv_filter(op.A(x0) - y, lambda sv: _lam(sv, a_s, sg_s, sigma_y) / sv)
    return x0 - op.pinv(op.A(x0) - y)


def _lam(sv, a_s, sg_s, sigma_y):
    return torch.clamp(sg_s * sv / (a_s * sigma_y), max=1.0)


def _ddnm_step(denoiser, x, t, s, obs: Observation, eta: float, generator):
    """One DDNM(+) step x_t -> x_s; returns (x_s, x0^)."""
    process, op, y, sigma_y = denoiser.process, obs.op, obs.y, obs.sigma_y
    pred = denoiser(x, t)
    a_t, sg_t = _f(process.alpha(t)), _f(process.sigma(t))
    a_s, sg_s = _f(process.alpha(s)), _f(process.sigma(s))
    x0 = _ddnm_x0(op, pred.x0, y, sigma_y, a_s, sg_s)
    eps = (x - a_t * x0) / sg_t
    z = S.randn_like(x, generator) if eta > 0 and s > 0 else None
    x_next = S.ddim_step(x, Prediction(eps=eps, x0=x0), t, s, process, eta, z)
    if sigma_y > 0 and sg_s > 0:

        def keep(sv):  # share of the step's noise left after y's noise in x0^
            ratio = a_s * _lam(sv, a_s, sg_s, sigma_y) * sigma_y / (sv.clamp(min=1e-30) * sg_s)
            return torch.where(sv > 0, torch.sqrt(torch.clamp(1 - ratio**2, min=0.0)), torch.ones_like(sv))

        x_next = a_s * x0 + op.filter(x_next - a_s * x0, keep)
    return x_next, x0


@torch.no_grad()
def ddnm(
    denoiser,
    x,
    times,
    generator,
    callback=None,
    *,
    obs: Observation,
    eta: float = 0.85,
    travel_length: int = 0,
    travel_interval: int = 1,
    travel_repeat: int = 0,
) -> torch.Tensor:
    """DDNM (sigma_y = 0) / DDNM+ (sigma_y > 0) with DDIM steps (Wang, Yu & Zhang 2023):
    ``x0^ = A^+ y + (I - A^+ A) x0`` (so A x0^ = y), then a DDIM step from (x_t, x0^) with
    ``eps^ = (x_t - alpha_t x0^) / sigma_t``; DDNM+ per singular value (``_ddnm_x0``, step noise
    scaled so that y's noise in x0^ plus the added noise is sigma_next per component).

    Time travel (section 3.3): every ``travel_interval`` steps the chain jumps back
    ``travel_length`` steps with q(x_t' | x_t) and is denoised again, ``travel_repeat`` times, so
    the null-space content is revised in view of the observation (``jump_path``; 0 repeats = plain
    DDNM). NFE = the path's down steps = steps + (jump points) x repeats x length."""
    times = [float(v) for v in times]
    path = jump_path(len(times) - 1, travel_length, travel_interval, travel_repeat)
    for i, (k, k_next) in enumerate(zip(path[:-1], path[1:])):
        t, s = times[k], times[k_next]
        if k_next < k:
            x = jump_back(denoiser.process, x, t, s, generator)
            continue
        x_next, x0 = _ddnm_step(denoiser, x, t, s, obs, eta, generator)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
        x = x_next
    return x


# --------------------------------------------------------------------------------------------
# RePaint


@torch.no_grad()
def repaint(
    denoiser, x, times, generator, callback=None, *, obs: Observation, jump_length: int = 10, jump_n: int = 10
) -> torch.Tensor:
    """RePaint (Lugmayr et al. 2022): after each ancestral step the known part is replaced by the
    noised observation, ``x_s <- A^+ (alpha_s y) + sigma_s A^+ A z + (I - A^+ A) x_s`` (for a mask:
    ``m (alpha_s y + sigma_s z) + (1 - m) x_s``), and every ``jump_length`` steps the chain jumps
    back ``jump_length`` steps with ``q(x_t' | x_s)`` (``jump_n - 1`` times per jump point).
    NFE = down steps."""
    process, op, y, sigma_y = denoiser.process, obs.op, obs.y, obs.sigma_y
    times = [float(v) for v in times]

    def known(s, z):  # A^+ A x_s from the observation: A^+ (alpha_s y) + noise up to sigma_s per component
        a_s, sg_s = _f(process.alpha(s)), _f(process.sigma(s))
        if sg_s == 0:
            return op.pinv(y)

        def share(sv):
            ratio = a_s * sigma_y / (sv.clamp(min=1e-30) * sg_s)
            return torch.where(sv > 0, torch.sqrt(torch.clamp(1 - ratio**2, min=0.0)), torch.zeros_like(sv))

        return a_s * op.pinv(y) + sg_s * op.filter(z, share)

    x = known(times[0], S.randn_like(x, generator)) + x - op.project(x)
    path = repaint_path(len(times) - 1, jump_length, jump_n)
    for i, (k, k_next) in enumerate(zip(path[:-1], path[1:])):
        t, s = times[k], times[k_next]
        if k_next < k:  # jump back: x_t' ~ q(x_t' | x_s), t' = s > t here
            x = jump_back(process, x, t, s, generator)
            continue
        pred = denoiser(x, t)
        z = S.randn_like(x, generator) if s > 0 else None
        x_unknown = S.ancestral_step(x, pred, t, s, process, "small", z)
        z_known = S.randn_like(x, generator) if s > 0 else None
        x = known(s, z_known) + x_unknown - op.project(x_unknown)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": pred.x0})
    return x
