"""The probability-flow ODE and its solvers (Euler, Heun, DPM-Solver++(2M)/(3M), RK45), the ``ode``
sampler that runs one of them; their records are in ``registry``. See ``ddpmctl.samplers`` for the
signature every sampler has."""

from __future__ import annotations

import math

import torch

from ddpmctl.diffusion import Denoiser
from ddpmctl.errors import RunError
from ddpmctl.samplers.ancestral import _cb, _f, _steps, randn_like
from ddpmctl.samplers.registry import DEFAULT_SOLVER, ODE_SOLVERS
from ddpmctl.schedules import sigma_tilde

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


def multistep_x0(x0, x0_prev, lam_t: float, lam_prev: float | None, h: float) -> torch.Tensor:
    """DPM-Solver++(2M)'s D_i = x0 + (x0 - x0_prev) / (2 r), r = (lam_t - lam_prev) / h (Lu et al.
    2022, Algorithm 2); x0 alone on the first step and after a step more than ``RATIO_ORDER_1``
    times as wide in lambda as the previous one."""
    if lam_prev is None or h / (lam_t - lam_prev) > RATIO_ORDER_1:
        return x0
    r = (lam_t - lam_prev) / h
    return x0 + (x0 - x0_prev) / (2 * r)


@torch.no_grad()
def dpmpp_2m(denoiser: Denoiser, x, times, callback=None, eta: float = 0.0, generator=None) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 Algorithm 2 (k-diffusion ``sample_dpmpp_2m``), and for eta > 0
    its SDE variant (k-diffusion ``sample_dpmpp_2m_sde``, ``solver_type="midpoint"``), in
    lambda = log(alpha/sigma), step i from t_{i-1} to t_i with the data predictions x0_{i-1}, x0_{i-2}:

        h_i = lambda_{t_i} - lambda_{t_{i-1}},   r_i = h_{i-1} / h_i
        D_i = (1 + 1/(2 r_i)) x0_{i-1} - 1/(2 r_i) x0_{i-2}     (first step: D_1 = x0_0)
        x_i = (sigma_{t_i} / sigma_{t_{i-1}}) e^{-eta h_i} x_{i-1} - alpha_{t_i} (e^{-(1 + eta) h_i} - 1) D_i
              + sigma_{t_i} sqrt(1 - e^{-2 eta h_i}) z

    eta = 0 is Algorithm 2 (the ODE; no noise is drawn); eta = 1 solves the reverse SDE. The SDE
    form is k-diffusion's update for x~ = x/alpha multiplied by alpha_{t_i}; z is drawn independently
    per step from ``generator`` (``randn_like``), where k-diffusion draws it from a Brownian tree:
    the same distribution. D_i is computed as x0_{i-1} + (x0_{i-1} - x0_{i-2}) / (2 r_i)
    (``multistep_x0``), the same value in the operation order of ``ode_dpmpp``. A step more than
    twice as wide in lambda as the previous one uses D_i = x0_{i-1} (``RATIO_ORDER_1``). The step
    to t = 0 returns x0. NFE = steps."""
    process = denoiser.process
    lam_prev, x0_prev = None, None
    for i, (t, s) in enumerate(_steps(times)):
        pred = denoiser(x, t)
        _cb(callback, i, t, x, pred)
        if s == 0:  # the last step, to t = 0: the denoised x0
            return pred.x0
        lam_t = 0.5 * _f(process.log_snr(t))
        h = 0.5 * _f(process.log_snr(s)) - lam_t
        eh = eta * h
        d = multistep_x0(pred.x0, x0_prev, lam_t, lam_prev, h)
        sig_s = _f(process.sigma(s))
        x = sig_s / _f(process.sigma(t)) * math.exp(-eh) * x - _f(process.alpha(s)) * math.expm1(-h - eh) * d
        if eta > 0:
            x = x + sig_s * math.sqrt(-math.expm1(-2 * eh)) * randn_like(x, generator)
        lam_prev, x0_prev = lam_t, pred.x0
    return x


def ode_dpmpp_2m(denoiser: Denoiser, x, times, callback=None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): ``dpmpp_2m`` with eta = 0."""
    return dpmpp_2m(denoiser, x, times, callback)


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


@torch.no_grad()
def sample_ode(denoiser: Denoiser, x, times, generator=None, callback=None, solver: str = DEFAULT_SOLVER, **options):
    """The probability-flow ODE dx = [f x - g^2 score / 2] dt (deterministic: ``generator`` is unused
    after the initial noise) with ``solver``, one of ``ODE_SOLVERS``, and its ``options``."""
    return ODE_SOLVERS[solver].fn(denoiser, x, times, callback, **options)
