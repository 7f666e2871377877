"""Every sampler, written once against the one noise-level core (k-diffusion style).

A process (``ddpmctl.schedules``: discrete DDPM, VP, sub-VP, VE) gives the marginal
``x_t = alpha_t x_0 + sigma_t eps``, the SDE coefficients ``f(t)``, ``g(t)^2`` and the log-SNR
``lambda_t = log(alpha_t^2 / sigma_t^2)``; a ``diffusion.Denoiser`` gives ``(eps, x0)`` at
``(x_t, t)`` (``score = -eps / sigma_t``) and counts network evaluations (NFE). Every sampler has
the signature

    sample_<name>(denoiser, x, times, generator, callback=None, **options) -> x

``x`` is the starting state at ``times[0]`` (noise times the prior std), ``times`` a decreasing
float64 grid (``make_times``) that ends with 0 when the sampler should finish with a denoising
step, ``generator`` the noise source (``NoiseStream`` for per-sample seeds, a ``torch.Generator``
or None), and ``callback({"i", "t", "x", "x0"})`` is called once per step with the state before
the step and its predicted x0.

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
from typing import Callable

import numpy as np
import torch

from ddpmctl.diffusion import Denoiser, Prediction, posterior, transition
from ddpmctl.errors import InputError
from ddpmctl.schedules import DiscreteProcess, Process

SAMPLERS = ("ddpm", "ddim", "sde", "pc", "ode", "langevin")
SOLVERS = ("euler", "heun", "dpm++2m", "dpm++3m", "rk45")
SPACINGS = ("uniform", "quadratic", "logsnr", "karras")
KARRAS_SIGMA_MAX = 80.0  # EDM (Karras et al. 2022), Table 1: where the karras ramp starts at most
VARIANCES = ("small", "large")

# what each sampler uses by default (chosen by measurement on the exact mixture model:
# benchmarks/sampler_quality.py; docs/sample.md)
DEFAULT_SOLVER = "dpm++3m"
DEFAULT_SPACING = {"ddpm": "uniform", "ddim": "uniform", "sde": "uniform", "pc": "uniform", "ode": "logsnr", "langevin": "uniform"}
DEFAULT_STEPS = {"ddpm": 1000, "ddim": 50, "sde": 1000, "pc": 500, "langevin": 100}
# pc: score_sde's r = 0.16 with one corrector step; langevin: measured (docs/sample.md)
SAMPLER_DEFAULTS = {"pc": {"snr": 0.16, "corrector_steps": 1}, "langevin": {"snr": 0.5, "corrector_steps": 2}}
DEFAULT_ODE_STEPS = {"euler": 50, "heun": 10, "dpm++2m": 20, "dpm++3m": 20, "rk45": 20}


# --------------------------------------------------------------------------------------------
# noise: per-sample streams


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index``'s own generator: a hash of (seed, index) (numpy SeedSequence)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class NoiseStream:
    """Standard normal noise where sample i has its own generator, seeded from (seed, i).

    Each call returns the next noise tensor (B, *shape): row b comes from sample ``indices[b]``'s
    generator. Every generator draws blocks of ``block`` vectors, a size that depends only on the
    sample shape, so sample i sees the same sequence whatever the batch it is in (or the process
    that samples it). Noise is drawn in float32 on the CPU and moved to ``device``/``dtype``.
    """

    def __init__(self, seed: int, indices, shape: tuple, device="cpu", dtype=torch.float32):
        self.indices = [int(i) for i in indices]
        self.shape = tuple(int(s) for s in shape)
        self.device, self.dtype = torch.device(device), dtype
        self.generators = [torch.Generator().manual_seed(sample_seed(seed, i)) for i in self.indices]
        numel = max(1, int(np.prod(self.shape)))
        self.block = max(1, min(256, (1 << 14) // numel))
        self._buf: torch.Tensor | None = None
        self._pos = self.block
        self.draws = 0

    def __call__(self) -> torch.Tensor:
        if self._pos >= self.block:
            self._buf = torch.stack([torch.randn((self.block, *self.shape), generator=g) for g in self.generators], 1)
            self._pos = 0
        out = self._buf[self._pos]
        self._pos += 1
        self.draws += 1
        return out.to(device=self.device, dtype=self.dtype)


def randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    """Noise shaped like x from a NoiseStream, a torch.Generator (one stream for the batch) or None."""
    if isinstance(generator, NoiseStream):
        z = generator()
        if z.shape != x.shape:
            raise ValueError(f"noise stream gives {tuple(z.shape)}, state is {tuple(x.shape)}")
        return z.to(device=x.device, dtype=x.dtype)
    if isinstance(generator, torch.Generator):
        return torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(x.device)
    return torch.randn_like(x)


# --------------------------------------------------------------------------------------------
# time grids


def make_times(process: Process, steps: int, spacing: str = "uniform", rho: float = 7.0, zero: bool = True) -> torch.Tensor:
    """``steps`` decreasing times from ``process.t_max`` (karras: at most sigma~ = 80) to
    ``process.t_min``, then 0 (``zero``):
    each sampler takes one step per interval, so ``steps`` is the number of steps.

    With ``u`` evenly spaced in [0, 1]:

    * ``uniform``:   t = t_max + u (t_min - t_max)
    * ``quadratic``: sqrt(t) uniform (denser near the data; DDIM's and DPM-Solver's "quadratic")
    * ``logsnr``:    lambda(t) uniform (DPM-Solver's default)
    * ``karras``:    sigma~^(1/rho) uniform, sigma~ = sigma/alpha (EDM eq. 5, rho = 7), from
                     min(sigma~(t_max), 80) down to sigma~(t_min). Where sigma~(t_max) > 80 (VP,
                     sub-VP, DDPM: a cosine DDPM's sigma~(1) is about 2e4, and a ramp from there
                     puts most steps at pure noise) the grid starts at the time where sigma~ = 80,
                     EDM's sigma_max, and sampling starts there (``start_std``).

    On a discrete DDPM process the times are its integer steps t = i/T (the network was trained
    only there; like DDIM's respacing): ``discrete_steps`` picks ``steps`` distinct steps that
    follow the spacing as closely as possible, so ``steps`` is always the number of steps (and
    the NFE) and uniform spacing with steps = T is exactly DDPM's t = T, ..., 1.
    """
    steps = int(steps)
    if steps < 1:
        raise InputError(f"--steps: must be >= 1, got {steps}")
    if spacing not in SPACINGS:
        raise InputError(f"--spacing: unknown spacing '{spacing}' (choose from {', '.join(SPACINGS)})")
    if rho <= 0:
        raise InputError(f"--rho: must be > 0, got {rho}")
    discrete = isinstance(process, DiscreteProcess)
    if discrete and steps > process.T:
        raise InputError(f"--steps: this ddpm process has T = {process.T} steps; asked for {steps}")
    t_max, t_min = float(process.t_max), float(process.t_min)
    u = torch.linspace(0.0, 1.0, steps, dtype=torch.float64) if steps > 1 else torch.zeros(1, dtype=torch.float64)
    if spacing == "uniform":
        t = t_max + u * (t_min - t_max)
    elif spacing == "quadratic":
        t = (math.sqrt(t_max) + u * (math.sqrt(t_min) - math.sqrt(t_max))) ** 2
    elif spacing == "logsnr":
        lam_max, lam_min = float(process.log_snr(t_min)), float(process.log_snr(t_max))
        t = process.t_from_log_snr(lam_min + u * (lam_max - lam_min))
    else:  # karras
        s_max, s_min = float(sigma_tilde(process, t_max)), float(sigma_tilde(process, t_min))
        if s_max > KARRAS_SIGMA_MAX:  # start where sigma~ = 80 (EDM), not at t_max
            s_max = KARRAS_SIGMA_MAX
            t_max = float(process.t_from_log_snr(torch.tensor(-2 * math.log(s_max), dtype=torch.float64)))
        s = (s_max ** (1 / rho) + u * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
        t = process.t_from_log_snr(-2 * torch.log(s))
    t = t.clamp(t_min, t_max)
    t[0], t[-1] = t_max, (t_min if steps > 1 else t_max)
    if discrete:
        t = discrete_steps(t * process.T, process.T).to(torch.float64) / process.T
    if zero:
        t = torch.cat([t, torch.zeros(1, dtype=torch.float64)])
    return t


def start_std(process: Process, t0: float) -> float:
    """Standard deviation of the Gaussian that sampling starts from at the grid's first time
    ``t0``: the process's prior at t_max; below it (a karras grid started at sigma~ = 80) the
    noise level sigma(t0), which leaves out the data's share alpha(t0)^2 Var(x0) as the prior
    does (there alpha(t0) <= 1/80)."""
    t0 = float(t0)
    if t0 >= float(process.t_max):
        return float(process.prior_std())
    return float(process.sigma(torch.tensor(t0, dtype=torch.float64)))


def discrete_steps(target: torch.Tensor, T: int) -> torch.Tensor:
    """``K = len(target)`` distinct integer steps in [1, T], decreasing, as close as possible to
    the decreasing real positions ``target`` (first T, last 1): step j is rounded and kept in
    [K - j, T - j], so there is room for the others (where the spacing is denser than the
    integers at the high-noise end, e.g. log-SNR on a cosine schedule, whose clipped last beta
    makes lambda drop fast near t = 1, the steps become T, T - 1, T - 2, ...); then, from the
    low-noise end, a step that collides with the one after it moves up to the next free integer
    (log-SNR near t = 1/T: consecutive steps there). On the exact mixture model the solvers do as
    well on these steps as on the exact (non-integer) times of the spacing (docs/sample.md)."""
    k = len(target)
    if k > T:
        raise InputError(f"--steps: this ddpm process has T = {T} steps; asked for {k}")
    j = torch.arange(k)
    idx = torch.minimum(torch.maximum(torch.round(target).long(), k - j), T - j).tolist()
    for i in range(k - 2, -1, -1):
        idx[i] = max(idx[i], idx[i + 1] + 1)
    return torch.tensor(idx, dtype=torch.long)


def sigma_tilde(process: Process, t) -> torch.Tensor:
    """sigma~(t) = sigma_t / alpha_t: the noise level of x / alpha_t (EDM's sigma; exp(-lambda/2))."""
    return process.sigma(t) / process.alpha(t)


# --------------------------------------------------------------------------------------------
# step primitives (also used by restore.py)


def _f(v) -> float:
    return float(v)


def ancestral_step(
    x: torch.Tensor, pred: Prediction, t, s, process: Process, variance: str = "small", noise: torch.Tensor | None = None
) -> torch.Tensor:
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


def ddim_step(x: torch.Tensor, pred: Prediction, t, s, process: Process, eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
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
    if not 0.0 <= eta <= 1.0:
        raise InputError(f"--eta: must lie in [0, 1], got {eta}")
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
    (VE: x + (sigma_t^2 - sigma_s^2) s + sqrt(sigma_t^2 - sigma_s^2) z; VP: (2 - sqrt(1 - beta)) x + beta s + sqrt(beta) z).
    Corrector, ``corrector_steps`` Langevin steps at s with the signal-to-noise step size
        x <- x + e score(x, s) + sqrt(2 e) z,   e = 2 alpha_{t|s}^2 (r sigma_s)^2,
    which is score_sde's e = 2 alpha (r ||z|| / ||score||)^2 with the norms at their values for a
    correct score (||score|| = ||z|| / sigma); r = ``snr``. NFE = steps + corrector_steps * (steps - 1)."""
    if snr <= 0:
        raise InputError(f"--snr: must be > 0, got {snr}")
    if corrector_steps < 0:
        raise InputError(f"--corrector-steps: must be >= 0, got {corrector_steps}")
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
    if process.kind != "ve":
        raise InputError(f"--sampler langevin does not apply to a {process.kind} model: annealed Langevin dynamics (SMLD) needs a ve process")
    if snr <= 0:
        raise InputError(f"--snr: must be > 0, got {snr}")
    if corrector_steps < 1:
        raise InputError(f"--corrector-steps: langevin needs >= 1 step per noise level, got {corrector_steps}")
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


def dpmpp_update(x: torch.Tensor, x0s: list, lams: list, lam_s: float, sigma_ratio: float, alpha_s: float, order: int) -> torch.Tensor:
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


def ode_dpmpp_2m(denoiser: Denoiser, x, times, callback=None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2; k-diffusion ``sample_dpmpp_2m``): ``ode_dpmpp`` of order 2."""
    return ode_dpmpp(denoiser, x, times, callback, order=2)


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
        sol = solve_ivp(fun, (knots[0], knots[-1]), y0, method="RK45", rtol=rtol, atol=atol, t_eval=knots if callback else None)
        if not sol.success:
            from ddpmctl.errors import RunError

            raise RunError(f"rk45: the ODE solver failed ({sol.message})")
        ys = sol.y
    else:
        ys = y0[:, None]
    if callback is not None:
        for i in range(ys.shape[1]):
            xi = torch.from_numpy(ys[:, i]).reshape(shape).to(device=device, dtype=dtype)
            pred = denoiser(xi, knots[i])
            denoiser.nfe -= 1  # bookkeeping for the trajectory, not part of the sampler
            _cb(callback, i, knots[i], xi, pred)
    x = torch.from_numpy(ys[:, -1].copy()).reshape(shape).to(device=device, dtype=dtype)
    if final_zero:
        x = denoiser(x, knots[-1]).x0
    return x


ODE_SOLVERS: dict[str, Callable] = {
    "euler": ode_euler,
    "heun": ode_heun,
    "dpm++2m": ode_dpmpp_2m,
    "dpm++3m": ode_dpmpp_3m,
    "rk45": ode_rk45,
}


@torch.no_grad()
def sample_ode(
    denoiser: Denoiser, x, times, generator=None, callback=None, solver: str = DEFAULT_SOLVER, rtol: float = 1e-5, atol: float = 1e-5
) -> torch.Tensor:
    """The probability-flow ODE dx = [f x - g^2 score / 2] dt (deterministic: ``generator`` is unused
    after the initial noise) with ``solver`` euler | heun | dpm++2m | dpm++3m | rk45."""
    if solver not in ODE_SOLVERS:
        raise InputError(f"--solver: unknown ODE solver '{solver}' (choose from {', '.join(SOLVERS)})")
    if solver == "rk45":
        if rtol <= 0 or atol <= 0:
            raise InputError(f"--rtol/--atol: must be > 0, got {rtol}, {atol}")
        return ode_rk45(denoiser, x, times, callback, rtol=rtol, atol=atol)
    return ODE_SOLVERS[solver](denoiser, x, times, callback)


SAMPLER_FUNCTIONS: dict[str, Callable] = {
    "ddpm": sample_ddpm,
    "ddim": sample_ddim,
    "sde": sample_sde,
    "pc": sample_pc,
    "ode": sample_ode,
    "langevin": sample_langevin,
}

# the options each sampler takes (name -> keyword of its function)
SAMPLER_OPTIONS = {
    "ddpm": ("variance",),
    "ddim": ("eta",),
    "sde": (),
    "pc": ("snr", "corrector_steps"),
    "ode": ("solver", "rtol", "atol"),
    "langevin": ("snr", "corrector_steps"),
}


def check_sampler(sampler: str, process: Process, solver: str | None = None) -> None:
    """InputError if ``sampler`` (or ``solver``) is unknown or not defined for ``process``."""
    if sampler not in SAMPLER_FUNCTIONS:
        raise InputError(f"--sampler: unknown sampler '{sampler}' (choose from {', '.join(SAMPLERS)})")
    if sampler == "langevin" and process.kind != "ve":
        raise InputError(
            f"--sampler langevin does not apply to a {process.kind} model: annealed Langevin dynamics (SMLD) needs a ve process"
        )
    if solver is not None and solver not in ODE_SOLVERS:
        raise InputError(f"--solver: unknown ODE solver '{solver}' (choose from {', '.join(SOLVERS)})")


def default_steps(sampler: str, process: Process, solver: str | None = None) -> int:
    """Steps a sampler takes when --steps is not given: DDPM on a discrete process uses all T
    steps (Algorithm 2); the ODE's default is about 20 NFE (dpm++3m/2m: 20 steps, heun: 10 steps = 19 NFE)."""
    if sampler == "ode":
        return DEFAULT_ODE_STEPS[solver or DEFAULT_SOLVER]
    n = DEFAULT_STEPS[sampler]
    if isinstance(process, DiscreteProcess):
        return process.T if sampler in ("ddpm", "sde", "pc") else min(n, process.T)
    return n


def expected_nfe(sampler: str, steps: int, solver: str | None = None, corrector_steps: int = 1, zero: bool = True) -> int | None:
    """The NFE a fixed-step run takes (None for rk45, which adapts)."""
    if sampler == "ode":
        solver = solver or DEFAULT_SOLVER
        if solver == "rk45":
            return None
        return 2 * steps - 1 if solver == "heun" else steps
    if sampler == "pc":
        return steps + corrector_steps * (steps - 1)
    if sampler == "langevin":
        return steps * corrector_steps + (1 if zero else 0)
    return steps
