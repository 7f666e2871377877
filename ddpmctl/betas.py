"""Beta schedules of discrete DDPM and the names of the processes and time grids: the part of
``ddpmctl.schedules`` that needs no torch (numpy, float64), so that ``ddpmctl schedule`` and every
command's ``--help`` start without importing torch (docs/startup.md). ``ddpmctl.schedules``
re-exports every name defined here.

Beta schedules (Ho et al. 2020; seeds 002, 003, 004) give ``beta_1..beta_T`` and
``alpha_bar_t = prod_{s<=t} (1 - beta_s)``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

PROCESS_KINDS = ("ddpm", "vp", "subvp", "ve", "edm")  # the processes of ddpmctl.schedules (make_process)
SPACINGS = ("uniform", "quadratic", "logsnr", "karras")  # the time grids of ddpmctl.schedules.make_times


def linear_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """DDPM's linear schedule: beta_t evenly spaced from beta_start to beta_end (Ho et al. 2020)."""
    return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def quadratic_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Linear in sqrt(beta): beta_t = (sqrt(b0) + (sqrt(b1) - sqrt(b0)) u)^2."""
    return np.linspace(math.sqrt(beta_start), math.sqrt(beta_end), T, dtype=np.float64) ** 2


def cosine_betas(T: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal (2021): alpha_bar(t) = cos^2(((t/T + s)/(1 + s)) pi/2),
    beta_t = min(1 - alpha_bar(t)/alpha_bar(t-1), max_beta)."""
    t = np.arange(T + 1, dtype=np.float64)
    f = np.cos(((t / T + s) / (1 + s)) * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], max_beta)


def sigmoid_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02, width: float = 6.0) -> np.ndarray:
    """beta_t = b0 + (b1 - b0) * sigmoid(u), u evenly spaced in [-width, width] (as in diffusers/GeoDiff)."""
    u = np.linspace(-width, width, T, dtype=np.float64)
    return beta_start + (beta_end - beta_start) / (1 + np.exp(-u))


def power_betas(T: int, beta_start: float = 1e-4, beta_end: float = 0.02, power: float = 2.0) -> np.ndarray:
    """The thesis' power schedules (seed 003: x^1.5, x^2, x^10): beta_t = b0 + (b1 - b0) u^p, u in [0, 1]."""
    u = np.linspace(0.0, 1.0, T, dtype=np.float64)
    return beta_start + (beta_end - beta_start) * u**power


def wave_betas(
    T: int, beta_start: float = 1e-4, beta_end: float = 0.02, cycles: int = 4, amplitude: float = 0.5
) -> np.ndarray:
    """The thesis' sine-wave schedule (seed 003), made precise: a linear ramp with a sine ripple,
    beta(u) = b0 + (b1 - b0) (u + A sin(2 pi k u) / (2 pi k)),  u in [0, 1].

    With A <= 1 it is non-decreasing (its slope is 1 + A cos(2 pi k u) >= 0) and it hits b0 and b1
    exactly at the ends (k whole cycles), so it stays in (0, 1) like the linear schedule."""
    u = np.linspace(0.0, 1.0, T, dtype=np.float64)
    k = max(int(cycles), 1)
    return beta_start + (beta_end - beta_start) * (u + amplitude * np.sin(2 * math.pi * k * u) / (2 * math.pi * k))


SCHEDULES = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
    "wave": wave_betas,
    "power": power_betas,
    "quadratic": quadratic_betas,
}

# options each schedule takes (name -> schedule-function keyword)
SCHEDULE_OPTIONS = {
    "linear": ("beta_start", "beta_end"),
    "quadratic": ("beta_start", "beta_end"),
    "cosine": ("s", "max_beta"),
    "sigmoid": ("beta_start", "beta_end"),
    "power": ("beta_start", "beta_end", "power"),
    "wave": ("beta_start", "beta_end", "cycles", "amplitude"),
}


def check_betas(betas: np.ndarray, name: str) -> np.ndarray:
    betas = np.asarray(betas, dtype=np.float64)
    if betas.ndim != 1 or betas.size < 1:
        raise InputError(f"{name}: betas must be a 1-d array with at least one value, got shape {betas.shape}")
    if not np.isfinite(betas).all():
        raise InputError(f"{name}: betas contain NaN or inf")
    if (betas <= 0).any() or (betas >= 1).any():
        raise InputError(f"{name}: every beta must lie in (0, 1), found [{betas.min():.4g}, {betas.max():.4g}]")
    return betas


def is_schedule_file(spec: str) -> bool:
    return spec.endswith(".npy") or os.sep in spec or Path(spec).is_file()


def get_betas(spec: str, T: int = 1000, **options) -> np.ndarray:
    """Betas for a named schedule (``linear``, ``cosine``, ``sigmoid``, ``wave``, ``power``,
    ``quadratic``) or from an ``.npy`` file of betas (then ``T`` and ``options`` are ignored).

    ``options`` not used by the named schedule are ignored when None, refused otherwise."""
    if is_schedule_file(spec):
        from ddpmctl.io import read_npy

        return check_betas(np.array(read_npy(spec, mmap=False)), spec)
    if spec not in SCHEDULES:
        raise InputError(f"unknown schedule '{spec}' (choose from {', '.join(SCHEDULES)}, or a .npy file of betas)")
    if int(T) < 1:
        raise InputError(f"T must be >= 1, got {T}")
    allowed = SCHEDULE_OPTIONS[spec]
    kwargs = {}
    for k, v in options.items():
        if v is None:
            continue
        if k not in allowed:
            raise InputError(f"schedule '{spec}' takes no option '{k}' (it takes: {', '.join(allowed)})")
        kwargs[k] = v
    if "beta_start" in kwargs or "beta_end" in kwargs:
        b0, b1 = kwargs.get("beta_start", 1e-4), kwargs.get("beta_end", 0.02)
        if not (0 < b0 < 1 and 0 < b1 < 1):
            raise InputError(f"beta_start and beta_end must lie in (0, 1), got {b0} and {b1}")
    if spec == "wave" and not (0 <= kwargs.get("amplitude", 0.5) <= 1):
        raise InputError("wave amplitude must lie in [0, 1] (keeps the schedule monotone)")
    if spec == "power" and kwargs.get("power", 2.0) <= 0:
        raise InputError("power must be > 0")
    return check_betas(SCHEDULES[spec](int(T), **kwargs), spec)


@dataclass
class ScheduleSummary:
    name: str
    T: int
    beta_min: float
    beta_max: float
    alpha_bar_T: float
    log_snr_max: float
    log_snr_min: float
    warning: str | None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def summarize(name: str, betas: np.ndarray) -> ScheduleSummary:
    """Key figures of a schedule; warns when the terminal SNR is far from 0 (data leaks into x_T)."""
    alpha_bar = np.cumprod(1 - betas)
    snr = alpha_bar / (1 - alpha_bar)
    warning = None
    if alpha_bar[-1] > 1e-3:  # sqrt(alpha_bar_T) > 3%: the prior N(0, I) visibly differs from q(x_T)
        warning = (
            f"terminal alpha_bar_T = {alpha_bar[-1]:.3g} is far from 0: x_T keeps "
            f"{100 * math.sqrt(alpha_bar[-1]):.1f}% of the data, so sampling from N(0, I) is biased "
            "(use more steps, a larger beta_end, or another schedule)"
        )
    return ScheduleSummary(
        name=name,
        T=int(len(betas)),
        beta_min=float(betas.min()),
        beta_max=float(betas.max()),
        alpha_bar_T=float(alpha_bar[-1]),
        log_snr_max=float(np.log(snr[0])),
        log_snr_min=float(np.log(snr[-1])),
        warning=warning,
    )
