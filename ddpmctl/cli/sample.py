"""ddpmctl sample: generate from a checkpoint (or the exact model of a Gaussian mixture)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple, Optional

import typer

from ddpmctl import io
from ddpmctl import samplers as S
from ddpmctl.cli.common import (
    HELP_OUTPUT,
    at_least,
    batch_option,
    cfg_option,
    choice_option,
    class_option,
    device_option,
    emit_json,
    flag_option,
    handle_errors,
    json_option,
    n_option,
    parse_float_list,
    progress,
    quiet_option,
    report_stream,
    seed_option,
    steps_option,
)
from ddpmctl.errors import InputError

SAMPLER_HELP = (
    ", ".join(
        f"{s.name} ({s.help}{', ' + '/'.join(k.upper() for k in s.processes) + ' models only' if s.processes else ''})"
        for s in S.SAMPLERS_BY_NAME.values()
    )
    + " (default: ode; a student of 'ddpmctl distill': ddim on the grid it was distilled on)."
)
SOLVER_HELP = (
    "ode: " + ", ".join(f"{s.name} ({s.help})" for s in S.ODE_SOLVERS.values()) + f" (default: {S.DEFAULT_SOLVER})."
)
STEPS_HELP = (
    "Steps (intervals of the time grid; K steps are K NFE for ddpm, ddim, sde, euler, dpm++) (default: ode "
    + ", ".join(f"{s.name} {s.steps}" for s in S.ODE_SOLVERS.values())
    + "; "
    + "; ".join(f"{s.name} {'T or ' if s.all_steps else ''}{s.steps}" for s in S.SAMPLERS_BY_NAME.values() if s.steps)
    + "; at most T)."
)
SPACING_HELP = (
    f"Time grid: {', '.join(S.SPACINGS)} (default: "
    + ", ".join(
        f"{sp} for {', '.join(s.name for s in S.SAMPLERS_BY_NAME.values() if s.spacing == sp)}"
        for sp in dict.fromkeys(s.spacing for s in S.SAMPLERS_BY_NAME.values())
        if sp != "uniform"
    )
    + ", else uniform (karras on an edm model))."
)


PREVIEW_IMAGES = 64
TRAJECTORY_SHOWS = ("both", "x0", "xt")  # trajectory_figure.TRAJECTORY_SHOWS, here so that --help needs no numpy


def _is_mixture(path: str) -> bool:
    return path.lower().endswith(".npz")


def _trajectory_paths(output: str) -> tuple[str, str]:
    """Where --trajectory writes: OUT.trajectory.npy/.png next to a file, trajectory.npy/.png in a folder."""
    kind = io.output_kind(output)
    if kind == "folder":
        return str(Path(output) / "trajectory.npy"), str(Path(output) / "trajectory.png")
    stem = output[: -len(Path(output).suffix)]
    return stem + ".trajectory.npy", stem + ".trajectory.png"


def _check_output_folder(path: str) -> None:
    if path == io.STDIO or io.output_kind(path) == "folder":
        return
    folder = Path(path).parent
    if str(folder) and not folder.exists():
        raise InputError(f"{path}: output folder {folder} does not exist")


def _load(ckpt: str, device: str, process: Optional[str], schedule: Optional[str], T: Optional[int]):
    from ddpmctl.device import resolve_device

    dev = resolve_device(device)
    if _is_mixture(ckpt):
        from ddpmctl.exact import ExactGMM
        from ddpmctl.gmm import GaussianMixture
        from ddpmctl.schedules import make_process

        mixture = GaussianMixture.load(ckpt)
        proc = make_process(process or "vp", schedule or "linear", 1000 if T is None else T)
        return ExactGMM(mixture, proc, device=dev), dev
    if ckpt.lower().endswith(".npy"):
        raise InputError(
            f"{ckpt}: is an .npy array, not a checkpoint "
            "(give a checkpoint folder or .safetensors file, or a mixture .npz)"
        )
    for value, flag in ((process, "--process"), (schedule, "--schedule"), (T, "--T")):
        if value is not None:
            raise InputError(
                f"{flag}: only for the exact model of a mixture .npz (a checkpoint records its own process)"
            )
    from ddpmctl.checkpoint import load_model

    return load_model(ckpt, device=dev), dev


# options with long help, declared here so that ``command``'s signature reads as a list
CHECKPOINT = typer.Argument(
    ..., metavar="CKPT",
    help="Checkpoint folder or .safetensors file; or a mixture .npz (make-data gmm) to sample its exact model.",
)  # fmt: skip
SNR = typer.Option(
    None,
    "--snr",
    help="pc, langevin: Langevin signal-to-noise ratio r (default: "
    + ", ".join(f"{s.name} {s.options['snr']}" for s in S.SAMPLERS_BY_NAME.values() if "snr" in s.options)
    + ").",
)
CORRECTOR_STEPS = typer.Option(
    None,
    "--corrector-steps",
    help=(
        "pc: Langevin steps after each predictor step; langevin: steps per noise level (default: "
        + ", ".join(
            f"{s.name} {s.options['corrector_steps']}"
            for s in S.SAMPLERS_BY_NAME.values()
            if "corrector_steps" in s.options
        )
        + ")."
    ),
)
ETA_HELP = (
    "Stochasticity in [0, 1] (ddim: 1 = ancestral DDPM; euler-a, dpm++2m-sde: 0 = their ODE) (default: "
    + ", ".join(f"{s.name} {s.options['eta']:g}" for s in S.SAMPLERS_BY_NAME.values() if "eta" in s.options)
    + ")."
)
SAMPLER_OPTION = typer.Option(
    None,
    "--option",
    "-O",
    metavar="NAME=VALUE",
    help="A sampler's option by name (repeatable; overrides its flag); every option and its default: "
    + "; ".join(
        f"{s.name} " + ", ".join(f"{k}={v}" for k, v in s.options.items())
        for s in (*S.SAMPLERS_BY_NAME.values(), *S.ODE_SOLVERS.values())
        if s.options and s.name != "ode"
    )
    + ".",
)
CLIP_X0 = flag_option(
    "--clip-x0/--no-clip-x0",
    default=None,
    help="Clip the predicted x0 to the data range (default: on for images, off for points).",
)
GUIDE = typer.Option(
    None, "--guide", metavar="GUIDE",
    help="Autoguidance (Karras et al. 2024): a weaker model of the same data and process (a checkpoint, or a "
         "train --snapshot file) that the samples are steered away from; 2 NFE per step.",
)  # fmt: skip
GUIDANCE = typer.Option(
    None,
    "--guidance",
    help="With --guide: weight w of x0 = x0_guide + w (x0 - x0_guide); 1 = no guidance (default: 3).",
)
RHO = typer.Option(7.0, "--rho", help="karras spacing: sigma~^(1/rho) is uniform, from sigma~ = 80 (EDM) or less.")
VARIANCE = choice_option(
    "small", "--variance", S.VARIANCES, "ddpm: small (beta-tilde, the posterior) or large (beta_t)."
)
TRAJECTORY = typer.Option(
    0,
    "--trajectory",
    metavar="K",
    help="Also save K evenly spaced intermediate states and their predicted x0 to OUT.trajectory.npy "
    "(N, K, 2, ...) and a picture OUT.trajectory.png (docs/sample.md, Trajectories).",
)
TRAJECTORY_AT = typer.Option(
    None, "--trajectory-at", metavar="LIST",
    help="Keep the states at these times instead of K evenly spaced ones, e.g. 1,0.8,0.6,0.4,0.2,0: the "
         "process's time units (t_max = 1; sigma for an edm model), each snapped to the nearest time of the "
         "sampler's grid (reported), 0 = the output.",
)  # fmt: skip
TRAJECTORY_SHOW = choice_option(
    None, "--trajectory-show", TRAJECTORY_SHOWS,
    "The trajectory picture: both (per sample a row of states x_t and a row of predicted x0), x0 (one row "
    "of predicted x0 per sample, left t_max, right the output: progressive generation) or xt "
    "(default: both).",
)  # fmt: skip
TRAJECTORY_ROWS = typer.Option(
    None, "--trajectory-rows", metavar="R", callback=at_least("--trajectory-rows", 1),
    help="Images: the trajectory picture shows the first min(N, R) samples (default: 8).",
)  # fmt: skip
PROCESS = typer.Option(None, "--process", "--sde", help="Mixture .npz only: ddpm, vp, subvp, ve or edm (default: vp).")
SCHEDULE = typer.Option(None, "--schedule", help="Mixture .npz with --process ddpm: beta schedule (default: linear).")
STEPS_T = typer.Option(None, "--T", "-T", help="Mixture .npz with --process ddpm: number of steps (default: 1000).")
FROM = typer.Option(
    None, "--from", metavar="LATENTS",
    help="Decode these latents (.npy from 'ddpmctl encode') instead of drawing noise: ode sampler only; "
         "N is their number (-n is ignored). E.g. sample CKPT --from z.npy -o decoded.png.",
)  # fmt: skip
CLASSES = typer.Option(
    None, "--classes", metavar="LIST",
    help="Class-conditional: these classes in turn (sample i of the (i mod m)-th), e.g. 0,2 or triangle,disc.",
)  # fmt: skip
PER_CLASS = typer.Option(
    None, "--per-class", metavar="N",
    help="Class-conditional: N samples of every class, in class order (N x K samples; -n is ignored; "
         "a .png output shows one row per class).",
)  # fmt: skip
COMPILE = flag_option(
    "--compile",
    help="torch.compile the network (CPU or CUDA): faster evaluations after a compile of tens of seconds, "
    "for long runs (docs/sample.md, Speed); samples differ from eager ones by float rounding.",
)
PREVIEW = typer.Option(
    None,
    "--preview",
    help="Also write a PNG picture of the samples (a grid of the first 64 images, or a scatter plot).",
)


@handle_errors("sample")
def command(
    checkpoint: str = CHECKPOINT,
    sampler: Optional[str] = choice_option(None, "--sampler", S.SAMPLERS, SAMPLER_HELP),
    solver: Optional[str] = choice_option(None, "--solver", S.SOLVERS, SOLVER_HELP),
    steps: Optional[int] = steps_option(STEPS_HELP),
    n: int = n_option(64),
    batch: int = batch_option(256),
    seed: int = seed_option(0, "Sample i is the same whatever --batch."),
    device: str = device_option(),
    compile_: bool = COMPILE,
    spacing: Optional[str] = choice_option(None, "--spacing", S.SPACINGS, SPACING_HELP),
    rho: float = RHO,
    eta: Optional[float] = typer.Option(None, "--eta", help=ETA_HELP),
    variance: str = VARIANCE,
    snr: Optional[float] = SNR,
    corrector_steps: Optional[int] = CORRECTOR_STEPS,
    rtol: float = typer.Option(1e-5, "--rtol", help="ode rk45: relative tolerance."),
    atol: float = typer.Option(1e-5, "--atol", help="ode rk45: absolute tolerance."),
    option: Optional[list[str]] = SAMPLER_OPTION,
    clip_x0: Optional[bool] = CLIP_X0,
    guide: Optional[str] = GUIDE,
    guidance: Optional[float] = GUIDANCE,
    trajectory: int = TRAJECTORY,
    trajectory_at: Optional[str] = TRAJECTORY_AT,
    trajectory_show: Optional[str] = TRAJECTORY_SHOW,
    trajectory_rows: Optional[int] = TRAJECTORY_ROWS,
    process: Optional[str] = PROCESS,
    schedule: Optional[str] = SCHEDULE,
    T: Optional[int] = STEPS_T,
    latents: Optional[str] = FROM,
    klass: Optional[str] = class_option("every sample of class K"),
    classes: Optional[str] = CLASSES,
    per_class: Optional[int] = PER_CLASS,
    cfg: Optional[float] = cfg_option("--class, --classes or --per-class", with_guide=True),
    output: str = typer.Option("samples.npy", "--output", "-o", help=HELP_OUTPUT),
    preview: Optional[str] = PREVIEW,
    quiet: bool = quiet_option(),
    json_out: bool = json_option(),
) -> None:
    """Generate samples from a trained checkpoint alone, with any sampler; reports the exact NFE.

    The default is the ODE with DPM-Solver++(3M), 20 steps on a log-SNR grid (20 NFE); a 'distill' student's is
    DDIM on its K-step grid. --steps K is always K steps (on a DDPM checkpoint: K distinct training steps). Images
    are written in [0, 1], points as they are: .npy, a .png grid (points: a scatter plot) or a folder of PNGs. Given
    a mixture .npz (make-data gmm), samples its exact model: a perfect denoiser in closed form, to see what a
    sampler does with a perfect score (and reports how close the samples are to the mixture).

    Example: ddpmctl sample runs/triangles -n 64 -o samples.png

    Example: ddpmctl sample mix.npz --process ve --sampler pc --steps 200 -n 2000 -o pc.png

    Example: ddpmctl sample runs/tri --guide runs/tri/snapshot-20.safetensors --guidance 3 -o guided.png

    Example: ddpmctl sample runs/shapes-cond --class disc --cfg 2 -n 16 -o discs.png   (--per-class 8: 8 of each)

    Example: ddpmctl sample runs/tri -n 8 --trajectory-at 1,0.6,0.3,0 --trajectory-show x0 -o p.png  (x0 as it forms)
    """
    traj = _trajectory(trajectory, trajectory_at, trajectory_show, trajectory_rows)
    _check_outputs(output, preview, traj, json_out)
    model, dev, guide_model = _models(checkpoint, guide, guidance, device, (process, schedule, T))
    start, labels, n = _inputs(model, output, latents, (klass, classes, per_class), n)
    options = dict(
        solver=solver, spacing=spacing, rho=rho, eta=eta, variance=variance, snr=snr, corrector_steps=corrector_steps,
        rtol=rtol, atol=atol, clip_x0=clip_x0, trajectory=traj.k, trajectory_at=traj.at, guide=guide_model,
        guidance=guidance, start=start, labels=labels, cfg=cfg, compile=compile_,
    ) | S.parse_options(option)  # fmt: skip
    from ddpmctl import sampling  # torch: imported when a command runs, not for --help

    job = sampling.plan_sample(model, sampler, n, steps, batch, sampling.SampleOptions(**options))
    label = _label(job, guide_model)
    with progress(job.progress_total, f"sample {label}", quiet=quiet) as update:
        if io.output_kind(output) == "npy" and not traj.wanted:  # streamed: memory holds one batch, not n samples
            keep = None if _is_mixture(checkpoint) else PREVIEW_IMAGES
            samples, info = sampling.generate_to_npy(
                model, sampler, n, batch, output, keep, update, steps=steps, seed=seed, device=dev, **options
            )
        else:
            samples, info = sampling.generate(model, sampler, n, steps, seed, batch, dev, progress=update, **options)
            io.save_output(output, samples, nrow=per_class)
    _emit(_result(model, (checkpoint, guide), (output, preview), samples, info, job, traj), model, label, json_out)


def _emit(result: dict, model, label: str, json_out: bool) -> None:
    """The report: one JSON object (--json) or lines for people."""
    if json_out:
        emit_json(result)
    else:
        _report(result, model, label)


def _inputs(model, output: str, latents: Optional[str], chosen: tuple, n: int):
    """(the --from latents, the class of each sample, the number of samples), checked against the model
    and the output; ``chosen`` is (--class, --classes, --per-class)."""
    from ddpmctl.labels import sample_labels

    if model.data_kind == "points" and io.output_kind(output) == "folder":
        raise InputError(f"{output}: points cannot be written as a folder of images; use .npy or .png")
    start = _read_latents(latents)
    n = n if start is None else len(start)
    if chosen[2] is not None and start is not None:
        raise InputError("--per-class: not with --from (the latents fix the number of samples)")
    if chosen[2] is not None:
        n = chosen[2] * getattr(model, "num_classes", 0)
    names = getattr(model, "class_names", None) or []
    return start, sample_labels(names, *chosen, n), n


def _label(job, guide) -> str:
    """The sampler and the guidance, as the progress bar and the report name them."""
    w, opts = job.options.guidance, job.options
    label = job.label + (f", autoguidance w={w:g}" if guide is not None and w != 1.0 else "")
    if opts.labels is not None:
        label += f", {_classes_text(opts.labels)}" + (f", CFG scale {opts.cfg:g}" if opts.cfg != 1.0 else "")
    return label


def _classes_text(labels) -> str:
    import numpy as np

    kinds = np.unique(labels)
    return f"class {kinds[0]}" if len(kinds) == 1 else f"{len(kinds)} classes"


def _read_latents(path: Optional[str]):
    """The --from latents (None without --from); their shape is checked against the model's by the plan."""
    if path is None:
        return None
    start = io.read_npy(path, mmap=False)
    if len(start) == 0:
        raise InputError(f"--from: {path}: holds no latents (N = 0)")
    return start


class Trajectory(NamedTuple):
    """The --trajectory options: K frames or the times to keep, and what the picture shows."""

    k: int
    at: Optional[list[float]]
    show: str
    rows: int

    @property
    def wanted(self) -> bool:
        return bool(self.k) or self.at is not None


def _trajectory(k: int, at: Optional[str], show: Optional[str], rows: Optional[int]) -> Trajectory:
    """The --trajectory options, parsed; the picture's options need a trajectory (the times are
    checked against the sampler's grid by ``sampling.plan_sample``)."""
    times = None if at is None else parse_float_list(at, "--trajectory-at")
    if not k and times is None:
        for value, flag in ((show, "--trajectory-show"), (rows, "--trajectory-rows")):
            if value is not None:
                raise InputError(f"{flag}: needs --trajectory K or --trajectory-at LIST")
    return Trajectory(k, times, show or "both", 8 if rows is None else rows)


def _check_outputs(output: str, preview: Optional[str], trajectory: Trajectory, json_out: bool) -> None:
    if preview is not None and not preview.lower().endswith(".png"):
        raise InputError(f"--preview: {preview}: must be a .png file")
    _check_output_folder(output)
    if json_out and output == io.STDIO:
        raise InputError("--json: stdout carries the samples (-o -); write them to a file to get the JSON report")
    if trajectory.wanted and output == io.STDIO:
        raise InputError("--trajectory: needs a file or folder output (-o), not stdout")


def _models(checkpoint: str, guide: Optional[str], guidance: Optional[float], device: str, exact: tuple):
    """(the model, its device, the --guide model or None); ``exact`` is (--process, --schedule, --T)."""
    model, dev = _load(checkpoint, device, *exact)
    return model, dev, _load_guide(guide, guidance, checkpoint, device, *exact)


def _load_guide(guide: Optional[str], guidance: Optional[float], checkpoint: str, device: str, process, schedule, T):
    """The --guide model (None without --guide), of the same kind as CKPT."""
    if guide is None:
        if guidance is not None:
            raise InputError("--guidance: needs --guide (the weaker model to guide with)")
        return None
    if _is_mixture(guide) != _is_mixture(checkpoint):
        raise InputError(f"--guide: {guide}: give a guide of the same kind as CKPT (a checkpoint, or a mixture .npz)")
    try:
        return _load(guide, device, process, schedule, T)[0]
    except InputError as e:
        raise InputError(f"--guide: {e}") from None


def _result(model, models: tuple, outputs: tuple, samples, info, job, traj: Trajectory) -> dict:
    """Write the preview, the trajectory and the labels (OUT.labels.npy beside an .npy); the JSON report.
    ``models`` is (CKPT, the --guide path or None), ``outputs`` (-o, --preview)."""
    from ddpmctl.labels import labels_path

    (checkpoint, guide), (output, preview), labels = models, outputs, job.options.labels

    kept = info.pop("trajectory", None)
    if preview is not None:
        io.save_output(preview, samples[:PREVIEW_IMAGES] if samples.ndim == 4 else samples)
    result = {k: v for k, v in info.items() if k != "times"}
    # job.n, not len(samples): a streamed .npy output leaves only the preview's samples in memory
    result.update(output=output, model=checkpoint, data_kind=model.data_kind, shape=[job.n, *model.data_shape])
    if labels is not None:
        result.update(classes=[model.class_names[c] for c in sorted(set(labels[: job.n].tolist()))])
        if io.output_kind(output) == "npy" and output != io.STDIO:
            io.save_npy(labels_path(output), labels[: job.n])
            result["labels"] = labels_path(output)
    if guide is not None:
        result["guide"] = guide
    if kept is not None:
        result.update(_save_trajectory(output, kept, info["trajectory_times"], model.data_kind, traj))
    if _is_mixture(checkpoint):
        from ddpmctl.exact import mixture_quality

        target = model.mixture if labels is None else model.class_mixture(labels[: len(samples)])
        result["quality"] = mixture_quality(samples, target)
    return result


def _save_trajectory(output: str, kept, times: list[float], data_kind: str, traj: Trajectory) -> dict:
    """Write OUT.trajectory.npy and its picture; their part of the report."""
    from ddpmctl import sampling

    npy_path, png_path = _trajectory_paths(output)
    io.save_npy(npy_path, kept)
    sampling.save_trajectory_png(png_path, kept, times, data_kind, rows=traj.rows, show=traj.show)
    rows = min(traj.rows, len(kept)) if data_kind == "images" else len(kept)
    return dict(
        trajectory_npy=npy_path, trajectory_png=png_path, trajectory_shape=list(kept.shape),
        trajectory_show=traj.show, trajectory_rows=rows,
    )  # fmt: skip


def _report(result: dict, model, label: str) -> None:
    output = result["output"]
    out = report_stream(output == io.STDIO)
    where = "stdout" if output == io.STDIO else output
    out.write(
        f"wrote {result['n']} samples {tuple(model.data_shape)} to {where}: {label}, {result['steps']} steps "
        f"({result['spacing']}), NFE {result['nfe']}, {result['seconds']:.2f} s "
        f"({1000 * result['seconds_per_sample']:.2f} ms/sample) on {result['device']}"
        + ("" if result.get("compile_seconds") is None else f", {result['compile_seconds']:.1f} s of it compiling")
        + "\n"
    )
    if "trajectory_npy" in result:
        _report_trajectory(out, result)
    if "labels" in result:
        out.write(f"labels: {result['labels']} (classes {', '.join(result['classes'])})\n")
    if "quality" in result:
        q = result["quality"]
        out.write(
            f"vs the exact {'class-conditional ' if 'classes' in result else ''}mixture: "
            f"sliced W1 {q['swd']:.4f} (exact samples: {q['swd_floor']:.4f}), "
            f"MMD^2 {q['mmd2']:.2e} (exact: 0), weight error {q['weight_error']:.4f}, "
            f"mean error {q['mean_error']:.3f} std, covariance error {100 * q['cov_error']:.1f}%\n"
        )


def _report_trajectory(out, result: dict) -> None:
    times = ", ".join(f"{t:.4g}" for t in result["trajectory_times"])
    asked = result.get("trajectory_at")
    show = {"both": "x_t and predicted x0", "x0": "predicted x0", "xt": "x_t"}[result["trajectory_show"]]
    out.write(
        f"trajectory: {result['trajectory_npy']} {tuple(result['trajectory_shape'])} (N, K, [x_t, x0], ...) "
        f"and {result['trajectory_png']} ({show} of {result['trajectory_rows']} samples); kept times t = {times}"
        + ("" if asked is None else f" (the grid times nearest to {', '.join(f'{t:g}' for t in asked)})")
        + "\n"
    )
