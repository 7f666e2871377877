"""Noise schedules and diffusion processes: one noise-level core for every process.

Beta schedules (discrete DDPM, Ho et al. 2020; seeds 002, 003, 004) give ``beta_1..beta_T`` and
``alpha_bar_t = prod_{s<=t} (1 - beta_s)``; they are defined in ``ddpmctl.betas`` (numpy only, so
that commands which need no torch start fast) and re-exported here. Continuous processes (Song et
al. 2021) are the VP and VE SDEs of seeds 000 and 001 and the sub-VP SDE (Song et al. 2021,
section 3.4; in no seed), ``dx = f(t) x dt + g(t) dw``. EDM's process (Karras et al. 2022, Table 1) is the VE process
with sigma(t) = t, trained at log-normal noise levels.

Every process, discrete or continuous, exposes the same thing: its marginal
``x_t = alpha(t) x_0 + sigma(t) eps`` on a continuous time ``t`` in ``[0, 1]`` (EDM's: ``t = sigma``
in ``[0, 80]``) (``alpha(0) = 1``,
``sigma(0) = 0``), the SDE coefficients ``f(t)`` and ``g(t)^2``, and the network's noise
conditioning ``c_noise(t)``. A discrete process with T steps puts step ``i = 1..T`` at ``t = i / T``
and interpolates ``log alpha_bar`` linearly in between (as DPM-Solver does), so samplers written
against ``alpha``/``sigma`` work on discrete and continuous models alike, and on the grid points
they reproduce the discrete formulas exactly.
"""

from __future__ import annotations

import abc
import math
from pathlib import Path

import numpy as np
import torch

from ddpmctl.betas import (  # noqa: F401  (re-exported: the beta schedules are part of this module's API)
    PROCESS_KINDS,
    SCHEDULE_OPTIONS,
    SCHEDULES,
    SPACINGS,
    ScheduleSummary,
    check_betas,
    cosine_betas,
    get_betas,
    is_schedule_file,
    linear_betas,
    power_betas,
    quadratic_betas,
    sigmoid_betas,
    summarize,
    wave_betas,
)
from ddpmctl.errors import InputError

# --------------------------------------------------------------------------------------------
# processes


def _t(t) -> torch.Tensor:
    if isinstance(t, torch.Tensor):
        return t.to(torch.float64)
    return torch.as_tensor(t, dtype=torch.float64)


class Process(abc.ABC):
    """A diffusion process with marginal ``x_t = alpha(t) x_0 + sigma(t) eps``, t in [0, t_max]
    (t_max = 1, except EDM's t = sigma up to 80).

    Subclasses define ``log_alpha``, ``sigma``, ``f`` (drift coefficient) and ``g2`` (squared
    diffusion) as float64 tensor functions of t, plus ``c_noise`` (what the network is told).
    """

    kind: str = ""
    t_min: float = 0.0  # smallest time trained and sampled (eps of the continuous SDEs, 1/T for DDPM)
    t_max: float = 1.0
    max_steps: int | None = None  # most steps a sampling grid can have (a discrete process: T)
    default_spacing: str = "uniform"  # the grid of a sampler whose own default is "uniform" (make_times)
    sigma_data: float | None = None  # the data std of EDM's preconditioning (prediction "edm"): EDM only

    # -- time: where the network was trained ---------------------------------------------------
    def round_t(self, t, up: bool = False) -> torch.Tensor:
        """The trained time nearest to ``t`` (``up``: the smallest one >= t), as float64 (EDM's
        ``round_sigma``, k-diffusion's ``quantize``); every t in [0, 1] for a continuous process."""
        return _t(t)

    def grid(self, t: torch.Tensor) -> torch.Tensor:
        """A decreasing time grid (first t_max, last t_min) moved to trained times without
        merging any two of them; unchanged for a continuous process."""
        return t

    def training_times(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` training times (float64, on the CPU; ``generator`` a CPU generator): uniform in
        [t_min, t_max] (Song et al. 2021)."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return self.t_min + (self.t_max - self.t_min) * u

    # -- marginal ---------------------------------------------------------------------------
    @abc.abstractmethod
    def log_alpha(self, t) -> torch.Tensor: ...

    @abc.abstractmethod
    def sigma(self, t) -> torch.Tensor: ...

    def alpha(self, t) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def log_snr(self, t) -> torch.Tensor:
        """lambda(t) = log(alpha^2 / sigma^2), decreasing in t."""
        return 2 * (self.log_alpha(t) - torch.log(self.sigma(t)))

    def t_from_log_snr(self, lam) -> torch.Tensor:
        """Inverse of ``log_snr`` on [0, 1] (bisection; exact to float64 resolution)."""
        lam = _t(lam)
        lo = torch.zeros_like(lam)
        hi = torch.ones_like(lam)
        for _ in range(64):
            mid = (lo + hi) / 2
            above = self.log_snr(mid) > lam  # log_snr decreases: the solution is later than mid
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return (lo + hi) / 2

    # -- SDE dx = f(t) x dt + g(t) dw --------------------------------------------------------
    @abc.abstractmethod
    def f(self, t) -> torch.Tensor: ...

    @abc.abstractmethod
    def g2(self, t) -> torch.Tensor: ...

    # -- prior and network conditioning -----------------------------------------------------
    def prior_std(self) -> float:
        """Standard deviation of the Gaussian that sampling starts from at t_max."""
        return 1.0

    @abc.abstractmethod
    def c_noise(self, t) -> torch.Tensor:
        """The scalar the network is conditioned on (a time index, a time, or log sigma)."""

    @property
    def time_embedding(self) -> str:
        """The embedding the network should use for ``c_noise``: sinusoidal or fourier."""
        return "fourier"

    @abc.abstractmethod
    def to_dict(self) -> dict: ...

    def describe(self) -> str:
        return self.kind


class DiscreteProcess(Process):
    """DDPM with betas beta_1..beta_T: step i sits at t = i/T, alpha(t)^2 = alpha_bar_i, and
    log alpha_bar is linear in t between steps (alpha_bar_0 = 1 at t = 0)."""

    kind = "ddpm"

    def __init__(self, betas, schedule: str = "custom"):
        self.betas = check_betas(np.asarray(betas, dtype=np.float64), schedule)
        self.T = len(self.betas)
        self.schedule = schedule
        self.alpha_bar = np.cumprod(1 - self.betas)
        # log alpha_bar on the grid t = 0, 1/T, ..., 1 (index 0 is t = 0)
        self._log_ab = torch.from_numpy(np.concatenate([[0.0], np.log(self.alpha_bar)]))
        self.t_min = 1.0 / self.T
        self.t_max = 1.0
        self.max_steps = self.T

    def round_t(self, t, up: bool = False) -> torch.Tensor:
        """The grid time i/T nearest to t (``up``: the first at or above t; 1e-9 absorbs rounding)."""
        pos = _t(t) * self.T
        return (torch.ceil(pos - 1e-9) if up else torch.round(pos)) / self.T

    def grid(self, t: torch.Tensor) -> torch.Tensor:
        """The steps of ``discrete_steps`` for the real positions t T, as times i/T."""
        return discrete_steps(t * self.T, self.T).to(torch.float64) / self.T

    def training_times(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Uniform over the T grid times: step index i ~ U{0..T-1}, t = (i + 1) / T (Ho et al.
        Algorithm 1)."""
        i = torch.randint(0, self.T, (n,), generator=generator)
        return self.index_to_t(i)

    def _interp(self, t):
        t = _t(t).clamp(0.0, 1.0)
        pos = t * self.T
        i = pos.floor().clamp(max=self.T - 1).long()
        w = pos - i
        lab = self._log_ab
        return lab[i] * (1 - w) + lab[i + 1] * w, (lab[i + 1] - lab[i]) * self.T

    def log_alpha(self, t):
        return 0.5 * self._interp(t)[0]

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(self._interp(t)[0]))

    def f(self, t):
        return 0.5 * self._interp(t)[1]

    def g2(self, t):
        # d sigma^2/dt - 2 f sigma^2 = -d log alpha_bar / dt  (the continuous-time beta(t))
        return -self._interp(t)[1]

    def c_noise(self, t):
        return _t(t) * self.T - 1  # the step index 0..T-1 of DDPM's code

    @property
    def time_embedding(self) -> str:
        return "sinusoidal"

    def index_to_t(self, i) -> torch.Tensor:
        """Time of DDPM step index i (0-based, i = 0..T-1 is step 1..T)."""
        return (_t(i) + 1) / self.T

    def to_dict(self) -> dict:
        return {"kind": "ddpm", "schedule": self.schedule, "betas": [float(b) for b in self.betas]}

    def describe(self) -> str:
        return f"ddpm (T={self.T}, schedule {self.schedule})"


class VPSDE(Process):
    """Variance preserving: beta(t) = b_min + t (b_max - b_min), dx = -beta/2 x dt + sqrt(beta) dw.
    alpha(t) = exp(-t^2 (b_max - b_min)/4 - t b_min/2), sigma^2 = 1 - alpha^2."""

    kind = "vp"

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, eps: float = 1e-3):
        if not (0 <= beta_min < beta_max):
            raise InputError(f"vp: need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max, self.t_min = float(beta_min), float(beta_max), float(eps)

    def beta(self, t):
        return self.beta_min + _t(t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t):
        t = _t(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def sigma(self, t):
        return torch.sqrt(-torch.expm1(2 * self.log_alpha(t)))

    def f(self, t):
        return -0.5 * self.beta(t)

    def g2(self, t):
        return self.beta(t)

    def c_noise(self, t):
        return _t(t)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "beta_min": self.beta_min, "beta_max": self.beta_max, "eps": self.t_min}

    def describe(self) -> str:
        return f"{self.kind} SDE (beta {self.beta_min}..{self.beta_max})"


class SubVPSDE(VPSDE):
    """Sub-VP: same drift as VP, g^2 = beta(t) (1 - exp(-2 int beta)), sigma(t) = 1 - alpha(t)^2."""

    kind = "subvp"

    def sigma(self, t):
        return -torch.expm1(2 * self.log_alpha(t))

    def g2(self, t):
        return self.beta(t) * -torch.expm1(4 * self.log_alpha(t))


class VESDE(Process):
    """Variance exploding (SMLD): sigma(t) = s_min (s_max/s_min)^t, alpha = 1, f = 0,
    g^2 = d sigma^2/dt = 2 sigma^2 log(s_max/s_min)."""

    kind = "ve"

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, eps: float = 1e-5):
        if not (0 < sigma_min < sigma_max):
            raise InputError(f"ve: need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max, self.t_min = float(sigma_min), float(sigma_max), float(eps)

    def log_alpha(self, t):
        return torch.zeros_like(_t(t))

    def sigma(self, t):
        t = _t(t)
        s = self.sigma_min * (self.sigma_max / self.sigma_min) ** t
        return torch.where(t > 0, s, torch.zeros_like(s))  # sigma(0) = 0: the clean data

    def f(self, t):
        return torch.zeros_like(_t(t))

    def g2(self, t):
        return 2 * self.sigma(t) ** 2 * math.log(self.sigma_max / self.sigma_min)

    def t_from_log_snr(self, lam):
        # lambda = -2 log sigma  =>  t = (log sigma - log s_min) / log(s_max / s_min)
        return (-0.5 * _t(lam) - math.log(self.sigma_min)) / math.log(self.sigma_max / self.sigma_min)

    def prior_std(self) -> float:
        return self.sigma_max

    def c_noise(self, t):
        return torch.log(self.sigma(_t(t).clamp(min=1e-12)))

    def to_dict(self) -> dict:
        return {"kind": "ve", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "eps": self.t_min}

    def describe(self) -> str:
        return f"ve SDE (sigma {self.sigma_min}..{self.sigma_max})"


class EDMProcess(VESDE):
    """EDM (Karras et al. 2022, Table 1, "Ours"): the VE process with sigma(t) = t, s(t) = 1, so the
    time *is* the noise level, t in [sigma_min, sigma_max] = [0.002, 80]; alpha = 1, f = 0,
    g^2 = d sigma^2/dt = 2 t (the PF-ODE dx/dt = -t score = (x - D(x; t)) / t, EDM eq. 4). Training
    draws ln sigma ~ N(P_mean, P_std^2) (Table 1, "Noise distribution"); the network sees
    c_noise = ln(sigma) / 4; ``sigma_data`` is the data std that the "edm" parameterisation's
    preconditioning assumes (``diffusion.edm_precond``)."""

    kind = "edm"
    default_spacing = "karras"  # EDM eq. 5; uniform in t = sigma would spend every step at high noise
    KEYS = ("sigma_min", "sigma_max", "p_mean", "p_std", "sigma_data")

    def __init__(self, sigma_min=0.002, sigma_max=80.0, p_mean=-1.2, p_std=1.2, sigma_data=0.5):
        if not (0 < sigma_min < sigma_max < math.inf and p_std > 0 and sigma_data > 0 and math.isfinite(p_mean)):
            raise InputError(
                "edm: need 0 < sigma_min < sigma_max < inf, p_std > 0, sigma_data > 0 and a finite p_mean, got "
                f"{sigma_min}, {sigma_max}, {p_std}, {sigma_data}, {p_mean}"
            )
        super().__init__(sigma_min, sigma_max, eps=sigma_min)  # t = sigma: t_min = sigma_min
        self.t_max = self.sigma_max
        self.p_mean, self.p_std, self.sigma_data = float(p_mean), float(p_std), float(sigma_data)

    def training_times(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """sigma = exp(P_mean + P_std z), z ~ N(0, 1) (EDM Table 1; not clipped, as in the paper)."""
        return torch.exp(self.p_mean + self.p_std * torch.randn(n, generator=generator, dtype=torch.float64))

    def sigma(self, t):
        return _t(t).clone()

    def g2(self, t):
        return 2 * _t(t)

    def t_from_log_snr(self, lam):
        return torch.exp(-0.5 * _t(lam))  # lambda = -2 log sigma

    def c_noise(self, t):
        return 0.25 * torch.log(_t(t).clamp(min=1e-12))  # EDM Table 1: c_noise = ln(sigma) / 4

    def to_dict(self) -> dict:
        return {"kind": "edm", **{k: getattr(self, k) for k in self.KEYS}}

    def describe(self) -> str:
        return (
            f"edm (sigma {self.sigma_min:g}..{self.sigma_max:g}, ln sigma ~ N({self.p_mean:g}, {self.p_std:g}^2), "
            f"sigma_data {self.sigma_data:g})"
        )


KARRAS_SIGMA_MAX = 80.0  # EDM (Karras et al. 2022), Table 1: where the karras ramp starts at most


def discrete_steps(target: torch.Tensor, T: int) -> torch.Tensor:
    """``K = len(target)`` distinct integer steps in [1, T], decreasing, as close as possible to
    the decreasing real positions ``target`` (first T, last 1): step j is rounded and kept in
    [K - j, T - j], so there is room for the others (where the spacing is denser than the
    integers at the high-noise end, e.g. log-SNR on a cosine schedule, whose clipped last beta
    makes lambda drop fast near t = 1, the steps become T, T - 1, T - 2, ...); then, from the
    low-noise end, a step that collides with the one after it moves up to the next free integer
    (log-SNR near t = 1/T: consecutive steps there). docs/sample.md compares these steps with the
    exact times of the spacing."""
    k = len(target)
    if k > T:
        raise InputError(f"--steps: this ddpm process has T = {T} steps; asked for {k}")
    j = torch.arange(k)
    idx = torch.minimum(torch.maximum(torch.round(target).long(), k - j), T - j).tolist()
    for i in range(k - 2, -1, -1):
        idx[i] = max(idx[i], idx[i + 1] + 1)
    return torch.tensor(idx, dtype=torch.long)


def process_from_dict(d: dict) -> Process:
    """Rebuild a process from ``Process.to_dict()`` (checkpoint metadata)."""
    kind = d.get("kind")
    try:
        if kind == "ddpm":
            return DiscreteProcess(np.asarray(d["betas"], dtype=np.float64), d.get("schedule", "custom"))
        if kind == "vp":
            return VPSDE(d["beta_min"], d["beta_max"], d.get("eps", 1e-3))
        if kind == "subvp":
            return SubVPSDE(d["beta_min"], d["beta_max"], d.get("eps", 1e-3))
        if kind == "ve":
            return VESDE(d["sigma_min"], d["sigma_max"], d.get("eps", 1e-5))
        if kind == "edm":
            return EDMProcess(*(d[k] for k in EDMProcess.KEYS))
    except (KeyError, TypeError) as e:
        raise InputError(f"process description is missing {e}") from None
    raise InputError(f"unknown process kind '{kind}' (choose from {', '.join(PROCESS_KINDS)})")


def make_process(
    sde: str | None = None,
    schedule: str = "linear",
    T: int = 1000,
    *,
    beta_min: float | None = None,
    beta_max: float | None = None,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    eps: float | None = None,
    p_mean: float | None = None,
    p_std: float | None = None,
    sigma_data: float | None = None,
    **schedule_options,
) -> Process:
    """The process a user asks for: ``sde`` None/"ddpm" gives DDPM with a beta schedule,
    ``vp``/``subvp``/``ve`` the continuous SDEs with their usual defaults (score_sde), ``edm`` EDM's
    (Karras et al. 2022, Table 1: sigma in [0.002, 80], P_mean -1.2, P_std 1.2, sigma_data 0.5)."""
    edm = {"p_mean": p_mean, "p_std": p_std, "sigma_data": sigma_data}
    if sde != "edm":
        for k, v in edm.items():
            if v is not None:
                raise InputError(f"--{k.replace('_', '-')}: applies to the edm process only (--sde edm)")
    if sde in (None, "ddpm", "discrete"):
        name = Path(schedule).name if is_schedule_file(schedule) else schedule
        return DiscreteProcess(get_betas(schedule, T, **schedule_options), name)
    kw = {} if eps is None else {"eps": eps}
    if sde in ("vp", "subvp"):
        cls = VPSDE if sde == "vp" else SubVPSDE
        return cls(0.1 if beta_min is None else beta_min, 20.0 if beta_max is None else beta_max, **kw)
    if sde == "ve":
        return VESDE(0.01 if sigma_min is None else sigma_min, 50.0 if sigma_max is None else sigma_max, **kw)
    if sde == "edm":
        if eps is not None:
            raise InputError("--t-eps: the edm process's smallest time is its sigma_min")
        given = {k: v for k, v in dict(edm, sigma_min=sigma_min, sigma_max=sigma_max).items() if v is not None}
        return EDMProcess(**given)
    raise InputError(f"unknown process '{sde}' (choose from {', '.join(PROCESS_KINDS)})")


# --------------------------------------------------------------------------------------------
# time grids: where a sampler evaluates the network


def make_times(
    process: Process, steps: int, spacing: str = "uniform", rho: float = 7.0, zero: bool = True
) -> torch.Tensor:
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

    The process then moves the times to where its network was trained (``Process.grid``): on a
    discrete DDPM process its integer steps t = i/T (like DDIM's respacing), ``steps`` distinct
    steps that follow the spacing as closely as possible, so ``steps`` is always the number of
    steps (and the NFE) and uniform spacing with steps = T is exactly DDPM's t = T, ..., 1.
    """
    steps = int(steps)
    if steps < 1:
        raise InputError(f"--steps: must be >= 1, got {steps}")
    if spacing not in SPACINGS:
        raise InputError(f"--spacing: unknown spacing '{spacing}' (choose from {', '.join(SPACINGS)})")
    if rho <= 0:
        raise InputError(f"--rho: must be > 0, got {rho}")
    if process.max_steps is not None and steps > process.max_steps:
        raise InputError(f"--steps: this {process.kind} process has T = {process.max_steps} steps; asked for {steps}")
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
    t = process.grid(t)
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


def sigma_tilde(process: Process, t) -> torch.Tensor:
    """sigma~(t) = sigma_t / alpha_t: the noise level of x / alpha_t (EDM's sigma; exp(-lambda/2))."""
    return process.sigma(t) / process.alpha(t)
