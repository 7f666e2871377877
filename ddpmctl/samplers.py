"""Every sampler, written once against the one noise-level core (k-diffusion style).

A process (``ddpmctl.schedules``: discrete DDPM, VP, sub-VP, VE) gives the marginal
``x_t = alpha_t x_0 + sigma_t eps``, the SDE coefficients ``f(t)``, ``g(t)^2`` and the log-SNR
``lambda_t = log(alpha_t^2 / sigma_t^2)``; a ``diffusion.Denoiser`` gives ``(eps, x0)`` at
``(x_t, t)`` (``score = -eps / sigma_t``) and counts network evaluations (NFE). Every sampler has
the signature

    sample_<name>(denoiser, x, times, generator, callback=None, **options) -> x

``x`` is the starting state at ``times[0]`` (noise times the prior std), ``times`` a decreasing
float64 grid (``make_times``) that ends with 0 when the sampler should finish with a denoising
step, ``generator`` the noise source (``sampling.NoiseStream`` for per-sample seeds, a
``torch.Generator`` or None), and ``callback({"i", "t", "x", "x0"})`` is called once per step with
the state before the step and its predicted x0. Each sampler (and each ODE solver) is one record of
the registry at the end of this module, from which the CLI, the man pages, docs/sample.md's table
and ``expected_nfe`` are derived: adding a sampler touches this file only.

The last step, to t = 0, is a *denoising step* in every sampler: it returns the predicted
``x0 = E[x_0 | x_t]`` (Tweedie). For ddpm/ddim this is what their formulas give at s = 0
(DDPM's Algorithm 2 at t = 1 with z = 0); for Euler/Heun/DPM-Solver it is their step to sigma = 0
(EDM, k-diffusion); for sde, pc and langevin it is score_sde's ``noise_removal`` / NCSNv2's final
denoising step.

Sources: Ho et al. 2020 (DDPM, seeds 000/001/004); Song et al. 2021a (DDIM); Song et al. 2021b
(score SDE: reverse SDE, predictor-corrector, probability-flow ODE; seeds 000/001); Karras et al.
2022 (EDM: Heun, rho-spacing); Lu et al. 2022 (DPM-Solver++); Song & Ermon 2019 (SMLD, annealed
Langevin dynamics; seed 000).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from ddpmctl.diffusion import Denoiser, Prediction, posterior, transition
from ddpmctl.errors import InputError, RunError
from ddpmctl.schedules import SPACINGS, Process, make_times, sigma_tilde, start_std  # noqa: F401 (grids)

VARIANCES = ("small", "large")


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
    eta = 1 makes c^2 the posterior variance, which is the ancestral (DDPM) step."""
    a_s, s_s = _f(process.alpha(s)), _f(process.sigma(s))
    var = eta**2 * _f(posterior(process, s, t)[2]) if eta > 0 and s_s > 0 else 0.0
    out = a_s * pred.x0 + math.sqrt(max(s_s**2 - var, 0.0)) * pred.eps
    if var > 0 and noise is not None:
        out = out + math.sqrt(var) * noise
    return out


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


# -- the probability-flow ODE ------------------------------------------------------------------
#
# dx = [f(t) x - g(t)^2 score / 2] dt (Song et al. 2021b eq. 13; seed 001). With x~ = x / alpha_t and
# sigma~ = sigma_t / alpha_t (f = d log alpha / dt, g^2 = d sigma^2/dt - 2 f sigma^2) it becomes
#     dx~ / dsigma~ = (x~ - x0(x, t)) / sigma~ = eps(x, t)                      (EDM eq. 4 with s = 1)
# and, in lambda = log(alpha/sigma), x_t / sigma_t = x_s / sigma_s + int e^lambda x0 dlambda (DPM-Solver++).


@torch.no_grad()
def ode_euler(denoiser: Denoiser, x, times, callback=None) -> torch.Tensor:
    """Euler in sigma~: x~_s = x~_t + (sigma~_s - sigma~_t) eps. Identical to DDIM with eta = 0
    (Song et al. 2021a section 4.3; Karras et al. 2022). NFE = steps."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        a_t, a_s = _f(process.alpha(t)), _f(process.alpha(s))
        st, ss = _f(sigma_tilde(process, t)), _f(sigma_tilde(process, s))
        x = a_s * (x / a_t + (ss - st) * pred.eps)
    return x


@torch.no_grad()
def ode_heun(denoiser: Denoiser, x, times, callback=None) -> torch.Tensor:
    """Heun's 2nd-order method in sigma~ (EDM Algorithm 1, deterministic, S_churn = 0):
        d = eps(x_t, t);  x~' = x~_t + (sigma~_s - sigma~_t) d
        x~_s = x~_t + (sigma~_s - sigma~_t) (d + eps(alpha_s x~', s)) / 2     (Euler when s = 0)
    NFE = 2 steps - 1."""
    process = denoiser.process
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        a_t, a_s = _f(process.alpha(t)), _f(process.alpha(s))
        st, ss = _f(sigma_tilde(process, t)), _f(sigma_tilde(process, s))
        xt = x / a_t
        x_next = xt + (ss - st) * pred.eps
        if s > 0:
            d_next = denoiser(a_s * x_next, s).eps
            x_next = xt + (ss - st) * 0.5 * (pred.eps + d_next)
        x = a_s * x_next
    return x


def _phis(h: float) -> tuple[float, float, float]:
    """phi_1 = e^{-h} - 1, phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2 (series for tiny h)."""
    if abs(h) < 1e-4:
        return math.expm1(-h), h / 2 - h * h / 6 + h**3 / 24, -h / 6 + h * h / 24 - h**3 / 120
    phi1 = math.expm1(-h)
    phi2 = phi1 / h + 1
    return phi1, phi2, phi2 / h - 0.5


# a multistep step whose lambda-width h exceeds the previous one's by these factors drops to
# order 2 / order 1 (extrapolating past x0 far beyond them is unreliable; a step-ratio safeguard
# that never triggers on the default log-SNR grid, whose steps are all equal)
RATIO_ORDER_2, RATIO_ORDER_1 = 1.5, 2.0


def dpmpp_update(
    x: torch.Tensor, x0s: list, lams: list, lam_s: float, sigma_ratio: float, alpha_s: float, order: int
) -> torch.Tensor:
    """One DPM-Solver++ multistep update from lambda_t = ``lams[-1]`` to ``lam_s`` (``sigma_ratio``
    = sigma_s / sigma_t, ``alpha_s``), with the predicted x0 ``x0s`` at ``lams`` (newest last; the
    last ``order`` are used). See ``ode_dpmpp``."""
    h = lam_s - lams[-1]
    phi1, phi2, phi3 = _phis(h)
    m0 = x0s[-1]
    if order == 1:
        return sigma_ratio * x - alpha_s * phi1 * m0
    m1 = x0s[-2]
    r0 = (lams[-1] - lams[-2]) / h
    d0 = (m0 - m1) / r0
    if order == 2:
        return sigma_ratio * x - alpha_s * phi1 * (m0 + 0.5 * d0)
    m2 = x0s[-3]
    r1 = (lams[-2] - lams[-3]) / h
    d1 = (m1 - m2) / r1
    D2 = (d0 - d1) / (r0 + r1)
    D1 = d0 + r0 * D2
    return sigma_ratio * x - alpha_s * phi1 * m0 + alpha_s * phi2 * D1 - 2 * alpha_s * phi3 * D2


@torch.no_grad()
def ode_dpmpp(denoiser: Denoiser, x, times, callback=None, order: int = 2) -> torch.Tensor:
    """DPM-Solver++(kM) (Lu et al. 2022), the multistep solver of order ``order`` = 1, 2 or 3 in
    lambda = log(alpha/sigma) with data prediction. Exactly,

        x_s = (sigma_s / sigma_t) x_t + alpha_s int_0^h e^{tau - h} x0(lambda_t + tau) dtau,   h = lambda_s - lambda_t,

    and x0 is interpolated through the current and the previous k - 1 evaluations,
    x0(lambda_t + tau) = m0 + D1 tau / h + D2 tau^2 / h^2 (m0 = x0_t; divided differences of
    m0, m1, m2 at lambda_t, lambda_t - h0, lambda_t - h0 - h1; r_i = h_i / h):

        order 1: x_s = (sigma_s / sigma_t) x_t - alpha_s phi_1 m0                      (= DDIM)
        order 2: ... - alpha_s phi_1 (m0 + d0 / 2)                           (Lu et al. Algorithm 2)
        order 3: ... - alpha_s phi_1 m0 + alpha_s phi_2 D1 - 2 alpha_s phi_3 D2,
                 D1 = d0 + r0 D2,  D2 = (d0 - d1) / (r0 + r1),  d0 = (m0 - m1) / r0,  d1 = (m1 - m2) / r1

    with phi_1 = e^{-h} - 1, phi_2 = phi_1 / h + 1, phi_3 = phi_2 / h - 1/2. Order 3 integrates
    the quadratic exactly (so a step is exact when x0 is quadratic in lambda); order 2 keeps Lu et
    al.'s -phi_1 / 2 in place of the exact phi_2 (better on measurement: docs/sample.md). A step
    starts at order 1 and rises as evaluations accumulate; a step more than 1.5 (2) times as wide
    in lambda as the previous one uses order <= 2 (1). The step to t = 0 returns x0_t. NFE = steps."""
    if order not in (1, 2, 3):
        raise ValueError(f"DPM-Solver++ order must be 1, 2 or 3, got {order}")
    process = denoiser.process
    lams: list[float] = []  # lambda and predicted x0 of the last evaluations, newest last
    x0s: list[torch.Tensor] = []
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        if s == 0:
            x = pred.x0
            continue
        lam_t, lam_s = 0.5 * _f(process.log_snr(t)), 0.5 * _f(process.log_snr(s))
        lams, x0s = (lams + [lam_t])[-order:], (x0s + [pred.x0])[-order:]
        k = len(lams)
        if k > 1:
            q = (lam_s - lam_t) / (lam_t - lams[-2])
            k = 1 if q > RATIO_ORDER_1 else min(k, 2) if q > RATIO_ORDER_2 else k
        x = dpmpp_update(x, x0s, lams, lam_s, _f(process.sigma(s)) / _f(process.sigma(t)), _f(process.alpha(s)), k)
    return x


@torch.no_grad()
def ode_dpmpp_2m(denoiser: Denoiser, x, times, callback=None) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 Algorithm 2 (k-diffusion ``sample_dpmpp_2m``), in
    lambda = log(alpha/sigma), step i from t_{i-1} to t_i with the data predictions x0_{i-1}, x0_{i-2}:

        h_i = lambda_{t_i} - lambda_{t_{i-1}},   r_i = h_{i-1} / h_i
        D_i = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2}     (first step: D_1 = x0_0)
        x_i = (sigma_{t_i} / sigma_{t_{i-1}}) x_{i-1} - alpha_{t_i} (e^{-h_i} - 1) D_i

    D_i is computed as x0_{i-1} + (x0_{i-1} - x0_{i-2}) / (2 r_i), the same value in the operation
    order of ``ode_dpmpp``. A step more than twice as wide in lambda as the previous one uses
    D_i = x0_{i-1} (``RATIO_ORDER_1``). The step to t = 0 returns x0. NFE = steps."""
    process = denoiser.process
    lam_prev, x0_prev = None, None
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        if s == 0:  # the last step, to t = 0: the denoised x0
            return pred.x0
        lam_t = 0.5 * _f(process.log_snr(t))
        h = 0.5 * _f(process.log_snr(s)) - lam_t
        d = pred.x0
        if lam_prev is not None and not h / (lam_t - lam_prev) > RATIO_ORDER_1:
            r = (lam_t - lam_prev) / h
            d = pred.x0 + (pred.x0 - x0_prev) / (2 * r)
        x = _f(process.sigma(s)) / _f(process.sigma(t)) * x - _f(process.alpha(s)) * math.expm1(-h) * d
        lam_prev, x0_prev = lam_t, pred.x0
    return x


def ode_dpmpp_3m(denoiser: Denoiser, x, times, callback=None) -> torch.Tensor:
    """DPM-Solver++(3M) (Lu et al. 2022): ``ode_dpmpp`` of order 3."""
    return ode_dpmpp(denoiser, x, times, callback, order=3)


@torch.no_grad()
def ode_rk45(denoiser: Denoiser, x, times, callback=None, rtol: float = 1e-5, atol: float = 1e-5) -> torch.Tensor:
    """Adaptive Runge-Kutta 4(5) (scipy ``solve_ivp``, Dormand-Prince) on dx/dt = f x - g^2 score / 2
    = f(t) x + g(t)^2 eps / (2 sigma_t), from times[0] to the last time > 0, then the denoising step
    (score_sde's ``get_ode_sampler``, rtol = atol = 1e-5). NFE = the evaluations it used (+1).

    The whole batch is one ODE system, so step sizes (and results, within the tolerances) depend
    on the batch. With a callback, the x0 of the reported states costs evaluations that are not
    counted in the NFE."""
    from scipy.integrate import solve_ivp

    process = denoiser.process
    tl = [float(v) for v in times]
    final_zero = tl[-1] == 0.0
    knots = tl[:-1] if final_zero else tl
    shape, dtype, device = x.shape, x.dtype, x.device

    def fun(t, y):
        xt = torch.from_numpy(y).reshape(shape).to(device=device, dtype=dtype)
        eps = denoiser(xt, t).eps
        drift = _f(process.f(t)) * xt + _f(process.g2(t)) / (2 * _f(process.sigma(t))) * eps
        return drift.detach().to(torch.float64).cpu().numpy().reshape(-1)

    y0 = x.detach().to(torch.float64).cpu().numpy().reshape(-1)
    if len(knots) > 1 and knots[0] != knots[-1]:
        sol = solve_ivp(
            fun, (knots[0], knots[-1]), y0, method="RK45", rtol=rtol, atol=atol, t_eval=knots if callback else None
        )
        if not sol.success:
            raise RunError(f"rk45: the ODE solver failed ({sol.message})")
        ys = sol.y
    else:
        ys = y0[:, None]
    if callback is not None:
        with denoiser.uncounted():  # the x0 of the reported states: bookkeeping, not the sampler's cost
            for i in range(ys.shape[1]):
                xi = torch.from_numpy(ys[:, i]).reshape(shape).to(device=device, dtype=dtype)
                _cb(callback, i, knots[i], xi, denoiser(xi, knots[i]))
    x = torch.from_numpy(ys[:, -1].copy()).reshape(shape).to(device=device, dtype=dtype)
    if final_zero:
        x = denoiser(x, knots[-1]).x0
    return x


# --------------------------------------------------------------------------------------------
# the registry: one record per ODE solver and per sampler; the CLI, the man pages, docs/sample.md's
# table and ``expected_nfe`` are derived from it. Default steps and solver: docs/sample.md.


def _check_tolerances(options: Mapping[str, Any]) -> None:
    if options["rtol"] <= 0 or options["atol"] <= 0:
        raise InputError(f"--rtol/--atol: must be > 0, got {options['rtol']}, {options['atol']}")


@dataclass(frozen=True)
class Solver:
    """An ODE solver ``fn(denoiser, x, times, callback=None, **options)`` of ``sample_ode``."""

    name: str
    fn: Callable
    steps: int  # default steps
    nfe: Callable[[int], int | None]  # NFE of a run of k steps (None: adaptive)
    nfe_text: str
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default
    check: Callable[[Mapping[str, Any]], None] | None = None
    free_report: bool = True  # False: the callback's x0 costs extra (uncounted) evaluations


ODE_SOLVERS: dict[str, Solver] = {
    s.name: s
    for s in (
        Solver("euler", ode_euler, 50, lambda k: k, "steps", "Euler in sigma~ (= DDIM eta 0)"),
        Solver("heun", ode_heun, 10, lambda k: 2 * k - 1, "2 steps - 1", "Heun, EDM Algorithm 1"),
        Solver("dpm++2m", ode_dpmpp_2m, 20, lambda k: k, "steps", "DPM-Solver++(2M), Lu et al. Algorithm 2"),
        Solver("dpm++3m", ode_dpmpp_3m, 20, lambda k: k, "steps", "DPM-Solver++(3M)"),
        Solver("rk45", ode_rk45, 20, lambda k: None, "adaptive", "adaptive Runge-Kutta 4(5), scipy",
               options={"rtol": 1e-5, "atol": 1e-5}, check=_check_tolerances, free_report=False),
    )
}  # fmt: skip
SOLVERS = tuple(ODE_SOLVERS)
DEFAULT_SOLVER = "dpm++3m"


@torch.no_grad()
def sample_ode(denoiser: Denoiser, x, times, generator=None, callback=None, solver: str = DEFAULT_SOLVER, **options):
    """The probability-flow ODE dx = [f x - g^2 score / 2] dt (deterministic: ``generator`` is unused
    after the initial noise) with ``solver``, one of ``ODE_SOLVERS``, and its ``options``."""
    return ODE_SOLVERS[solver].fn(denoiser, x, times, callback, **options)


def _check_eta(options: Mapping[str, Any]) -> None:
    if not 0.0 <= options["eta"] <= 1.0:
        raise InputError(f"--eta: must lie in [0, 1], got {options['eta']}")


def _check_variance(options: Mapping[str, Any]) -> None:
    if options["variance"] not in VARIANCES:
        raise InputError(f"--variance: unknown variance '{options['variance']}' (choose from {', '.join(VARIANCES)})")


def _check_langevin(options: Mapping[str, Any], least: int) -> None:
    if options["snr"] <= 0:
        raise InputError(f"--snr: must be > 0, got {options['snr']}")
    if options["corrector_steps"] < least:
        raise InputError(f"--corrector-steps: must be >= {least}, got {options['corrector_steps']}")


@dataclass(frozen=True)
class Sampler:
    """A sampler ``fn(denoiser, x, times, generator, callback=None, **options)`` and what it needs."""

    name: str
    fn: Callable
    steps: int | None  # default steps (None: the solver's)
    nfe: Callable[[int, Mapping[str, Any]], int | None]  # NFE of k steps with these options
    nfe_text: str
    help: str
    source: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default
    check: Callable[[Mapping[str, Any]], None] | None = None
    spacing: str = "uniform"  # default spacing
    all_steps: bool = False  # default on a process with T steps: all of them (else at most T)
    processes: tuple[str, ...] = ()  # the process kinds it is defined for (empty: every one)
    why: str = ""  # why it needs those processes

    def check_process(self, process: Process) -> None:
        if self.processes and process.kind not in self.processes:
            raise InputError(f"--sampler {self.name} does not apply to a {process.kind} model: {self.why}")

    def default_steps(self, process: Process, solver: Solver | None = None) -> int:
        """Steps when --steps is not given: on a process with T steps all T (``all_steps``: DDPM's
        Algorithm 2) or at most T; the ODE's default is the solver's (about 20 NFE)."""
        n = solver.steps if self.steps is None else self.steps
        if process.max_steps is None:
            return n
        return process.max_steps if self.all_steps else min(n, process.max_steps)


def _solver_nfe(k: int, options: Mapping[str, Any]) -> int | None:
    return ODE_SOLVERS[options["solver"]].nfe(k)


def _solver_nfe_text() -> str:
    """``euler, dpm++2m, dpm++3m: steps; heun: 2 steps - 1; rk45: adaptive``."""
    texts = dict.fromkeys(s.nfe_text for s in ODE_SOLVERS.values())
    return "; ".join(f"{', '.join(n for n, s in ODE_SOLVERS.items() if s.nfe_text == t)}: {t}" for t in texts)


SAMPLERS_BY_NAME: dict[str, Sampler] = {
    s.name: s
    for s in (
        Sampler("ddpm", sample_ddpm, 1000, lambda k, o: k, "steps", "ancestral, Algorithm 2",
                "Ho et al. 2020, Algorithm 2 (seeds 000, 001, 004)",
                options={"variance": "small"}, check=_check_variance, all_steps=True),
        Sampler("ddim", sample_ddim, 50, lambda k, o: k, "steps", "--eta", "Song, Meng & Ermon 2021 (DDIM), eq. 12, 16",
                options={"eta": 0.0}, check=_check_eta),
        Sampler("sde", sample_sde, 1000, lambda k, o: k, "steps", "reverse-SDE Euler-Maruyama",
                "Song et al. 2021 (score SDE), eq. 6; Euler-Maruyama (seeds 000, 001)", all_steps=True),
        Sampler("pc", sample_pc, 500, lambda k, o: k + o["corrector_steps"] * (k - 1), "steps + M (steps - 1)",
                "predictor-corrector", "Song et al. 2021, Algorithms 2-3 (seed 001)",
                options={"snr": 0.16, "corrector_steps": 1}, check=lambda o: _check_langevin(o, 0), all_steps=True),
        Sampler("ode", sample_ode, None, _solver_nfe, _solver_nfe_text(), "probability-flow ODE, --solver",
                "Song et al. 2021 eq. 13; Karras et al. 2022; Lu et al. 2022",
                options={"solver": DEFAULT_SOLVER}, spacing="logsnr"),
        Sampler("langevin", sample_langevin, 100, lambda k, o: k * o["corrector_steps"] + 1, "levels x M + 1",
                "annealed Langevin", "Song & Ermon 2019, Algorithm 1 (SMLD, seed 000)",
                options={"snr": 0.5, "corrector_steps": 2}, check=lambda o: _check_langevin(o, 1),
                processes=("ve",), why="annealed Langevin dynamics (SMLD) needs a ve process"),
    )
}  # fmt: skip
SAMPLERS = tuple(SAMPLERS_BY_NAME)


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS_BY_NAME:
        raise InputError(f"--sampler: unknown sampler '{name}' (choose from {', '.join(SAMPLERS)})")
    return SAMPLERS_BY_NAME[name]


def get_solver(name: str) -> Solver:
    if name not in ODE_SOLVERS:
        raise InputError(f"--solver: unknown ODE solver '{name}' (choose from {', '.join(SOLVERS)})")
    return ODE_SOLVERS[name]


@dataclass(frozen=True)
class Plan:
    """A checked sampler run: the record(s), the time grid and the sampler function's options."""

    sampler: Sampler
    solver: Solver | None
    spacing: str
    times: torch.Tensor
    options: dict  # keywords of ``sampler.fn`` (the solver's name and options included)

    @property
    def steps(self) -> int:
        return len(self.times) - 1

    @property
    def nfe(self) -> int | None:
        """Network evaluations per sample (None for an adaptive solver)."""
        return self.sampler.nfe(self.steps, self.options)

    @property
    def free_report(self) -> bool:
        """Whether reporting each step's state and x0 (trajectories, progress) costs nothing extra."""
        return self.solver is None or self.solver.free_report

    def run(self, denoiser: Denoiser, x, generator=None, callback=None) -> torch.Tensor:
        return self.sampler.fn(denoiser, x, self.times, generator, callback=callback, **self.options)


def _options(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict:
    """``defaults`` with the ``given`` values that are not None, cast to the default's type."""
    return {k: v if given.get(k) is None else type(v)(given[k]) for k, v in defaults.items()}


def plan(
    process: Process, sampler: str, steps: int | None = None, spacing: str | None = None, rho: float = 7.0, **options
) -> Plan:
    """Check ``sampler`` and its ``options`` (``solver``, ``eta``, ``snr``, ...; those it does not
    take are ignored, except ``solver``) against ``process``, fill in the defaults and make the
    time grid."""
    record = get_sampler(sampler)
    record.check_process(process)
    solver = None
    if "solver" in record.options:
        solver = get_solver(options.get("solver") or record.options["solver"])
    elif options.get("solver") is not None:
        raise InputError(f"--solver: only the ode sampler takes a solver (got --sampler {sampler})")
    kwargs = {**_options(record.options, options), **(_options(solver.options, options) if solver else {})}
    for check in (record.check, solver.check if solver else None):
        if check is not None:
            check(kwargs)
    steps = record.default_steps(process, solver) if steps is None else int(steps)
    spacing = spacing or record.spacing
    return Plan(record, solver, spacing, make_times(process, steps, spacing, rho=rho), kwargs)


def default_steps(sampler: str, process: Process, solver: str | None = None) -> int:
    """Steps a sampler takes when --steps is not given (``Sampler.default_steps``)."""
    record = get_sampler(sampler)
    return record.default_steps(process, get_solver(solver or DEFAULT_SOLVER) if record.steps is None else None)


def expected_nfe(sampler: str, steps: int, solver: str | None = None, **options) -> int | None:
    """The NFE of a ``steps``-step run (None for an adaptive solver), options at their defaults
    unless given."""
    record = get_sampler(sampler)
    return record.nfe(int(steps), _options(record.options, dict(options, solver=solver)))


def markdown_table() -> str:
    """docs/sample.md's table of samplers (a test keeps the two equal)."""
    rows = ["| sampler | defined for | NFE | source |", "|---|---|---|---|"]
    for s in SAMPLERS_BY_NAME.values():
        where = " and ".join(k.upper() for k in s.processes) + " only" if s.processes else "every process"
        rows.append(f"| `{s.name}` | {where} | {s.nfe_text} | {s.source} |")
    return "\n".join(rows) + "\n"
