"""Generating samples from a model: the batch driver shared with restoration, per-sample seeds,
NFE accounting, trajectories.

``generate(model, sampler, n, ...)`` runs one of ``ddpmctl.samplers`` over ``n`` samples in batches
and returns them in data units. ``model`` is a ``checkpoint.LoadedModel`` or an
``exact.ExactGMM`` (anything with ``process``, ``normalization``, ``data_kind``, ``data_shape`` and
``denoiser(clip)``).

Sample i starts from, and draws all its noise from, its own generator seeded from (seed, i)
(``NoiseStream``), so it is the same whatever ``batch`` is, and a run split over several
processes (``start_index``) gives the same samples as one run. ``drive`` is the batch loop that
``generate`` and ``restore.restore`` share.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ddpmctl import samplers as S
from ddpmctl.compiled import CompiledNets, compiled_denoiser
from ddpmctl.device import autocast, inference_layout
from ddpmctl.diffusion import Denoiser
from ddpmctl.errors import InputError, RunError
from ddpmctl.labels import DEFAULT_CFG, default_cfg  # noqa: F401  (re-exported: sampling.DEFAULT_CFG)
from ddpmctl.trajectory_figure import TRAJECTORY_SHOWS, save_trajectory_png  # noqa: F401  (re-exported)

# --------------------------------------------------------------------------------------------
# noise: per-sample streams


def sample_seed(seed: int, index: int) -> int:
    """The seed of sample ``index``'s own generator: a hash of (seed, index) (numpy SeedSequence)."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, int(index)]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class NoiseStream:
    """Standard normal noise where row b of every draw has its own generator, seeded with ``seeds[b]``.

    Each call returns the next noise tensor (B, *shape). Every generator draws blocks of ``block``
    vectors, a size that depends only on the sample shape, so a row sees the same sequence
    whatever the batch it is in (or the process that samples it). Noise is drawn in float32 on
    the CPU and moved to ``device``/``dtype``. ``for_samples(seed, indices, ...)`` gives sample i
    of a run the seed ``sample_seed(seed, i)``.
    """

    def __init__(self, seeds: Sequence[int], shape: tuple, device="cpu", dtype=torch.float32):
        self.shape = tuple(int(s) for s in shape)
        self.device, self.dtype = torch.device(device), dtype
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]
        numel = max(1, int(np.prod(self.shape)))
        self.block = max(1, min(256, (1 << 14) // numel))
        self._buf: torch.Tensor | None = None
        self._pos = self.block
        self.draws = 0

    @classmethod
    def for_samples(cls, seed: int, indices, shape: tuple, device="cpu", dtype=torch.float32) -> NoiseStream:
        """The stream of samples ``indices`` of the run seeded with ``seed``."""
        return cls([sample_seed(seed, i) for i in indices], shape, device=device, dtype=dtype)

    def __call__(self) -> torch.Tensor:
        if self._pos >= self.block:
            self._buf = torch.stack([torch.randn((self.block, *self.shape), generator=g) for g in self.generators], 1)
            self._pos = 0
        out = self._buf[self._pos]
        self._pos += 1
        self.draws += 1
        return out.to(device=self.device, dtype=self.dtype)


# --------------------------------------------------------------------------------------------
# the batch driver


@dataclass
class Batches:
    """One batched run: row r of the output starts from, and draws all its noise from, a generator
    seeded with ``seeds[r]``; ``start_std`` scales its first draw (``samplers.start_std``)."""

    model: Any
    denoiser: Denoiser
    seeds: Sequence[int]
    batch: int
    device: torch.device
    dtype: torch.dtype
    start_std: float
    amp: bool = False
    inference: bool = True  # torch.inference_mode; False: no_grad (a method that takes gradients inside)
    clip: bool = True  # clip images to [0, 1]
    failure: str = "produced NaN or inf"
    start: Any = None  # given starting noise (rows aligned with ``seeds``, before ``start_std``) instead of draws
    labels: Any = None  # the class of each row (aligned with ``seeds``) for a class-conditional model
    cond: Any = None  # the condition image of each row (aligned with ``seeds``; model space) for an SR3 model
    compiled: CompiledNets | None = None  # torch.compile the networks (inference runs only; ``ddpmctl.compiled``)


def drive(run: Batches, prepare: Callable, sink: Callable) -> tuple[list[int], float]:
    """The batch loop: for rows [start, stop), ``prepare(start, stop)`` returns the step
    ``(x, stream) -> x`` (the sampler or method, run under no-grad and autocast from the first noise
    ``x``), and ``sink(start, stop, x_data)`` takes the result in data units. Returns (the NFE of
    each batch, seconds)."""
    shape, norm, n = tuple(run.model.data_shape), run.model.normalization, len(run.seeds)
    nfes: list[int] = []
    t0 = time.perf_counter()
    guide = run.denoiser.guide.net if run.denoiser.guide is not None else None
    # channels_last only without gradients (restore's runs keep NCHW: DPS's backward was slower in it, docs/sample.md)
    nets = [run.denoiser.net, guide] if run.inference else []
    if run.compiled is not None and not run.inference:
        raise ValueError("compiled networks are for runs without gradients (inference=True)")
    with (
        inference_layout(nets, run.model.data_kind, run.device),
        compiled_denoiser(run.denoiser, run.device, run.compiled),
    ):
        for start in range(0, n, run.batch):
            nfes.append(_drive_batch(run, prepare, sink, start, min(n, start + run.batch), shape, norm))
    return nfes, time.perf_counter() - t0


def _drive_batch(run: Batches, prepare: Callable, sink: Callable, start: int, stop: int, shape, norm) -> int:
    """One batch of ``drive``: rows [start, stop); returns its NFE."""
    step = prepare(start, stop)
    stream = NoiseStream(run.seeds[start:stop], shape, device=run.device, dtype=run.dtype)
    x = run.start_std * (stream() if run.start is None else _rows(run.start, start, stop, run))
    run.denoiser.reset()
    if run.labels is not None:
        run.denoiser.set_labels(run.labels[start:stop])
    if run.cond is not None:
        run.denoiser.set_cond(_rows(run.cond, start, stop, run))
    before = run.denoiser.nfe
    with torch.inference_mode() if run.inference else torch.no_grad(), autocast(run.device, enabled=run.amp):
        x = step(x, stream)
    if not torch.isfinite(x).all():
        raise RunError(run.failure)
    x_data = norm.to_data(x.detach().float()).cpu().numpy()
    if run.clip and run.model.data_kind == "images":
        x_data = np.clip(x_data, 0.0, 1.0)
    sink(start, stop, x_data)
    return run.denoiser.nfe - before


def _rows(array, start: int, stop: int, run: Batches) -> torch.Tensor:
    """Rows [start, stop) of a per-row input (starting latents from ``encode``, condition images) as a
    tensor of the run."""
    rows = array[start:stop]
    rows = rows if isinstance(rows, torch.Tensor) else torch.as_tensor(np.asarray(rows))
    return rows.to(device=run.device, dtype=run.dtype)


# --------------------------------------------------------------------------------------------
# sampling


@dataclass(frozen=True)
class SampleOptions:
    """Everything ``generate`` takes besides the model, sampler, n, steps, seed, batch and device.
    The sampler options (``solver`` ... ``restart_steps``) apply to the samplers that take them
    (``samplers.SAMPLERS_BY_NAME``); None is the sampler's default."""

    solver: str | None = None
    spacing: str | None = None
    rho: float = 7.0
    eta: float | None = None
    variance: str = "small"
    snr: float | None = None
    corrector_steps: int | None = None
    rtol: float = 1e-5
    atol: float = 1e-5
    churn: float | None = None
    s_tmin: float | None = None
    s_tmax: float | None = None
    s_noise: float | None = None
    restarts: int | None = None
    restart_steps: int | None = None
    clip_x0: bool | None = None
    trajectory: int = 0
    trajectory_at: Sequence[float] | None = None  # times to keep instead of K evenly spaced frames
    start_index: int = 0
    amp: bool = False
    # torch.compile the network and guide (``ddpmctl.compiled``): True for this run; a CompiledNets to
    # share its graphs with other runs (``generate_to_npy``'s batches)
    compile: bool | CompiledNets = False
    guide: Any = None
    guidance: float | None = None  # with a guide: DEFAULT_GUIDANCE; without: 1 (none)
    start: Any = None  # latents (encode.encode) that sample i starts from, row start_index + i: ode only
    labels: Any = None  # class-conditional models: the class of sample i is labels[start_index + i]
    cfg: float | None = None  # with labels: classifier-free guidance scale s (None: labels.default_cfg)
    cond: Any = None  # SR3 models: the condition c of sample i is cond[start_index + i] (model space, (C, H, W))


# autoguidance's weight w when a guide is given without one: the best of 1.5-5 on the triangles
# demo with base-32 models (docs/demo.md, round 6)
DEFAULT_GUIDANCE = 3.0

# the options of every sampler and ODE solver (``SampleOptions`` has a field for each)
SAMPLER_KEYWORDS = tuple(
    dict.fromkeys(k for r in (*S.SAMPLERS_BY_NAME.values(), *S.ODE_SOLVERS.values()) for k in r.options)
)


@dataclass(frozen=True)
class SamplePlan:
    """A checked ``generate`` run: the sampler's plan, the number of samples and the batch size."""

    plan: S.Plan
    n: int
    batch: int
    options: SampleOptions

    @property
    def progress_total(self) -> int | None:
        """Steps over all batches (the progress bar's total; None where steps are not reported)."""
        return self.plan.steps * math.ceil(self.n / self.batch) if self.plan.free_report else None

    @property
    def label(self) -> str:
        return self.plan.sampler.name + (f"/{self.plan.solver.name}" if self.plan.solver else "")

    @property
    def frames(self) -> list[int]:
        """The step indices a trajectory keeps (``trajectory_frames``); [] without a trajectory."""
        o = self.options
        if not o.trajectory and o.trajectory_at is None:
            return []
        return trajectory_frames(self.plan.times, o.trajectory, o.trajectory_at)


def plan_sample(
    model,
    sampler: str | None = None,
    n: int = 64,
    steps: int | None = None,
    batch: int | None = None,
    options: SampleOptions = SampleOptions(),
) -> SamplePlan:
    """Check a ``generate`` run and fill in its defaults (InputError naming the option); ``sampler``
    None is the model's recorded sampler (``recorded_sampling``), else ode."""
    n = int(n)
    if n < 1:
        raise InputError(f"-n: must be >= 1, got {n}")
    batch = int(batch) if batch is not None else min(n, 256)
    if batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    if options.trajectory < 0:
        raise InputError(f"--trajectory: must be >= 0, got {options.trajectory}")
    if options.guidance is None:
        options = dataclasses.replace(options, guidance=DEFAULT_GUIDANCE if options.guide is not None else 1.0)
    if options.guide is not None:
        check_guide(model, options.guide, options.guidance)
    if options.labels is not None or options.cfg is not None:
        labels = check_classes(model, options.labels, options.cfg, options.start_index + n, options.guide)
        options = dataclasses.replace(options, labels=labels, cfg=default_cfg(options.cfg, options.guide is not None))
    sampler, times = recorded_sampling(model, sampler, steps, options.spacing)
    if options.start is not None:
        check_start(model, options.start, sampler, options.start_index + n)
    check_condition(model, options.cond, options.start_index + n)
    given = {k: getattr(options, k) for k in SAMPLER_KEYWORDS}
    plan = S.plan(model.process, sampler, steps, options.spacing, options.rho, times, **given)
    if options.trajectory_at is not None:  # checked against the grid before any work
        options = dataclasses.replace(options, trajectory_at=tuple(options.trajectory_at))
        trajectory_frames(plan.times, options.trajectory, options.trajectory_at)
    return SamplePlan(plan, n, batch, options)


def recorded_sampling(model, sampler: str | None, steps: int | None, spacing: str | None) -> tuple[str, list | None]:
    """(the sampler, the grid to use as it is or None) of a run. A checkpoint may record how it
    samples (metadata ``"sampling"``: a student of ``ddpmctl distill`` records ddim and the K-step
    grid it was distilled on, docs/distill.md): without --sampler, or with that sampler, its grid
    is used, and --steps other than K or a --spacing is an InputError (the student was trained at
    those K times only); other samplers make their own grids. Else ``sampler`` or ode."""
    rec = (getattr(model, "meta", None) or {}).get("sampling")
    if not rec:
        return sampler or S.DEFAULT_SAMPLER, None
    name, k = rec["sampler"], int(rec["steps"])
    if sampler not in (None, name):
        return sampler, None
    if steps is not None and int(steps) != k:
        raise InputError(
            f"--steps {steps}: this checkpoint was distilled for {k} steps on its own grid; it samples with "
            f"{k} (students with fewer steps are distill's other rounds, student-K.safetensors)"
        )
    if spacing is not None:
        raise InputError(f"--spacing: this checkpoint samples on the grid it was distilled on ({k} steps)")
    return name, [float(t) for t in rec["times"]]


def generate(
    model,
    sampler: str | None = None,
    n: int = 64,
    steps: int | None = None,
    seed: int = 0,
    batch: int | None = None,
    device: str | torch.device | None = None,
    *,
    progress: Callable[..., None] | None = None,
    **options,
) -> tuple[np.ndarray, dict]:
    """Draw ``n`` samples; returns (samples in data units, info). ``options`` are the fields of
    ``SampleOptions`` (``solver``, ``spacing``, ``eta``, ``trajectory``, ``guide``, ...).

    Images come back as float32 (N, C, H, W) clipped to [0, 1], points as float32 (N, D) as they
    are. ``info`` holds the sampler settings, ``nfe`` (network evaluations per sample; the max
    over batches for rk45), ``times`` (the grid), ``seconds`` and, with ``trajectory = K`` or
    ``trajectory_at`` = times (``trajectory_frames``), ``trajectory`` (float32 (N, K, 2, *shape):
    [:, k, 0] the state x_t and [:, k, 1] its predicted x0, in data units, not clipped) and
    ``trajectory_times`` (the K kept grid times; 0 is the output).
    ``progress(advance=1)`` is called after every step of every batch.

    ``guide`` (a model of the same process and data, typically smaller or trained for less) with
    ``guidance`` = w > 1 samples with autoguidance (Karras et al. 2024): the denoiser's x0 becomes
    x0_guide + w (x0 - x0_guide); every step then costs 2 network evaluations (counted in ``nfe``).

    ``labels`` (a class-conditional model: the class of each sample) with ``cfg`` = s samples with
    classifier-free guidance, eps = eps_uncond + s (eps_cond - eps_uncond) (``diffusion.Denoiser``);
    s = 1 (the default) is the conditional model alone; s != 1 costs 2 NFE per step (``nfe`` counts
    both halves of the doubled batch). Without labels a conditional model samples unconditionally.
    """
    job = plan_sample(model, sampler, n, steps, batch, SampleOptions(**options))
    return run_sample(model, job, seed, device, progress)


def _sample_denoiser(model, options: SampleOptions, device: torch.device) -> Denoiser:
    denoiser = model.denoiser(clip=options.clip_x0)
    if options.guide is not None:
        place_model(options.guide, device)
        denoiser.set_guide(options.guide.denoiser(clip=False), options.guidance)
    if options.labels is not None:
        denoiser.cfg = float(options.cfg)
    return denoiser


def run_sample(model, job: SamplePlan, seed: int = 0, device=None, progress=None) -> tuple[np.ndarray, dict]:
    """Run a planned ``generate`` (see there)."""
    if seed < 0:
        raise InputError(f"--seed: must be >= 0, got {seed}")
    plan, opts, n = job.plan, job.options, job.n
    dev, dtype = place_model(model, device)
    # bf16 autocast only when asked: a sampler compounds the network's errors over many steps
    amp = bool(opts.amp) and dev.type == "cuda" and dtype != torch.float64
    denoiser = _sample_denoiser(model, opts, dev)
    shape, norm, n_steps = tuple(model.data_shape), model.normalization, plan.steps
    frames = job.frames
    out = np.empty((n, *shape), dtype=np.float32)
    traj = np.empty((n, len(frames), 2, *shape), dtype=np.float32) if frames else None
    report = bool(frames) or plan.free_report  # rk45 pays extra evaluations for reported states
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def callback(info):
        if info["i"] in frames:
            kept[info["i"]] = (info["x"].detach().clone(), info["x0"].detach().clone())
        if progress is not None:
            progress(advance=1)

    def prepare(start, stop):
        def step(x, stream):
            kept.clear()
            x = plan.run(denoiser, x, stream, callback if report else None)
            if not report and progress is not None:
                progress(advance=n_steps)
            kept[n_steps] = (x, x)
            return x

        return step

    def sink(start, stop, x_data):
        out[start:stop] = x_data
        for j, f in enumerate(frames):
            xs, x0s = kept[f] if f in kept else kept[n_steps]
            traj[start:stop, j, 0] = norm.to_data(xs.float()).cpu().numpy()
            traj[start:stop, j, 1] = norm.to_data(x0s.float()).cpu().numpy()

    seeds = [sample_seed(seed, opts.start_index + i) for i in range(n)]
    hint = "--steps, --no-clip-x0" if opts.clip_x0 else "--steps"
    failure = f"sampler {plan.sampler.name} produced NaN or inf (try more {hint})"
    start = None if opts.start is None else opts.start[opts.start_index : opts.start_index + n]
    labels = None if opts.labels is None else opts.labels[opts.start_index : opts.start_index + n]
    cond = None if opts.cond is None else opts.cond[opts.start_index : opts.start_index + n]
    run = Batches(
        model, denoiser, seeds, job.batch, dev, dtype, S.start_std(model.process, plan.times[0]), amp,
        failure=failure, start=start, labels=labels, cond=cond, compiled=CompiledNets.for_option(opts.compile),
    )  # fmt: skip
    nfes, seconds = drive(run, prepare, sink)
    info = _sample_info(model, job, seed, nfes, seconds, dev, denoiser)
    if run.compiled is not None:
        info["compile_seconds"] = run.compiled.compile_seconds
    if traj is not None:
        info["trajectory"] = traj
        info["trajectory_times"] = frame_times(plan.times)[frames].tolist()
        if opts.trajectory_at is not None:
            info["trajectory_at"] = [float(t) for t in opts.trajectory_at]
    return out, info


def _sample_info(model, job: SamplePlan, seed: int, nfes: list[int], seconds: float, dev, denoiser) -> dict:
    plan = job.plan
    info = {
        "sampler": plan.sampler.name,
        "solver": plan.solver.name if plan.solver else None,
        "steps": plan.steps,
        "spacing": plan.spacing,
        "nfe": int(max(nfes)),
        "process": model.process.describe(),
        "n": job.n,
        "batch": job.batch,
        "seed": int(seed),
        "seconds": seconds,
        "seconds_per_sample": seconds / job.n,
        "device": str(dev),
        "times": [float(v) for v in plan.times],
        "options": {k: v for k, v in plan.options.items() if k != "solver"},
        "clip_x0": denoiser.clip is not None,
    }
    if denoiser.guide is not None:
        info["guidance"] = float(job.options.guidance)
    if job.options.labels is not None:
        info["cfg"] = float(job.options.cfg)
    if len(set(nfes)) > 1:
        info["nfe_per_batch"] = nfes
    if plan.spacing == "karras":
        info["rho"] = job.options.rho
    return info


def frame_times(times) -> np.ndarray:
    """The time of each state a trajectory can keep: the grid's t_0 = t_max > t_1 > ... for the
    states before each step, and 0 for the output (step index n_steps, the final x0)."""
    t = np.array([float(v) for v in times], dtype=np.float64)
    t[-1] = 0.0
    return t


def trajectory_frames(times, k: int = 0, at: Sequence[float] | None = None) -> list[int]:
    """Which states a trajectory keeps, as step indices 0 (x at t_max) .. n_steps (the output) of the
    time grid ``times`` (n_steps + 1 times, or just n_steps): ``k`` evenly spaced ones, or for
    each time in ``at`` (the process's units, as ``trajectory_times``) the state at the nearest
    grid time (``frame_times``; ties go to the larger time). Sorted, each index once."""
    n_steps = times if isinstance(times, int) else len(times) - 1
    if at is None:
        if k <= 1:
            return [n_steps]
        return sorted(set(np.round(np.linspace(0, n_steps, k)).astype(int).tolist()))
    if isinstance(times, int):
        raise TypeError("trajectory_frames: times to keep need the time grid, not its number of steps")
    try:
        at = [float(v) for v in at]
    except (TypeError, ValueError):
        raise InputError(f"--trajectory-at: expected numbers, got {list(at)}") from None
    if not at:
        raise InputError("--trajectory-at: expected at least one time")
    if k and k != len(at):
        raise InputError(f"--trajectory {k} and --trajectory-at ({len(at)} times) disagree: give one of them")
    grid = frame_times(times)
    t_max = float(grid[0])
    for v in at:
        if not (math.isfinite(v) and 0.0 <= v <= t_max):
            raise InputError(f"--trajectory-at: {v:g} is outside [0, t_max = {t_max:g}] (the process's time units)")
    return sorted({int(np.argmin(np.abs(grid - v))) for v in at})


def check_start(model, start, sampler: str, rows: int) -> None:
    """InputError unless ``start`` can be decoded: latents shaped like the model's data, at least
    ``rows`` of them, finite, and the deterministic ``ode`` sampler (a stochastic sampler draws
    fresh noise at every step, so its output is not a function of the latents alone)."""
    if sampler != "ode":
        raise InputError(f"--from: latents decode with the deterministic ode sampler only (got --sampler {sampler})")
    shape = tuple(np.shape(start))
    if shape[1:] != tuple(model.data_shape):
        raise InputError(
            f"--from: latents of shape {shape} do not fit the model's data shape {tuple(model.data_shape)}"
        )
    if shape[0] < rows:
        raise InputError(f"--from: {shape[0]} latents, {rows} needed")
    if not np.isfinite(np.asarray(start[:rows])).all():
        raise InputError("--from: latents contain NaN or inf")


def check_condition(model, cond, rows: int) -> None:
    """InputError unless ``cond`` fits the model: an SR3 model (``model.condition``) needs at least
    ``rows`` finite condition images shaped like its data; a model without a condition takes none.
    ``sample`` gives none, so it refuses an SR3 checkpoint here, before any work."""
    condition = getattr(model, "condition", None)
    if condition is None:
        if cond is not None:
            raise InputError("the checkpoint takes no condition image (it was trained without --condition)")
        return
    if cond is None:
        raise InputError(
            f"the checkpoint is an SR3 model (condition {condition.spec}): it restores low-resolution images; use "
            f"'ddpmctl restore CKPT y.npy --method sr3' (y from 'ddpmctl degrade --task sr --scale {condition.factor}')"
        )
    shape = tuple(np.shape(cond))
    if shape[1:] != tuple(model.data_shape) or shape[0] < rows:
        raise InputError(f"condition images of shape {shape}: {rows} of shape {tuple(model.data_shape)} needed")
    if not torch.isfinite(torch.as_tensor(cond[:rows])).all():
        raise InputError("the condition images contain NaN or inf")


def check_classes(model, labels, cfg: float | None, rows: int, guide=None) -> np.ndarray:
    """The class labels of a run (int64), checked: a class-conditional model, at least ``rows``
    labels, each a class of the model; ``cfg`` a finite scale >= 0 and not with autoguidance (one
    guidance at a time). InputError naming --class / --cfg otherwise."""
    from ddpmctl.labels import check_integers, describe_classes

    k = int(getattr(model, "num_classes", 0) or 0)
    if labels is None:
        raise InputError("--cfg: needs --class (or --classes, --per-class): the classes to guide towards")
    if k == 0:
        raise InputError("--class: the checkpoint is not class-conditional (it was trained without labels)")
    labels = check_integers(labels, "--class")
    if len(labels) < rows:
        raise InputError(f"--class: {len(labels)} class labels for {rows} samples (one per sample needed)")
    if rows and labels[:rows].max() >= k:
        names = getattr(model, "class_names", None) or [str(c) for c in range(k)]
        raise InputError(f"--class: no class {labels[:rows].max()}; the checkpoint has {k}: {describe_classes(names)}")
    if cfg is not None and not (math.isfinite(cfg) and cfg >= 0):
        raise InputError(f"--cfg: must be a finite number >= 0, got {cfg}")
    if guide is not None and cfg is not None and cfg != 1.0:
        raise InputError("--cfg: not with --guide (use classifier-free guidance or autoguidance, not both)")
    theirs = int(getattr(guide, "num_classes", 0) or 0)
    if guide is not None and theirs and theirs != k:
        raise InputError(f"--guide: the guide has {theirs} classes, the checkpoint {k}")
    return labels


def check_guide(model, guide, guidance: float) -> None:
    """InputError unless ``guide`` can guide ``model``: the same process (schedule, T, ...) and
    the same data shape, kind and normalisation; ``guidance`` finite and >= 0."""
    if not (math.isfinite(guidance) and guidance >= 0):
        raise InputError(f"--guidance: must be a finite number >= 0, got {guidance}")
    mine, theirs = model.process.to_dict(), guide.process.to_dict()
    if mine != theirs:
        raise InputError(
            f"--guide: the guide's process ({guide.process.describe()}) differs from the model's "
            f"({model.process.describe()}); guide with a model trained with the same --sde/--schedule/-T"
        )
    for what in ("data_kind", "data_shape"):
        if tuple(np.atleast_1d(getattr(model, what))) != tuple(np.atleast_1d(getattr(guide, what))):
            raise InputError(
                f"--guide: the guide's {what.replace('_', ' ')} {getattr(guide, what)} differs from "
                f"the model's {getattr(model, what)}"
            )
    if model.normalization.as_dict() != guide.normalization.as_dict():
        raise InputError(
            f"--guide: the guide's data normalisation {guide.normalization.as_dict()} differs from "
            f"the model's {model.normalization.as_dict()}"
        )


def place_model(model, device) -> tuple[torch.device, torch.dtype]:
    """Move a checkpoint model (or an exact model) to ``device`` (None: leave it where it is);
    returns (device, dtype) the samplers should work in."""
    if device is not None:
        dev = torch.device(device) if not isinstance(device, torch.device) else device
        if hasattr(model, "to"):
            model.to(dev)
        elif hasattr(model, "net"):
            model.net.to(dev)
    else:
        dev = getattr(model, "device", torch.device("cpu"))
    return dev, getattr(model, "dtype", torch.float32)


def generate_to_npy(
    model, sampler: str, n: int, batch: int, output: str, keep: int | None = 64, progress=None, **options
):
    """``generate`` batch by batch, appending each batch to the .npy ``output`` (``-``: stdout) as
    it comes: memory holds one batch, not ``n`` samples. Sample i is the same as in one
    ``generate`` call (per-sample seeds, ``start_index``); the file appears atomically at the end
    (``io.NpyStreamWriter``). Returns (the first ``keep`` samples, e.g. for a preview; all of them
    when ``keep`` is None; for points at least 100,000) and the merged info."""
    from ddpmctl import io

    head_max = n if keep is None else keep if model.data_kind == "images" else max(keep, 100_000)
    if options.get("compile") is True:  # one graph for all the batches (the last one padded to the first's rows)
        options = {**options, "compile": CompiledNets()}
    head: list[np.ndarray] = []
    have = 0
    infos: list[dict] = []
    with io.NpyStreamWriter(output, (n, *model.data_shape), np.float32) as out:
        for start in range(0, n, batch):
            m = min(batch, n - start)
            x, info = generate(model, sampler, n=m, batch=m, start_index=start, progress=progress, **options)
            out.write(x)
            if have < head_max:
                head.append(x[: head_max - have].copy())
                have += len(head[-1])
            infos.append(info)
    info = dict(infos[0])
    nfes = [i["nfe"] for i in infos]
    seconds = sum(i["seconds"] for i in infos)
    info.update(n=n, batch=batch, nfe=max(nfes), seconds=seconds, seconds_per_sample=seconds / n)
    info.pop("nfe_per_batch", None)
    if len(set(nfes)) > 1:
        info["nfe_per_batch"] = nfes
    return np.concatenate(head), info
