"""Restoring x from y = A x + n with a diffusion model as the prior (seed 001, "Diffusion models for
imaging inverse problems"; the operators are in ``ddpmctl.operators``).

Everything runs in model space (images: [-1, 1]) with the marginal ``x_t = alpha_t x_0 + sigma_t eps``
of any process (discrete DDPM, VP, sub-VP, VE), so one code path serves every checkpoint. The
observation is mapped with the checkpoint's normalisation ``x_m = scale x + shift``:
``y_m = scale y + shift A 1`` and ``sigma_y,m = scale sigma_y`` (2 sigma_y for images). Steps reuse
the samplers' primitives ``samplers.ddim_step`` and ``samplers.ancestral_step``.

Methods (time grid ``t_0 = t_max > ... > t_K = 0`` from ``samplers.make_times``; x0 = the
denoiser's prediction at (x_t, t), ``s`` the next time):

* ``ddnm`` (Wang, Yu & Zhang 2023, DDNM / DDNM+): range-null-space decomposition
  ``x0^ = x0 - A^+ (A x0 - y) = A^+ y + (I - A^+ A) x0`` (so A x0^ = y exactly), then a DDIM step
  from (x_t, x0^) with the consistent ``eps^ = (x_t - alpha_t x0^) / sigma_t``. For noisy y (DDNM+),
  per singular value s of A: ``x0^ = x0 - V diag(lambda_s / s) U^T (A x0 - y)`` with
  ``lambda_s = min(1, sigma_next s / (alpha_next sigma_y))``, and the step's noise is scaled by
  ``sqrt(1 - (alpha_next lambda_s sigma_y / (s sigma_next))^2)`` so that the noise x0^ carries from y
  plus the added noise equals sigma_next per component (DDNM paper eq. 17-19, in SVD form).
* ``dps`` (Chung et al. 2023, seed 001 Algorithm "DPS - Gaussian"): an ancestral step, then
  ``x_s <- x_s - zeta grad_{x_t} ||y - A x0(x_t)||`` through the network. The paper writes
  ``zeta_i grad ||.||^2`` with ``zeta_i = zeta' / ||y - A x0||``; that equals the code's
  ``zeta grad ||.||`` (norm not squared) with ``zeta = 2 zeta'``. ``--zeta`` is the code's zeta;
  its default is the DPS configs' value at 1000 steps (0.5 inpainting, 0.3 sr and deblur; 0.06
  denoising, measured) times 1000/steps.
* ``repaint`` (Lugmayr et al. 2022): after each ancestral step the known part is replaced by the
  noised observation, ``x_s <- A^+ (alpha_s y) + sigma_s A^+ A z + (I - A^+ A) x_s`` (for a mask:
  ``m (alpha_s y + sigma_s z) + (1 - m) x_s``), and every ``jump_length`` steps the chain jumps
  back ``jump_length`` steps with ``q(x_t' | x_s)`` (``jump_n - 1`` times per jump point).
* ``sdedit`` (Meng et al. 2022), denoising only: y = x + sigma_y n is a noisy image at the time t*
  where ``alpha^2 / sigma^2 = 1 / sigma_y^2`` (VP: alpha_bar = 1 / (1 + sigma_y^2)): start there
  from ``x_t* = alpha_t* y`` (exactly q(x_t* | x)) and run the reverse process (DDIM with eta) to 0.

Posterior mean (``samples = K > 1``, any method): every observation is restored K times with
independent noise and the mean of the K restorations is returned, a Monte-Carlo estimate of
E[x | y] (the estimator of least expected squared error, so of highest expected PSNR), optionally
with the per-pixel standard deviation. The K x N restorations run through the same batched loop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ddpmctl import samplers as S
from ddpmctl.diffusion import Prediction, transition
from ddpmctl.errors import InputError
from ddpmctl.operators import Operator
from ddpmctl.restore_registry import (  # noqa: F401  (re-exported: the registry is part of this module's API)
    DEFAULT_ZETA,
    METHODS,
    OPTION_TYPES,
    TASKS,
    Method,
    check_method,
    get_method,
)
from ddpmctl.sampling import DEFAULT_CFG, Batches, check_classes, drive, place_model, sample_seed
from ddpmctl.schedules import Process


@dataclass(frozen=True)
class Observation:
    """What a method restores from, in model space: y = A x + n with ``op`` = A and noise ``sigma_y``."""

    op: Operator
    y: torch.Tensor
    sigma_y: float


def check_samples(samples, return_std: bool = False) -> int:
    """``samples`` as an int >= 1 (InputError otherwise; ``return_std`` needs >= 2)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise InputError(f"--samples: must be an integer >= 1, got {samples}")
    if return_std and samples < 2:
        raise InputError(f"--std: needs --samples >= 2 (the spread of several restorations), got --samples {samples}")
    return int(samples)


# --------------------------------------------------------------------------------------------
# the methods: one batch in model space


def _f(v) -> float:
    return float(v)


@torch.no_grad()
def ddnm(denoiser, x, times, generator, callback=None, *, obs: Observation, eta: float = 0.85) -> torch.Tensor:
    """DDNM (sigma_y = 0) / DDNM+ (sigma_y > 0) with DDIM steps (module docstring). NFE = steps."""
    process, op, y, sigma_y = denoiser.process, obs.op, obs.y, obs.sigma_y
    for i, (t, s) in enumerate(S._steps(times)):
        pred = denoiser(x, t)
        a_t, sg_t = _f(process.alpha(t)), _f(process.sigma(t))
        a_s, sg_s = _f(process.alpha(s)), _f(process.sigma(s))
        if sigma_y > 0:

            def lam(sv, a_s=a_s, sg_s=sg_s):
                return torch.clamp(sg_s * sv / (a_s * sigma_y), max=1.0)

            x0 = pred.x0 - op.pinv_filter(op.A(pred.x0) - y, lambda sv: lam(sv) / sv)
        else:
            x0 = pred.x0 - op.pinv(op.A(pred.x0) - y)
        eps = (x - a_t * x0) / sg_t
        z = S.randn_like(x, generator) if eta > 0 and s > 0 else None
        x_next = S.ddim_step(x, Prediction(eps=eps, x0=x0), t, s, process, eta, z)
        if sigma_y > 0 and sg_s > 0:

            def keep(sv, a_s=a_s, sg_s=sg_s):  # share of the step's noise left after y's noise in x0^
                ratio = a_s * lam(sv) * sigma_y / (sv.clamp(min=1e-30) * sg_s)
                return torch.where(sv > 0, torch.sqrt(torch.clamp(1 - ratio**2, min=0.0)), torch.ones_like(sv))

            x_next = a_s * x0 + op.filter(x_next - a_s * x0, keep)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": x0})
        x = x_next
    return x


def dps(denoiser, x, times, generator, callback=None, *, obs: Observation, zeta: float = 0.5) -> torch.Tensor:
    """Diffusion posterior sampling with ancestral steps (module docstring). NFE = steps, each
    with a backward pass through the network."""
    process, op, y = denoiser.process, obs.op, obs.y
    for i, (t, s) in enumerate(S._steps(times)):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            pred = denoiser(xg, t)
            residual = (y - op.A(pred.x0)).reshape(x.shape[0], -1)
            norm = torch.linalg.vector_norm(residual.float(), dim=1)  # per sample: batch-independent
            (grad,) = torch.autograd.grad(norm.sum(), xg)
        pred = Prediction(eps=pred.eps.detach(), x0=pred.x0.detach())
        z = S.randn_like(x, generator) if s > 0 else None
        x_next = S.ancestral_step(x, pred, t, s, process, "small", z)
        if s > 0:
            x_next = x_next - zeta * grad.to(x.dtype)
        else:
            x_next = pred.x0  # the last step returns x0 (Algorithm 1, line 9)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": pred.x0})
        x = x_next.detach()
    return x


def repaint_path(steps: int, jump_length: int, jump_n: int) -> list[int]:
    """RePaint's schedule as grid positions 0 (t_max) .. steps (t = 0): down one position per
    network call; at every position k = j, 2j, ... < steps, jump back j positions, jump_n - 1 times.
    With 250 steps, j = 10, n = 10: 2410 down steps (NFE) and 216 jumps of 10 (2160 undone steps)."""
    left = {k: jump_n - 1 for k in range(jump_length, steps, jump_length)} if jump_length > 0 else {}
    path, k = [0], 0
    while k < steps:
        k += 1
        path.append(k)
        if left.get(k, 0) > 0:
            left[k] -= 1
            k -= jump_length
            path.append(k)
    return path


@torch.no_grad()
def repaint(
    denoiser, x, times, generator, callback=None, *, obs: Observation, jump_length: int = 10, jump_n: int = 10
) -> torch.Tensor:
    """RePaint: known-part replacement + resampling jumps (module docstring). NFE = down steps."""
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
            a_ts, var_ts = transition(process, t, s)
            x = _f(a_ts) * x + math.sqrt(max(_f(var_ts), 0.0)) * S.randn_like(x, generator)
            continue
        pred = denoiser(x, t)
        z = S.randn_like(x, generator) if s > 0 else None
        x_unknown = S.ancestral_step(x, pred, t, s, process, "small", z)
        z_known = S.randn_like(x, generator) if s > 0 else None
        x = known(s, z_known) + x_unknown - op.project(x_unknown)
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": pred.x0})
    return x


def sdedit_start(process: Process, sigma_y: float) -> float:
    """The time t* where alpha^2/sigma^2 = 1/sigma_y^2 (VP: alpha_bar = 1/(1 + sigma_y^2)); on a
    discrete process the next grid time up (so sigma_t >= alpha_t sigma_y still holds), at most t_max."""
    t_star = process.t_from_log_snr(torch.tensor(-2.0 * math.log(sigma_y), dtype=torch.float64))
    t_star = _f(process.round_t(t_star, up=True))
    return min(max(t_star, _f(process.t_min)), _f(process.t_max))


def sdedit_times(process: Process, steps: int, sigma_y: float) -> torch.Tensor:
    """t*, then the times of the full ``steps``-step grid below t*, then 0."""
    t_star = sdedit_start(process, sigma_y)
    full = S.make_times(process, steps, process.default_spacing)
    return torch.cat([torch.tensor([t_star], dtype=torch.float64), full[full < t_star - 1e-12]])


@torch.no_grad()
def sdedit(denoiser, x, times, generator, callback=None, *, obs: Observation, eta: float = 1.0) -> torch.Tensor:
    """SDEdit denoising from x_t* = alpha_t* y + sqrt(sigma_t*^2 - alpha_t*^2 sigma_y^2) z
    (the square root is 0 when t* is exact), then DDIM(eta) steps to 0. NFE = len(times) - 1."""
    process, y, sigma_y = denoiser.process, obs.y, obs.sigma_y
    t0 = _f(times[0])
    a, sg = _f(process.alpha(t0)), _f(process.sigma(t0))
    extra = math.sqrt(max(sg**2 - (a * sigma_y) ** 2, 0.0))
    x = a * y + extra * S.randn_like(y, generator)
    for i, (t, s) in enumerate(S._steps(times)):
        pred = denoiser(x, t)
        z = S.randn_like(x, generator) if eta > 0 and s > 0 else None
        if callback is not None:
            callback({"i": i, "t": t, "x": x, "x0": pred.x0})
        x = S.ddim_step(x, pred, t, s, process, eta, z)
    return x


# --------------------------------------------------------------------------------------------
# the time grids of the records (``restore_registry.METHODS`` names them)


def _grid(process: Process, steps: int, sigma_y: float) -> torch.Tensor:
    return S.make_times(process, steps, process.default_spacing)


# --------------------------------------------------------------------------------------------
# planning and running: the batch driver of ``sampling``


@dataclass(frozen=True)
class RestoreOptions:
    """``restore``'s options besides the model, observation, method, steps, seed, batch and device.
    The method options (eta, zeta, jump_length, jump_n) apply to the methods that take them; None
    is the method's default."""

    eta: float | None = None
    zeta: float | None = None
    jump_length: int | None = None
    jump_n: int | None = None
    clip: bool = True
    amp: bool | None = None
    samples: int = 1
    return_std: bool = False
    labels: Any = None  # class-conditional models: the class of each observation
    cfg: float | None = None  # with labels: classifier-free guidance scale (``sampling.DEFAULT_CFG`` when None)

    def check(self) -> None:
        """The ranges of the given method options (checked whatever the method)."""
        if self.eta is not None and not 0 <= self.eta <= 1:
            raise InputError(f"--eta: must lie in [0, 1], got {self.eta}")
        jump_length = 10 if self.jump_length is None else int(self.jump_length)
        jump_n = 10 if self.jump_n is None else int(self.jump_n)
        if jump_length < 0 or jump_n < 1:
            raise InputError(f"--jump-length must be >= 0 and --jump-n >= 1, got {jump_length} and {jump_n}")
        if self.zeta is not None and self.zeta < 0:
            raise InputError(f"--zeta: must be >= 0, got {self.zeta}")


@dataclass(frozen=True)
class RestorePlan:
    """A checked ``restore`` run: the method, its grid and options, and the rows to restore."""

    method: Method
    times: torch.Tensor
    options: dict  # keywords of ``method.fn``
    n: int  # observations
    batch: int
    sigma_m: float  # the observation's noise in model space
    settings: RestoreOptions

    @property
    def nfe(self) -> int:
        """Network evaluations per restoration."""
        return self.method.nfe(len(self.times) - 1, self.options)

    @property
    def progress_total(self) -> int:
        """Steps over all batches (the progress bar's total)."""
        return self.nfe * math.ceil(self.n * self.settings.samples / self.batch)


def plan_restore(
    model,
    op: Operator,
    sigma_y: float,
    method: str = "ddnm",
    steps: int | None = None,
    n: int = 1,
    batch: int | None = None,
    options: RestoreOptions = RestoreOptions(),
) -> RestorePlan:
    """Check a ``restore`` run and fill in its defaults (InputError naming the option)."""
    samples = check_samples(options.samples, options.return_std)
    record = get_method(method)
    record.check(op, sigma_y)
    options.check()
    steps = record.default_steps(model.process) if steps is None else int(steps)
    total = n * samples
    batch = min(total, 64) if batch is None else int(batch)
    if batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    sigma_m = abs(float(model.normalization.scale)) * float(sigma_y)
    times = record.times(model.process, steps, sigma_m)
    if options.labels is not None or options.cfg is not None:
        labels = check_classes(model, options.labels, options.cfg, n)[:n]
        options = dataclasses.replace(options, labels=labels, cfg=DEFAULT_CFG if options.cfg is None else options.cfg)
    kwargs = {}
    for k, default in record.options.items():
        value = default if getattr(options, k) is None else getattr(options, k)
        kwargs[k] = OPTION_TYPES[k](value(op.task, len(times) - 1) if callable(value) else value)
    return RestorePlan(record, times, kwargs, n, batch, sigma_m, options)


def check_observation(model, y_file, op: Operator) -> np.ndarray:
    """The observations as an array, checked against the model and the operator."""
    shape = tuple(model.data_shape)
    if tuple(op.x_shape) != shape:
        raise InputError(f"the observation's operator works on data shaped {op.x_shape}, the checkpoint on {shape}")
    y_file = np.asarray(y_file)
    if tuple(y_file.shape[1:]) != tuple(op.y_shape):
        raise InputError(
            f"observation shape {tuple(y_file.shape)} does not fit {op.describe()} "
            f"(expected (N, {', '.join(map(str, op.y_shape))}))"
        )
    if not np.isfinite(y_file).all():
        raise InputError("observation contains NaN or inf values")
    return y_file


def restore(
    model,
    y_file: np.ndarray,
    op: Operator,
    sigma_y: float = 0.0,
    method: str = "ddnm",
    steps: int | None = None,
    *,
    seed: int = 0,
    batch: int | None = None,
    device: str | torch.device | None = None,
    progress: Callable[..., None] | None = None,
    **options,
):
    """Restore the observations ``y_file`` (the array ``ddpmctl degrade`` wrote; data units) with
    ``model`` (a ``checkpoint.LoadedModel`` or anything with ``process``, ``normalization``,
    ``data_kind``, ``data_shape`` and ``denoiser()``). ``options`` are the fields of
    ``RestoreOptions`` (``eta``, ``zeta``, ``jump_length``, ``jump_n``, ``clip``, ``amp``,
    ``samples``, ``return_std``). Returns (x in data units, info), or (x, std, info) with ``return_std``.

    Images come back float32 clipped to [0, 1] (``clip``). Sample i draws all its noise from its own
    generator seeded from (seed, i), so the result does not depend on ``batch``.

    ``samples = K``: restore every observation K times with independent noise (restoration j of
    observation i seeded by ``restoration_seed(seed, i, j)``; j = 0 is the single-sample run) and
    return the mean of the K (clipped) restorations, a Monte-Carlo estimate of the posterior mean
    E[x | y]; ``return_std`` adds their per-pixel standard deviation (ddof = 1; K >= 2). The K N
    restorations go through the batched loop in chunks of ``batch`` (observation-major), so the
    result does not depend on ``batch`` either. Cost: K times the NFE."""
    y_file = check_observation(model, y_file, op)
    job = plan_restore(model, op, sigma_y, method, steps, int(y_file.shape[0]), batch, RestoreOptions(**options))
    return run_restore(model, job, y_file, op, sigma_y, seed, device, progress)


def run_restore(
    model, job: RestorePlan, y_file: np.ndarray, op: Operator, sigma_y: float, seed: int = 0, device=None, progress=None
):
    """Run a planned ``restore`` (see there)."""
    if seed < 0:
        raise InputError(f"--seed: must be >= 0, got {seed}")
    dev, dtype = place_model(model, device)
    settings, k, n, norm = job.settings, job.settings.samples, job.n, model.normalization
    amp = dev.type == "cuda" and dtype != torch.float64 if settings.amp is None else settings.amp
    denoiser = model.denoiser()
    if settings.labels is not None:
        denoiser.cfg = float(settings.cfg)
    shape = tuple(model.data_shape)
    out = np.empty((n, *shape), dtype=np.float32) if k == 1 else None
    moments = _Moments(n, shape, k, settings.return_std) if k > 1 else None

    def callback(info):
        if progress is not None:
            progress(advance=1)

    def prepare(start, stop):  # row r = restoration r % K of observation r // K
        rows = np.divmod(np.arange(start, stop), k)[0]
        bop = op.select(slice(start, stop) if k == 1 else torch.from_numpy(rows)).to(dev)
        y_rows = y_file[start:stop] if k == 1 else y_file[rows]
        y = bop.decode(torch.from_numpy(np.ascontiguousarray(y_rows)).to(device=dev, dtype=torch.float64))
        obs = Observation(bop, bop.to_model_observation(y, float(norm.scale), float(norm.shift)).to(dtype), job.sigma_m)
        return lambda x, stream: job.method.fn(denoiser, x, job.times, stream, callback, obs=obs, **job.options)

    def sink(start, stop, x_data):
        if moments is None:
            out[start:stop] = x_data
        else:
            moments.add(*np.divmod(np.arange(start, stop), k), x_data)

    seeds = [restoration_seed(seed, i, j) for i, j in zip(*np.divmod(np.arange(n * k), k))]
    run = Batches(
        model,
        denoiser,
        seeds,
        job.batch,
        dev,
        dtype,
        S.start_std(model.process, job.times[0]),
        amp,
        inference=False,
        clip=settings.clip,
        failure=f"{job.method.name} produced NaN or inf{job.method.hint}",
        labels=None if settings.labels is None else np.repeat(settings.labels, k),  # row r: observation r // K
    )
    nfes, seconds = drive(run, prepare, sink)
    info = {
        "method": job.method.name, "task": op.task, "operator": op.params(), "noise": float(sigma_y),
        "steps": len(job.times) - 1, "nfe": int(max(nfes)), "n": n, "samples": k, "batch": job.batch,
        "seed": int(seed), "seconds": seconds, "seconds_per_image": seconds / n, "device": str(dev),
        "process": model.process.describe(), **job.options,
    }  # fmt: skip
    if settings.labels is not None:
        info["cfg"] = float(settings.cfg)
    if job.method.grid != "_grid":
        info["t_start"] = float(job.times[0])
    if settings.return_std:
        return moments.mean(), moments.std(), info
    return (out if moments is None else moments.mean()), info


def restoration_seed(seed: int, index: int, j: int = 0) -> int:
    """The seed of restoration ``j`` of observation ``index``: j = 0 is the sample's own seed
    ``sampling.sample_seed(seed, index)`` (so one sample per observation is the plain run), j >= 1
    the SeedSequence of (seed, index) with spawn key (j,) (its j-th child; never the same entropy)."""
    if j == 0:
        return sample_seed(seed, index)
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)], spawn_key=(int(j),))
    state = ss.generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class _Moments:
    """Per-observation mean and standard deviation of K restorations that arrive in row order
    (observation-major: row r = i K + j), in float64 with the shifted sums
    S1 = sum(x - c), S2 = sum((x - c)^2), c = restoration 0 of the observation: pixels that all
    K restorations agree on (e.g. the known pixels of a noise-free inpainting) come out exactly."""

    def __init__(self, n: int, shape: tuple, k: int, second: bool):
        self.k = k
        self.shift = np.zeros((n, *shape), dtype=np.float32)
        self.s1 = np.zeros((n, *shape), dtype=np.float64)
        self.s2 = np.zeros((n, *shape), dtype=np.float64) if second else None

    def add(self, obs: np.ndarray, js: np.ndarray, x: np.ndarray) -> None:
        first = js == 0
        self.shift[obs[first]] = x[first]
        d = x.astype(np.float64) - self.shift[obs]
        starts = np.flatnonzero(np.r_[True, obs[1:] != obs[:-1]])  # rows are grouped by observation
        groups = obs[starts]
        self.s1[groups] += np.add.reduceat(d, starts, axis=0)
        if self.s2 is not None:
            self.s2[groups] += np.add.reduceat(d * d, starts, axis=0)

    def mean(self) -> np.ndarray:
        return (self.shift + self.s1 / self.k).astype(np.float32)

    def std(self) -> np.ndarray:
        """Sample standard deviation (ddof = 1) over the K restorations."""
        var = (self.s2 - self.s1**2 / self.k) / (self.k - 1)
        return np.sqrt(np.maximum(var, 0.0)).astype(np.float32)


def comparison_rows(sets: list[np.ndarray], width: int = 16, fill: float = 1.0) -> tuple[np.ndarray, int]:
    """Stack image sets (each (N, C, H, W)) as rows for one PNG grid: for every chunk of ``width``
    images, one row per set (observation | restored | truth). Returns (images, nrow)."""
    n = sets[0].shape[0]
    width = max(1, min(width, n))
    rows = []
    for start in range(0, n, width):
        for images in sets:
            chunk = images[start : start + width]
            if chunk.shape[0] < width:
                pad = np.full((width - chunk.shape[0],) + chunk.shape[1:], fill, dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            rows.append(chunk)
    return np.concatenate(rows).astype(np.float32), width
