"""Generating samples from a model: batching, per-sample seeds, NFE accounting, trajectories.

``generate(model, sampler, n, ...)`` runs one of ``ddpmctl.samplers`` over ``n`` samples in batches
and returns them in data units. ``model`` is a ``checkpoint.LoadedModel`` or an
``exact.ExactGMM`` (anything with ``process``, ``normalization``, ``data_kind``, ``data_shape`` and
``denoiser(clip)``).

Sample i starts from, and draws all its noise from, its own generator seeded from (seed, i)
(``samplers.NoiseStream``), so it is the same whatever ``batch`` is, and a run split over several
processes (``start_index``) gives the same samples as one run.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from ddpmctl import samplers as S
from ddpmctl.errors import InputError


def resolve_options(model, sampler: str, steps: int | None = None, solver: str | None = None, spacing: str | None = None) -> dict:
    """Check the sampler against the model's process and fill in the defaults: returns
    {"sampler", "solver", "steps", "spacing"}."""
    process = model.process
    if sampler == "ode":
        solver = solver or S.DEFAULT_SOLVER
    elif solver is not None:
        raise InputError(f"--solver: only the ode sampler takes a solver (got --sampler {sampler})")
    S.check_sampler(sampler, process, solver)
    if steps is None:
        steps = S.default_steps(sampler, process, solver)
    if int(steps) < 1:
        raise InputError(f"--steps: must be >= 1, got {steps}")
    spacing = spacing or S.DEFAULT_SPACING[sampler]
    if spacing not in S.SPACINGS:
        raise InputError(f"--spacing: unknown spacing '{spacing}' (choose from {', '.join(S.SPACINGS)})")
    return {"sampler": sampler, "solver": solver, "steps": int(steps), "spacing": spacing}


def trajectory_frames(n_steps: int, k: int) -> list[int]:
    """Which states a K-frame trajectory keeps: step indices 0 (x at t_max) .. n_steps (the output)."""
    if k <= 1:
        return [n_steps]
    return sorted(set(np.round(np.linspace(0, n_steps, k)).astype(int).tolist()))


def check_guide(model, guide, guidance: float) -> None:
    """InputError unless ``guide`` can guide ``model``: the same process (schedule, T, ...) and
    the same data shape, kind and normalisation; ``guidance`` finite and >= 0."""
    import math

    if not (math.isfinite(guidance) and guidance >= 0):
        raise InputError(f"--guidance: must be a finite number >= 0, got {guidance}")
    mine, theirs = model.process.to_dict(), guide.process.to_dict()
    if mine != theirs:
        raise InputError(f"--guide: the guide's process ({guide.process.describe()}) differs from the model's "
                         f"({model.process.describe()}); guide with a model trained with the same --sde/--schedule/-T")
    for what in ("data_kind", "data_shape"):
        if tuple(np.atleast_1d(getattr(model, what))) != tuple(np.atleast_1d(getattr(guide, what))):
            raise InputError(f"--guide: the guide's {what.replace('_', ' ')} {getattr(guide, what)} differs from "
                             f"the model's {getattr(model, what)}")
    if model.normalization.as_dict() != guide.normalization.as_dict():
        raise InputError(f"--guide: the guide's data normalisation {guide.normalization.as_dict()} differs from "
                         f"the model's {model.normalization.as_dict()}")


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


def generate(
    model,
    sampler: str = "ode",
    n: int = 64,
    steps: int | None = None,
    seed: int = 0,
    batch: int | None = None,
    device: str | torch.device | None = None,
    *,
    solver: str | None = None,
    spacing: str | None = None,
    rho: float = 7.0,
    eta: float = 0.0,
    variance: str = "small",
    snr: float | None = None,
    corrector_steps: int | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    clip_x0: bool | None = None,
    trajectory: int = 0,
    start_index: int = 0,
    amp: bool = False,
    guide=None,
    guidance: float = 1.0,
    progress: Callable[..., None] | None = None,
) -> tuple[np.ndarray, dict]:
    """Draw ``n`` samples; returns (samples in data units, info).

    Images come back as float32 (N, C, H, W) clipped to [0, 1], points as float32 (N, D) as they
    are. ``info`` holds the sampler settings, ``nfe`` (network evaluations per sample; the max
    over batches for rk45), ``times`` (the grid), ``seconds`` and, with ``trajectory = K``,
    ``trajectory`` (float32 (N, K, 2, *shape): [:, k, 0] the state x_t and [:, k, 1] its predicted
    x0, in data units, not clipped) and ``trajectory_times`` (K times; 0 is the output).
    ``progress(advance=1)`` is called after every step of every batch.

    ``guide`` (a model of the same process and data, typically smaller or trained for less) with
    ``guidance`` = w > 1 samples with autoguidance (Karras et al. 2024): the denoiser's x0 becomes
    x0_guide + w (x0 - x0_guide); every step then costs 2 network evaluations (counted in ``nfe``).
    """
    n = int(n)
    if n < 1:
        raise InputError(f"-n: must be >= 1, got {n}")
    batch = int(batch) if batch is not None else min(n, 256)
    if batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    if seed < 0:
        raise InputError(f"--seed: must be >= 0, got {seed}")
    if trajectory < 0:
        raise InputError(f"--trajectory: must be >= 0, got {trajectory}")
    opts = resolve_options(model, sampler, steps, solver, spacing)
    process = model.process
    times = S.make_times(process, opts["steps"], opts["spacing"], rho=rho)
    n_steps = len(times) - 1

    kwargs: dict = {}
    if sampler == "ddpm":
        if variance not in S.VARIANCES:
            raise InputError(f"--variance: unknown variance '{variance}' (choose from {', '.join(S.VARIANCES)})")
        kwargs["variance"] = variance
    elif sampler == "ddim":
        if not 0 <= eta <= 1:
            raise InputError(f"--eta: must lie in [0, 1], got {eta}")
        kwargs["eta"] = eta
    elif sampler in ("pc", "langevin"):
        d = S.SAMPLER_DEFAULTS[sampler]
        kwargs["snr"] = float(d["snr"] if snr is None else snr)
        kwargs["corrector_steps"] = int(d["corrector_steps"] if corrector_steps is None else corrector_steps)
    elif sampler == "ode":
        kwargs["solver"] = opts["solver"]
        if opts["solver"] == "rk45":
            kwargs.update(rtol=float(rtol), atol=float(atol))

    dev, dtype = place_model(model, device)
    exact = dtype == torch.float64
    # bf16 autocast only when asked: a sampler compounds the network's errors over many steps
    amp = bool(amp) and dev.type == "cuda" and not exact
    denoiser = model.denoiser(clip=clip_x0)
    if guide is not None:
        check_guide(model, guide, guidance)
        place_model(guide, dev)
        denoiser.set_guide(guide.denoiser(clip=False), guidance)
    fn = S.SAMPLER_FUNCTIONS[sampler]
    shape = tuple(model.data_shape)
    norm = model.normalization
    prior_std = S.start_std(process, times[0])

    frames = trajectory_frames(n_steps, trajectory) if trajectory else []
    out = np.empty((n, *shape), dtype=np.float32)
    traj = np.empty((n, len(frames), 2, *shape), dtype=np.float32) if frames else None
    nfes: list[int] = []
    t0 = time.perf_counter()
    from ddpmctl.device import autocast

    for start in range(0, n, batch):
        stop = min(n, start + batch)
        stream = S.NoiseStream(seed, range(start_index + start, start_index + stop), shape, device=dev, dtype=dtype)
        x = prior_std * stream()
        kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def callback(info, _kept=kept):
            if info["i"] in frames:
                _kept[info["i"]] = (info["x"].detach().clone(), info["x0"].detach().clone())
            if progress is not None:
                progress(advance=1)

        denoiser.reset()
        before = denoiser.nfe
        # rk45 evaluates x0 at the reported states only for a trajectory (extra, uncounted evaluations)
        cb = None if (sampler == "ode" and opts["solver"] == "rk45" and not frames) else callback
        with torch.inference_mode(), autocast(dev, enabled=amp):
            x = fn(denoiser, x, times, stream, callback=cb, **kwargs)
        if cb is None and progress is not None:
            progress(advance=n_steps)
        nfes.append(denoiser.nfe - before)
        if not torch.isfinite(x).all():
            from ddpmctl.errors import RunError

            raise RunError(f"sampler {sampler} produced NaN or inf (try more --steps{', --no-clip-x0' if clip_x0 else ''})")
        x_data = norm.to_data(x.float()).cpu().numpy()
        if model.data_kind == "images":
            x_data = np.clip(x_data, 0.0, 1.0)
        out[start:stop] = x_data
        if traj is not None:
            kept[n_steps] = (x, x)
            for j, f in enumerate(frames):
                xs, x0s = kept[f] if f in kept else (x, x)
                traj[start:stop, j, 0] = norm.to_data(xs.float()).cpu().numpy()
                traj[start:stop, j, 1] = norm.to_data(x0s.float()).cpu().numpy()
    seconds = time.perf_counter() - t0
    info = {
        "sampler": sampler,
        "solver": opts["solver"],
        "steps": n_steps,
        "spacing": opts["spacing"],
        "nfe": int(max(nfes)),
        "process": process.describe(),
        "n": n,
        "batch": batch,
        "seed": int(seed),
        "seconds": seconds,
        "seconds_per_sample": seconds / n,
        "device": str(dev),
        "times": [float(v) for v in times],
        "options": {k: v for k, v in kwargs.items() if k != "solver"},
        "clip_x0": denoiser.clip is not None,
    }
    if denoiser.guide is not None:
        info["guidance"] = float(guidance)
    if len(set(nfes)) > 1:
        info["nfe_per_batch"] = nfes
    if opts["spacing"] == "karras":
        info["rho"] = rho
    if traj is not None:
        info["trajectory"] = traj
        info["trajectory_times"] = [float(times[f]) if f < n_steps else 0.0 for f in frames]
    return out, info


# --------------------------------------------------------------------------------------------
# trajectory figures


def save_trajectory_png(path, traj: np.ndarray, times: list[float], data_kind: str, rows: int = 8) -> None:
    """The denoising process as a picture (like the figures of seeds 000, 001 and 004).

    Images: for each of the first ``rows`` samples, a row of the states x_t (left: t_max, right:
    the output) and under it a row of the predicted x0. Points: a scatter panel of x_t per kept
    time (top) and of the predicted x0 (bottom)."""
    from ddpmctl import io

    if data_kind == "images":
        m = min(rows, traj.shape[0])
        k = traj.shape[1]
        cells = []
        for i in range(m):
            cells.extend(traj[i, :, 0])
            cells.extend(traj[i, :, 1])
        io.save_grid(path, np.clip(np.stack(cells), 0.0, 1.0), nrow=k)
        return
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = traj.shape[1]
    final = traj[:, -1, 0, :2]
    lo, hi = np.nanmin(final, 0), np.nanmax(final, 0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    fig, axes = plt.subplots(2, k, figsize=(2.6 * k, 5.4), squeeze=False)
    for j in range(k):
        for r, label in enumerate(("x_t", "predicted x0")):
            p = traj[:, j, r]
            ax = axes[r][j]
            ax.scatter(p[:, 0], p[:, 1] if p.shape[1] > 1 else np.zeros(len(p)), s=1, alpha=0.4)
            ax.set_title(f"{label}, t={times[j]:.3g}", fontsize=8)
            ax.tick_params(labelsize=6)
            if r == 1 and p.shape[1] > 1:  # predicted x0 on the axes of the output, so they compare
                ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
                ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    io.write_bytes(path, buf.getvalue())


def generate_to_npy(model, sampler: str, n: int, batch: int, output: str, keep: int | None = 64, progress=None, **options):
    """``generate`` batch by batch, appending each batch to the .npy ``output`` (``-``: stdout) as
    it comes: memory holds one batch, not ``n`` samples. Sample i is the same as in one
    ``generate`` call (per-sample seeds, ``start_index``); the file appears atomically at the end
    (``io.NpyStreamWriter``). Returns (the first ``keep`` samples, e.g. for a preview; all of them
    when ``keep`` is None; for points at least 100,000) and the merged info."""
    from ddpmctl import io

    head_max = n if keep is None else keep if model.data_kind == "images" else max(keep, 100_000)
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
