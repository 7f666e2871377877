"""Planning and running ``restore``: options, defaults, the batch driver of ``sampling`` and the
posterior mean of K restorations (``samples = K``).

Posterior mean (``samples = K > 1``, any method): every observation is restored K times with
independent noise and the mean of the K restorations is returned, a Monte-Carlo estimate of
E[x | y] (the estimator of least expected squared error), optionally with the per-pixel standard
deviation. The K x N restorations run through the same batched loop.
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
from ddpmctl.errors import InputError
from ddpmctl.labels import default_cfg
from ddpmctl.operators import Operator
from ddpmctl.restore.base import Observation
from ddpmctl.restore_registry import DEFAULT_SETTINGS, METHODS, OPTION_TYPES, Method, default_method, get_method
from ddpmctl.sampling import Batches, check_classes, drive, place_model, sample_seed


def check_samples(samples, return_std: bool = False) -> int:
    """``samples`` as an int >= 1 (InputError otherwise; ``return_std`` needs >= 2)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise InputError(f"--samples: must be an integer >= 1, got {samples}")
    if return_std and samples < 2:
        raise InputError(f"--std: needs --samples >= 2 (the spread of several restorations), got --samples {samples}")
    return int(samples)


@dataclass(frozen=True)
class RestoreOptions:
    """``restore``'s options besides the model, observation, method, steps, seed, batch and device.
    The method options (eta ... lam; ``registry.OPTION_TYPES``) apply to the methods that take them;
    None is the method's default."""

    eta: float | None = None
    zeta: float | None = None
    jump_length: int | None = None
    jump_n: int | None = None
    travel_length: int | None = None
    travel_interval: int | None = None
    travel_repeat: int | None = None
    weight: float | None = None
    lam: float | None = None
    clip: bool = True
    amp: bool | None = None
    samples: int = 1
    return_std: bool = False
    labels: Any = None  # class-conditional models: the class of each observation
    cfg: float | None = None  # with labels: classifier-free guidance scale (None: ``labels.default_cfg``)
    sampler: str | None = None  # conditional methods (sr3): the sampler (``samplers.DEFAULT_SAMPLER`` when None)

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
    method: str | None = None,
    steps: int | None = None,
    n: int = 1,
    batch: int | None = None,
    options: RestoreOptions = RestoreOptions(),
) -> RestorePlan:
    """Check a ``restore`` run and fill in its defaults (InputError naming the option). ``method``
    None is the task's default (``registry.DEFAULT_METHOD``), or sr3 for an SR3 checkpoint."""
    samples = check_samples(options.samples, options.return_std)
    if method is None and getattr(model, "condition", None) is not None:
        method = next(m.name for m in METHODS.values() if m.conditional)
    if method is None:  # the task's default, with its measured steps and options
        method, (task_steps, settings) = default_method(op.task), DEFAULT_SETTINGS[op.task]
        given = {k: v for k, v in settings.items() if getattr(options, k) is None}
        options = dataclasses.replace(options, **given)
        steps = min(task_steps, model.process.max_steps or task_steps) if steps is None else steps
    record = get_method(method)
    _check_conditional(record, model, op)
    record.check(op, sigma_y)
    options.check()
    total = n * samples
    batch = min(total, 64) if batch is None else int(batch)
    if batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    sigma_m = abs(float(model.normalization.scale)) * float(sigma_y)
    if options.labels is not None or options.cfg is not None:
        labels = check_classes(model, options.labels, options.cfg, n)[:n]
        options = dataclasses.replace(options, labels=labels, cfg=default_cfg(options.cfg, guided=False))
    times, kwargs = _grid_and_options(record, model, op, steps, sigma_m, options)
    return RestorePlan(record, times, kwargs, n, batch, sigma_m, options)


def _grid_and_options(record: Method, model, op: Operator, steps, sigma_m: float, options: RestoreOptions):
    """(the time grid, the keywords of ``record.fn``): a conditional method's are its sampler's plan
    (``samplers.plan``: the sampler's default steps, spacing and options; ``eta`` passed on)."""
    if record.conditional:
        plan = S.plan(model.process, options.sampler or S.DEFAULT_SAMPLER, steps, eta=options.eta)
        return plan.times, {"sampler": plan.sampler.name, **plan.options}
    if options.sampler is not None:
        raise InputError(f"--sampler: only --method sr3 runs a sampler (--method {record.name} has its own steps)")
    steps = record.default_steps(model.process) if steps is None else int(steps)
    times = record.times(model.process, steps, sigma_m)
    kwargs = {}
    for k, default in record.options.items():
        value = default if getattr(options, k) is None else getattr(options, k)
        kwargs[k] = OPTION_TYPES[k](value(op.task, len(times) - 1) if callable(value) else value)
    if record.check_options is not None:
        record.check_options(kwargs)
    return times, kwargs


def _check_conditional(record: Method, model, op: Operator) -> None:
    """InputError (one line) unless the method and the checkpoint agree on a condition: a conditional
    method (sr3) needs an SR3 checkpoint whose condition is this observation's operator (task and
    scale); an SR3 checkpoint restores with a conditional method only."""
    condition = getattr(model, "condition", None)
    if condition is None:
        if record.conditional:
            raise InputError(
                f"--method {record.name}: the checkpoint is not an SR3 model (train one with --condition sr:F); "
                "restore with another method, e.g. dps"
            )
        return
    if op.task != condition.kind or getattr(op, "scale", None) != condition.factor:
        raise InputError(
            f"the checkpoint is an SR3 model for {condition.spec} observations (degrade --task sr --scale "
            f"{condition.factor}); this observation is {op.describe()}"
        )
    if not record.conditional:
        raise InputError(
            f"--method {record.name}: the checkpoint is an SR3 model (condition {condition.spec}) that needs its "
            "condition; use --method sr3"
        )


def condition_images(model, op: Operator, y_file: np.ndarray) -> torch.Tensor:
    """SR3's condition of every observation: c = bicubic(y) in model space, upsampled in float32 as at
    training (``conditions``)."""
    norm = model.normalization
    y = op.decode(torch.from_numpy(np.ascontiguousarray(y_file)).to(torch.float64))
    y_m = op.to_model_observation(y, float(norm.scale), float(norm.shift))
    return model.condition.from_observation(y_m.float())


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
    method: str | None = None,
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
    ``data_kind``, ``data_shape`` and ``denoiser()``). ``method`` None is the task's default.
    ``options`` are the fields of ``RestoreOptions`` (the method options ``eta``, ``zeta``,
    ``jump_length``, ``jump_n``, ``travel_length``, ``travel_interval``, ``travel_repeat``,
    ``weight``, ``lam``; ``clip``, ``amp``, ``samples``, ``return_std``). Returns (x in data units,
    info), or (x, std, info) with ``return_std``.

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
    cond = condition_images(model, op, y_file).repeat_interleave(k, 0) if job.method.conditional else None
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
        cond=cond,  # SR3: row r's condition is that of observation r // K
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
    if job.method.conditional:
        info["condition"] = model.condition.spec
    elif job.method.grid != "plain_grid":
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
