"""Negative log-likelihood and bits per dimension: by the probability-flow ODE, or by DDPM's
variational bound. Formulas, sources and the exact-model evidence: docs/encode.md.

``ode`` (every process; Song et al. 2021, section 4.3 and appendix D.2; score_sde ``likelihood.py``):
along the probability-flow ODE dx/dt = F(x, t) = f(t) x - g(t)^2 score(x, t) / 2 (eq. 13), the
instantaneous change of variables (Chen et al. 2018, eq. 39 of Song et al.) gives

    log p_tmin(x(t_min)) = log p_T(x(t_max)) + int_{t_min}^{t_max} div F(x(t), t) dt,           (L1)

with the data as x(t_min) and the prior N(0, prior_std^2 I) as p_T. div F = E_v[v^T (dF/dx) v] is
estimated with Hutchinson's estimator (Hutchinson 1989; Grathwohl et al. 2019): ``probes`` probes v
(Rademacher or Gaussian, E[v v^T] = I), fixed along each sample's path, one vector-Jacobian product
each. The joint state (x, log p) is integrated by RK45 (scipy), as score_sde does.

``vlb`` (discrete DDPM checkpoints; Ho et al. 2020 eq. 5):

    L = L_T + sum_{t=2}^T L_{t-1} + L_0 >= -log p(x_0),                                        (L2)
    L_T = KL(q(x_T | x_0) || N(0, I)),   L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)),
    L_0 = -log p(x_0 | x_1),

each KL between Gaussians in closed form (seed 003 eq. (2.31)) at one draw x_t ~ q(x_t | x_0); the
decoder is Ho et al.'s discretised Gaussian (eq. 13) for 8-bit images and the Gaussian density for
points (a bound on the continuous density), both with mean x0_hat(x_1) and variance
sigma_1^2 / alpha_1^2. ``terms`` = K < T - 1 replaces the sum by (T - 1)/K times the sum over K
terms drawn without replacement for each sample (unbiased).

Units (``bits_per_dim``): the model works on x_m = s x_d + c (s = ``normalization.scale``), so a
density in data units is log p_d = log p_m + D log s. 8-bit images (values y / 255) are
dequantised, u = (y + U[0, 1)) / 256 in data units (Theis et al. 2016; score_sde), and
-log_2 P(y) <= -E[log p_u(u)] / ln 2 + D log_2 256, so per dimension

    bpd = -(log p_m / D + log s) / ln 2 + 8                                                   (L3)

(s = 2: score_sde's offset 7). Points: nats/dim = -(log p_m / D + log s), bits/dim = that / ln 2.
The vlb's discretised decoder bounds P(y) itself: bpd = L / (D ln 2).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ddpmctl.diffusion import posterior, transition
from ddpmctl.errors import InputError, RunError
from ddpmctl.nll_options import METHODS, PROBES, VARIANCES, NllOptions, check_options  # noqa: F401  (re-exported)
from ddpmctl.sampling import NoiseStream, place_model

LN2 = math.log(2.0)

# --------------------------------------------------------------------------------------------
# the probability-flow ODE (L1)


def _probes(stream: NoiseStream, k: int, kind: str) -> list[torch.Tensor]:
    draws = [stream() for _ in range(k)]
    return [torch.sign(v) + (v == 0) if kind == "rademacher" else v for v in draws]


def ode_logp(denoiser, x: torch.Tensor, probes: list[torch.Tensor], rtol: float, atol: float) -> torch.Tensor:
    """log p_tmin(x) in model units (float64 (B,)) by (L1): RK45 on (x, delta log p) from t_min to
    t_max, Hutchinson's estimate of div F with ``probes`` (each shaped like x)."""
    from scipy.integrate import solve_ivp

    process = denoiser.process
    shape, n, dev, dtype = x.shape, x.numel(), x.device, x.dtype

    def fun(t, y):
        with torch.enable_grad():
            xt = torch.from_numpy(y[:n]).reshape(shape).to(device=dev, dtype=dtype).requires_grad_(True)
            eps = denoiser(xt, t).eps
            drift = float(process.f(t)) * xt + float(process.g2(t)) / (2 * float(process.sigma(t))) * eps
            div = torch.zeros(shape[0], dtype=torch.float64, device=dev)
            for i, v in enumerate(probes):
                (jv,) = torch.autograd.grad(drift, xt, v, retain_graph=i < len(probes) - 1)
                div = div + (jv * v).flatten(1).sum(1).double()
        out = [drift.detach().double().flatten().cpu().numpy(), (div / len(probes)).cpu().numpy()]
        return np.concatenate(out)

    y0 = np.concatenate([x.detach().double().flatten().cpu().numpy(), np.zeros(shape[0])])
    t0, t1 = float(process.t_min), float(process.t_max)
    sol = solve_ivp(fun, (t0, t1), y0, method="RK45", rtol=rtol, atol=atol)
    if not sol.success:
        raise RunError(f"nll: the ODE solver failed ({sol.message})")
    z, delta = sol.y[:n, -1].reshape(shape[0], -1), sol.y[n:, -1]
    s = float(process.prior_std())
    d = z.shape[1]
    prior = -0.5 * (z**2).sum(1) / s**2 - d * math.log(s) - 0.5 * d * math.log(2 * math.pi)
    return torch.from_numpy(prior + delta)


# --------------------------------------------------------------------------------------------
# the variational bound (L2)


def gaussian_kl(mu_q, var_q, mu_p, var_p) -> torch.Tensor:
    """KL(N(mu_q, var_q I) || N(mu_p, var_p I)) summed per sample (seed 003 eq. (2.31)), with
    per-sample variances (B,): 1/2 (log(var_p / var_q) + var_q / var_p - 1 + (mu_q - mu_p)^2 / var_p)."""
    mq, mp = mu_q.double(), mu_p.double()
    vq, vp = _b(var_q.double(), mq), _b(var_p.double(), mq)
    return (0.5 * (torch.log(vp / vq) + vq / vp - 1.0 + (mq - mp) ** 2 / vp)).flatten(1).sum(1)


def discretized_gaussian_nll(x: torch.Tensor, mean: torch.Tensor, var: float, half_bin: float) -> torch.Tensor:
    """-log P(x) of Ho et al.'s discretised Gaussian decoder (eq. 13), summed per sample: the mass of
    N(mean, var) on [x - half_bin, x + half_bin], the end bins reaching to -inf and +inf (x in [-1, 1])."""
    sd = math.sqrt(var)
    x, mean = x.double(), mean.double()
    hi = torch.where(x > 1 - 1e-3, torch.ones_like(x), torch.special.ndtr((x + half_bin - mean) / sd))
    lo = torch.where(x < -1 + 1e-3, torch.zeros_like(x), torch.special.ndtr((x - half_bin - mean) / sd))
    return -torch.log((hi - lo).clamp_min(1e-12)).flatten(1).sum(1)


def vlb_batch(denoiser, x0: torch.Tensor, stream: NoiseStream, steps: np.ndarray, opts: NllOptions, images: bool):
    """(L2) for a batch x0 in model units: the per-sample bound in nats (float64 (B,)). ``steps``
    (B, K): the steps t in 2..T whose KL terms are summed (weighted by (T - 1) / K)."""
    process, T = denoiser.process, process_T(denoiser.process)
    a_T, s_T = float(process.alpha(1.0)), float(process.sigma(1.0))
    x0d = x0.double()
    total = 0.5 * (a_T**2 * x0d**2 + s_T**2 - 1 - 2 * math.log(s_T)).flatten(1).sum(1)  # L_T
    weight = (T - 1) / steps.shape[1]
    for k in range(steps.shape[1]):
        t = torch.from_numpy(steps[:, k] / T)
        s = t - 1.0 / T
        a_t, s_t = process.alpha(t), process.sigma(t)
        xt = _b(a_t, x0) * x0 + _b(s_t, x0) * stream()
        pred = denoiser(xt, t)
        c_xt, c_x0, var = posterior(process, s, t)
        var_p = var if opts.variance == "small" else transition(process, s, t)[1]
        mu_q, mu_p = _b(c_xt, x0) * xt + _b(c_x0, x0) * x0, _b(c_xt, x0) * xt + _b(c_x0, x0) * pred.x0
        total = total + weight * gaussian_kl(mu_q, var, mu_p, var_p)
    t1 = 1.0 / T
    a1, s1 = float(process.alpha(t1)), float(process.sigma(t1))
    x1 = a1 * x0 + s1 * stream()
    mean, var_dec = denoiser(x1, t1).x0, (s1 / a1) ** 2
    if images:
        return total + discretized_gaussian_nll(x0, mean, var_dec, 1.0 / 255)
    gauss = 0.5 * ((x0d - mean.double()) ** 2 / var_dec + math.log(2 * math.pi * var_dec))
    return total + gauss.flatten(1).sum(1)


def _b(c, x):
    return c.to(device=x.device, dtype=x.dtype).reshape(-1, *([1] * (x.ndim - 1))) if torch.is_tensor(c) else c


def process_T(process) -> int:
    return int(process.max_steps)


def vlb_steps(T: int, n_terms: int | None, rows: range, seed: int) -> np.ndarray:
    """(B, K) steps of the KL terms: all of 2..T, or for each sample K of them drawn without replacement."""
    if n_terms is None or n_terms >= T - 1:
        return np.tile(np.arange(2, T + 1), (len(rows), 1))
    from ddpmctl.sampling import sample_seed

    return np.stack(
        [np.random.default_rng(sample_seed(seed, i) ^ 0x5EED).permutation(T - 1)[:n_terms] + 2 for i in rows]
    )


# --------------------------------------------------------------------------------------------
# the driver


def nll(
    model, x: np.ndarray, options: NllOptions = NllOptions(), seed: int = 0, batch=None, device=None, progress=None
):
    """Negative log-likelihood of data ``x`` (data units) under ``model`` by ``options.method``;
    returns (bits/dim per sample (float64 (N,)), info with the mean, its standard error over the
    samples, nats/dim for points, the NFE and the units). Randomness (dequantisation, probes, the
    draws of x_t and of the vlb's terms) comes from per-sample streams seeded from (seed, i), so
    the result does not depend on ``batch``."""
    from ddpmctl.encode import check_data

    x = np.asarray(x)
    check_data(model, x, "data")
    check_options(model, options)
    batch = min(len(x), 64) if batch is None else int(batch)
    if batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    images, shape = model.data_kind == "images", tuple(model.data_shape)
    dims, log_s = int(np.prod(shape)), math.log(abs(float(model.normalization.scale)))
    dev, dtype = place_model(model, device)
    denoiser = model.denoiser(clip=False)
    bpd, nfes, t0 = np.empty(len(x)), [], time.perf_counter()
    for start in range(0, len(x), batch):
        rows = range(start, min(len(x), start + batch))
        stream = NoiseStream.for_samples(seed, rows, shape, device=dev, dtype=dtype)
        xm = _model_input(model, x[rows.start : rows.stop], stream, images, options)
        before = denoiser.nfe
        if options.method == "ode":
            logp = ode_logp(denoiser, xm.to(device=dev, dtype=dtype), _probes(stream, options.probes, options.probe),
                            options.rtol, options.atol)  # fmt: skip
            nats = -(logp.numpy() / dims + log_s)  # per dimension, data units (L3)
            bpd[rows.start : rows.stop] = nats / LN2 + (8.0 if images else 0.0)
        else:
            steps = vlb_steps(process_T(model.process), options.terms, rows, seed)
            with torch.no_grad():
                bound = vlb_batch(denoiser, xm.to(device=dev, dtype=dtype), stream, steps, options, images)
            nats = bound.cpu().numpy() / dims - (0.0 if images else log_s)
            bpd[rows.start : rows.stop] = nats / LN2
        nfes.append(denoiser.nfe - before)
        if not np.isfinite(bpd[rows.start : rows.stop]).all():
            raise RunError(f"nll --method {options.method}: produced NaN or inf")
        if progress is not None:
            progress(advance=len(rows))
    return bpd, _info(model, options, bpd, images, dims, nfes, time.perf_counter() - t0)


def _model_input(model, xd: np.ndarray, stream: NoiseStream, images: bool, options: NllOptions) -> torch.Tensor:
    """Data to model units; 8-bit images on the grid y / 255, dequantised for the ODE (y + U) / 256."""
    from scipy.special import ndtr

    x = torch.as_tensor(np.asarray(xd, dtype=np.float64))
    if images:
        y = torch.round(x * 255.0)
        if options.method == "ode" and options.dequantize:
            u = torch.from_numpy(ndtr(stream().double().cpu().numpy())).reshape(x.shape)  # U[0, 1), per sample
            x = (y + u) / 256.0
        else:
            x = y / 255.0
    return model.normalization.to_model(x)


def _info(model, options: NllOptions, bpd: np.ndarray, images: bool, dims: int, nfes: list, seconds: float) -> dict:
    n = len(bpd)
    se = float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    info = {
        "method": options.method,
        "bits_per_dim": float(bpd.mean()),
        "bits_per_dim_se": se,
        "n": n,
        "dims": dims,
        "nfe": int(max(nfes)),
        "seconds": seconds,
        "process": model.process.describe(),
    }
    if images:
        how = "-(log p_m / D + log 2) / ln 2 + 8, dequantised (L3)" if options.method == "ode" else "L / (D ln 2)"
        info["units"] = f"bits/dim of 8-bit images: {how}"
    else:
        info["nats_per_dim"], info["nats_per_dim_se"] = float(bpd.mean() * LN2), se * LN2
        info["units"] = "per dimension of the points as given (data units): nats = -(log p_m / D + log scale)"
    if options.method == "ode":
        info.update(probes=options.probes, probe=options.probe, rtol=options.rtol, atol=options.atol)
    else:
        info.update(terms=options.terms or process_T(model.process) - 1, variance=options.variance)
    return info
