"""Encoding data to latents along the probability-flow ODE, decoding them back, interpolating.

The probability-flow ODE (Song et al. 2021, eq. 13; ``samplers``) is a bijection between the data
and the noise at ``t_max``: ``sample --sampler ode`` integrates it from noise to data, ``encode``
integrates it the other way, with the same solver on the same grid reversed (docs/encode.md):

1. The data x are the state at the smallest time ``t_min``, inverted through the sampler's last
   step: the ode sampler ends with the denoising step x0 = (x_tmin - sigma eps(x_tmin)) / alpha
   (``samplers``), so ``encode`` starts from the x_tmin whose denoised x0 is the data, the fixed point
   of x = alpha x0 + sigma eps(x) (``invert_denoising``; it contracts by about sigma^2 / Var, 1e-4
   at t_min, so ``DENOISE_ITERATIONS`` evaluations suffice).
2. The solver (``ODE_SOLVERS``: Euler and Heun in sigma~, DPM-Solver++ in lambda, RK45 in t) runs
   on the increasing grid t_min -> t_max. Every one of them is written for any ordered grid: the
   Euler and Heun steps are in sigma~_s - sigma~_t, the DPM-Solver++ steps in h = lambda_s - lambda_t
   (negative here; phi_1 = e^{-h} - 1 and the multistep ratios r = h_prev / h stay positive), and
   RK45 integrates forwards or backwards in t. ``tests/test_encode.py`` checks each against the
   exact model.
3. The state at the top of the grid is divided by the sampler's starting standard deviation
   (``samplers.start_std``), so the latents are standard normal when the model is right and
   ``sample --from`` (``decode``) starts from exactly them.

DDIM with eta = 0 is the Euler solver (Song et al. 2021a, section 4.3), so ``--solver euler`` is
DDIM inversion.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ddpmctl import samplers as S
from ddpmctl.errors import InputError, RunError
from ddpmctl.sampling import generate, place_model

DENOISE_ITERATIONS = 2  # fixed-point iterations of invert_denoising (NFE each)


def encode_plan(process, steps: int | None = None, solver: str | None = None, spacing: str | None = None, **options):
    """The ode sampler's plan (``samplers.plan``) whose grid ``encode`` runs reversed: the defaults
    of ``sample --sampler ode`` (DPM-Solver++(3M), 20 steps, log-SNR grid). ``options``: rho, rtol, atol."""
    plan = S.plan(process, "ode", steps, spacing, options.pop("rho", 7.0), solver=solver, **options)
    if plan.steps < 2:
        raise InputError(f"--steps: encoding needs >= 2 steps (the grid from t_min to t_max), got {plan.steps}")
    return plan


def invert_denoising(denoiser, x0: torch.Tensor, t: float, iterations: int = DENOISE_ITERATIONS) -> torch.Tensor:
    """The x_t whose denoised x0 = (x_t - sigma_t eps(x_t, t)) / alpha_t is ``x0``: the fixed point of
    x = alpha_t x0 + sigma_t eps(x, t), from x = alpha_t x0 (``iterations`` NFE)."""
    a, s = float(denoiser.process.alpha(t)), float(denoiser.process.sigma(t))
    x = a * x0
    for _ in range(iterations):
        x = a * x0 + s * denoiser(x, t).eps
    return x


@torch.no_grad()
def encode_batch(denoiser, x0: torch.Tensor, plan, callback=None) -> torch.Tensor:
    """Latents of data ``x0`` (model units): the ODE from t_min to the top of ``plan``'s grid (see
    the module docstring), divided by the sampler's starting std."""
    times = plan.times[:-1].flip(0)  # t_min ... t_max (the grid without its final 0, increasing)
    x = invert_denoising(denoiser, x0, float(times[0]))
    options = {k: v for k, v in plan.options.items() if k != "solver"}
    x = plan.solver.fn(denoiser, x, times, callback, **options)
    return x / S.start_std(denoiser.process, float(plan.times[0]))


def encode(
    model,
    x: np.ndarray,
    steps: int | None = None,
    solver: str | None = None,
    spacing: str | None = None,
    batch: int | None = None,
    device=None,
    progress=None,
    **options,
) -> tuple[np.ndarray, dict]:
    """Encode data ``x`` (data units, shaped like the model's data) to latents; returns (latents
    float32, info with ``nfe`` per sample, ``steps``, ``solver``, ``spacing``, ``times``, ``seconds``).
    ``options``: rho, rtol, atol (rk45). ``decode(model, latents, same settings)`` returns x."""
    x = np.asarray(x)
    check_data(model, x, "x")
    plan = encode_plan(model.process, steps, solver, spacing, **options)
    batch = min(len(x), 256) if batch is None else int(batch)
    if batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    dev, dtype = place_model(model, device)
    denoiser = model.denoiser(clip=False)
    out = np.empty(x.shape, dtype=np.float32)
    report = plan.free_report and progress is not None
    nfes = []
    t0 = time.perf_counter()
    for start in range(0, len(x), batch):
        xb = torch.as_tensor(np.asarray(x[start : start + batch], dtype=np.float64))
        xb = model.normalization.to_model(xb).to(device=dev, dtype=dtype)
        denoiser.reset()
        before = denoiser.nfe
        z = encode_batch(denoiser, xb, plan, (lambda info: progress(advance=1)) if report else None)
        nfes.append(denoiser.nfe - before)
        if progress is not None and not report:
            progress(advance=plan.steps - 1)
        if not torch.isfinite(z).all():
            raise RunError(f"encode: the ODE solver {plan.solver.name} produced NaN or inf (try more --steps)")
        out[start : start + len(xb)] = z.float().cpu().numpy()
    info = {
        "solver": plan.solver.name,
        "steps": plan.steps,
        "spacing": plan.spacing,
        "nfe": int(max(nfes)),
        "n": len(x),
        "seconds": time.perf_counter() - t0,
        "times": [float(v) for v in plan.times],
        "process": model.process.describe(),
        "device": str(dev),
    }
    return out, info


def decode(model, latents: np.ndarray, steps=None, solver=None, spacing=None, batch=None, device=None, **options):
    """Data from latents: the ode sampler started from them (``sampling.generate`` with ``start``);
    returns (data, info) as ``generate`` does. ``options`` as ``generate``'s (rho, rtol, progress ...)."""
    n = len(latents)
    return generate(model, "ode", n, steps, 0, batch, device, solver=solver, spacing=spacing, start=latents, **options)


def check_data(model, x: np.ndarray, name: str) -> None:
    """InputError unless ``x`` is a non-empty, finite batch shaped like the model's data."""
    shape = tuple(model.data_shape)
    if x.ndim != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise InputError(
            f"{name}: shape {tuple(x.shape)} does not fit the model's data (N, {', '.join(map(str, shape))})"
        )
    if len(x) == 0:
        raise InputError(f"{name}: holds no data (N = 0)")
    if not np.isfinite(x).all():
        raise InputError(f"{name}: contains NaN or inf")


# --------------------------------------------------------------------------------------------
# interpolation


def slerp(z0: np.ndarray, z1: np.ndarray, k: int) -> np.ndarray:
    """Spherical interpolation of latents (Shoemake 1985; DDIM section 5.3, DDPM seed 004 sec. 2.4):
    row i of (N, k, ...) is sin((1 - u) theta) / sin(theta) z0 + sin(u theta) / sin(theta) z1,
    u = 0 .. 1 in k steps, cos theta = <z0, z1> / (|z0| |z1|) per pair (linear where theta ~ 0)."""
    a, b = z0.reshape(len(z0), -1).astype(np.float64), z1.reshape(len(z1), -1).astype(np.float64)
    cos = np.sum(a * b, 1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))[:, None, None]
    u = np.linspace(0.0, 1.0, k)[None, :, None]
    small = theta < 1e-6
    sin = np.where(small, 1.0, np.sin(theta))
    wa = np.where(small, 1 - u, np.sin((1 - u) * theta) / sin)
    wb = np.where(small, u, np.sin(u * theta) / sin)
    out = wa * a[:, None] + wb * b[:, None]
    return out.reshape(len(z0), k, *z0.shape[1:]).astype(np.float32)


def lerp(x0: np.ndarray, x1: np.ndarray, k: int) -> np.ndarray:
    """Linear interpolation (1 - u) x0 + u x1, u = 0 .. 1 in k steps: (N, k, ...)."""
    u = np.linspace(0.0, 1.0, k).reshape(1, k, *([1] * (x0.ndim - 1)))
    return ((1 - u) * x0[:, None] + u * x1[:, None]).astype(np.float32)


def interpolate(model, a: np.ndarray, b: np.ndarray, k: int = 8, space: str = "latent", **settings):
    """Interpolate between pairs (a_i, b_i): ``latent``: encode both, slerp the latents, decode;
    ``data``: the linear data-space baseline. Returns ((N, k, ...) in data units, info).
    ``settings``: steps, solver, spacing, batch, device, rho, rtol, atol."""
    a, b = np.asarray(a), np.asarray(b)
    check_data(model, a, "a")
    check_data(model, b, "b")
    if len(a) != len(b):
        raise InputError(f"a and b: {len(a)} and {len(b)} items; give as many of each (one pair per row)")
    if int(k) < 2:
        raise InputError(f"--k: must be >= 2, got {k}")
    if space == "data":
        return lerp(a.astype(np.float64), b.astype(np.float64), k), {"space": "data", "nfe": 0}
    if space != "latent":
        raise InputError(f"--space: unknown space '{space}' (choose from latent, data)")
    progress = settings.pop("progress", None)
    z, info = encode(model, np.concatenate([a, b]), progress=progress, **settings)
    path = slerp(z[: len(a)], z[len(a) :], k)
    flat = path.reshape(len(a) * k, *path.shape[2:])
    out, dinfo = decode(model, flat, progress=progress, **settings)
    info.update(space="latent", nfe_encode=info["nfe"], nfe_decode=dinfo["nfe"], nfe=info["nfe"] + dinfo["nfe"])
    info["seconds"] += dinfo["seconds"]
    return out.reshape(path.shape), info


def angle(z0: np.ndarray, z1: np.ndarray) -> float:
    """The mean angle (radians) between paired latents (a diagnostic: about pi/2 for independent noise)."""
    a, b = z0.reshape(len(z0), -1), z1.reshape(len(z1), -1)
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(np.mean(np.arccos(np.clip(cos, -1, 1)))) if len(a) else math.nan
