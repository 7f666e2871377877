"""ddpmctl sample: generate from a checkpoint (or the exact model of a Gaussian mixture)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

import typer

from ddpmctl import io
from ddpmctl.cli.common import (
    HELP_BATCH,
    HELP_DEVICE,
    HELP_JSON,
    HELP_OUTPUT,
    HELP_QUIET,
    HELP_SEED,
    emit_json,
    handle_errors,
    progress,
    report_stream,
)
from ddpmctl.errors import InputError

SAMPLER_HELP = (
    "ddpm (ancestral, Algorithm 2), ddim (--eta), sde (reverse-SDE Euler-Maruyama), pc (predictor-corrector), "
    "ode (probability-flow ODE, --solver), langevin (annealed Langevin, VE models only)."
)


PREVIEW_IMAGES = 64
DEFAULT_GUIDANCE = 3.0  # --guidance with --guide: the best of 1.5-5 on the triangles demo (docs/demo.md)


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
        raise InputError(f"{ckpt}: is an .npy array, not a checkpoint (give a checkpoint folder or .safetensors file, or a mixture .npz)")
    for value, flag in ((process, "--process"), (schedule, "--schedule"), (T, "--T")):
        if value is not None:
            raise InputError(f"{flag}: only for the exact model of a mixture .npz (a checkpoint records its own process)")
    try:
        from ddpmctl.checkpoint import load_model
    except ImportError as e:  # pragma: no cover - only while the checkpoint module is missing
        raise InputError(f"{ckpt}: cannot load checkpoints in this build ({e})") from None
    return load_model(ckpt, device=dev), dev


@handle_errors("sample")
def command(
    checkpoint: str = typer.Argument(
        ..., help="Checkpoint folder or .safetensors file; or a mixture .npz (make-data gmm) to sample its exact model.", metavar="CKPT"
    ),
    sampler: str = typer.Option("ode", "--sampler", help=SAMPLER_HELP),
    solver: Optional[str] = typer.Option(None, "--solver", help="ode: euler, heun, dpm++2m, dpm++3m or rk45 (adaptive) [default: dpm++3m]."),
    steps: Optional[int] = typer.Option(
        None,
        "--steps",
        help="Steps (intervals of the time grid; K steps are K NFE for ddpm, ddim, sde, euler, dpm++) [default: ode dpm++3m/2m 20, heun 10, euler 50; ddpm T or 1000; ddim 50; sde 1000; pc 500; langevin 100].",
    ),
    n: int = typer.Option(64, "--n", "-n", help="Number of samples."),
    batch: int = typer.Option(256, "--batch", help=HELP_BATCH),
    seed: int = typer.Option(0, "--seed", help=HELP_SEED + " Sample i is the same whatever --batch."),
    device: str = typer.Option("auto", "--device", help=HELP_DEVICE),
    spacing: Optional[str] = typer.Option(
        None, "--spacing", help="Time grid: uniform, quadratic, logsnr or karras [default: logsnr for ode, else uniform]."
    ),
    rho: float = typer.Option(7.0, "--rho", help="karras spacing: sigma~^(1/rho) is uniform, from sigma~ = 80 (EDM) or less."),
    eta: float = typer.Option(0.0, "--eta", help="ddim: stochasticity in [0, 1] (1 = ancestral DDPM)."),
    variance: str = typer.Option("small", "--variance", help="ddpm: small (beta-tilde, the posterior) or large (beta_t)."),
    snr: Optional[float] = typer.Option(None, "--snr", help="pc, langevin: Langevin signal-to-noise ratio r [default: pc 0.16, langevin 0.5]."),
    corrector_steps: Optional[int] = typer.Option(
        None, "--corrector-steps", help="pc: Langevin steps after each predictor step; langevin: steps per noise level [default: 1, 2]."
    ),
    rtol: float = typer.Option(1e-5, "--rtol", help="ode rk45: relative tolerance."),
    atol: float = typer.Option(1e-5, "--atol", help="ode rk45: absolute tolerance."),
    clip_x0: Optional[bool] = typer.Option(
        None, "--clip-x0/--no-clip-x0", help="Clip the predicted x0 to the data range [default: on for images, off for points]."
    ),
    guide: Optional[str] = typer.Option(
        None, "--guide", metavar="GUIDE",
        help="Autoguidance (Karras et al. 2024): a weaker model of the same data and process (a checkpoint, or a "
             "train --snapshot file) that the samples are steered away from; 2 NFE per step.",
    ),
    guidance: Optional[float] = typer.Option(
        None, "--guidance", help="With --guide: weight w of x0 = x0_guide + w (x0 - x0_guide); 1 = no guidance [default: 3]."
    ),
    trajectory: int = typer.Option(
        0, "--trajectory", help="Also save K intermediate states and predicted x0 to OUT.trajectory.npy (N, K, 2, ...) and .png."
    ),
    process: Optional[str] = typer.Option(None, "--process", "--sde", help="Mixture .npz only: ddpm, vp, subvp or ve [default: vp]."),
    schedule: Optional[str] = typer.Option(None, "--schedule", help="Mixture .npz with --process ddpm: beta schedule [default: linear]."),
    T: Optional[int] = typer.Option(None, "--T", "-T", help="Mixture .npz with --process ddpm: number of steps [default: 1000]."),
    output: str = typer.Option("samples.npy", "--output", "-o", help=HELP_OUTPUT),
    preview: Optional[str] = typer.Option(None, "--preview", help="Also write a PNG picture of the samples (a grid of the first 64 images, or a scatter plot)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=HELP_QUIET),
    json_out: bool = typer.Option(False, "--json", help=HELP_JSON),
) -> None:
    """Generate samples from a trained checkpoint alone, with any sampler; reports the exact NFE.

    Samplers: ddpm (ancestral, DDPM Algorithm 2), ddim (--eta), sde (Euler-Maruyama on the
    reverse SDE), pc (reverse-diffusion predictor + Langevin corrector), ode (probability-flow
    ODE: --solver euler | heun | dpm++2m | dpm++3m | rk45) and langevin (annealed Langevin
    dynamics, VE models). The default is the ODE with DPM-Solver++(3M), 20 steps on a log-SNR
    grid (20 NFE). --steps K is always K steps (on a DDPM checkpoint: K distinct training steps).
    Images are written in [0, 1], points as they are: .npy, a .png grid (points: a scatter plot)
    or a folder of PNGs. Given a mixture .npz (make-data gmm), samples its exact model: a perfect
    denoiser in closed form, to see what a sampler does with a perfect score (and reports how
    close the samples are to the mixture).

    Example: ddpmctl sample runs/triangles -n 64 -o samples.png

    Example: ddpmctl sample mix.npz --process ve --sampler pc --steps 200 -n 2000 -o pc.png

    Example: ddpmctl sample runs/tri --guide runs/tri/snapshot-20.safetensors --guidance 3 -o guided.png
    """
    if n < 1:
        raise InputError(f"-n: must be >= 1, got {n}")
    if steps is not None and steps < 1:
        raise InputError(f"--steps: must be >= 1, got {steps}")
    if batch < 1:
        raise InputError(f"--batch: must be >= 1, got {batch}")
    if seed < 0:
        raise InputError(f"--seed: must be >= 0, got {seed}")
    if preview is not None and not preview.lower().endswith(".png"):
        raise InputError(f"--preview: {preview}: must be a .png file")
    if trajectory < 0:
        raise InputError(f"--trajectory: must be >= 0, got {trajectory}")
    out_kind = io.output_kind(output)
    _check_output_folder(output)
    if json_out and output == io.STDIO:
        raise InputError("--json: stdout carries the samples (-o -); write them to a file to get the JSON report")
    if trajectory and output == io.STDIO:
        raise InputError("--trajectory: needs a file or folder output (-o), not stdout")
    from ddpmctl import sampling
    from ddpmctl import samplers as S

    if sampler not in S.SAMPLERS:
        raise InputError(f"--sampler: unknown sampler '{sampler}' (choose from {', '.join(S.SAMPLERS)})")
    if guidance is not None and guide is None:
        raise InputError("--guidance: needs --guide (the weaker model to guide with)")
    if guide is not None and _is_mixture(guide) != _is_mixture(checkpoint):
        raise InputError(f"--guide: {guide}: give a guide of the same kind as CKPT (a checkpoint, or a mixture .npz)")
    model, dev = _load(checkpoint, device, process, schedule, T)
    guide_model = None
    if guide is not None:
        guidance = DEFAULT_GUIDANCE if guidance is None else guidance
        try:
            guide_model, _ = _load(guide, device, process, schedule, T)
        except InputError as e:
            raise InputError(f"--guide: {e}") from None
        sampling.check_guide(model, guide_model, guidance)
    if model.data_kind == "points" and out_kind == "folder":
        raise InputError(f"{output}: points cannot be written as a folder of images; use .npy or .png")
    opts = sampling.resolve_options(model, sampler, steps, solver, spacing)
    total_steps = None
    if not (sampler == "ode" and opts["solver"] == "rk45"):
        total_steps = len(S.make_times(model.process, opts["steps"], opts["spacing"], rho=rho)) - 1
        total_steps *= math.ceil(n / batch)
    label = sampler + (f"/{opts['solver']}" if opts["solver"] else "")
    if guide_model is not None and guidance != 1.0:
        label += f", autoguidance w={guidance:g}"
    gen_options = dict(
        steps=opts["steps"], seed=seed, device=dev, solver=opts["solver"], spacing=opts["spacing"], rho=rho, eta=eta,
        variance=variance, snr=snr, corrector_steps=corrector_steps, rtol=rtol, atol=atol, clip_x0=clip_x0,
        guide=guide_model, guidance=1.0 if guidance is None else guidance,
    )  # fmt: skip
    with progress(total_steps, f"sample {label}", quiet=quiet) as update:
        if out_kind == "npy" and not trajectory:  # streamed: memory holds one batch, not n samples
            samples, info = sampling.generate_to_npy(
                model, sampler, n, batch, output, keep=None if _is_mixture(checkpoint) else PREVIEW_IMAGES, progress=update,
                **gen_options
            )
        else:
            samples, info = sampling.generate(
                model, sampler, n=n, batch=batch, trajectory=trajectory, progress=update, **gen_options
            )
            io.save_output(output, samples)
    traj = info.pop("trajectory", None)
    if preview is not None:
        io.save_output(preview, samples[:PREVIEW_IMAGES] if samples.ndim == 4 else samples)
    result = {k: v for k, v in info.items() if k != "times"}
    result.update(output=output, model=checkpoint, data_kind=model.data_kind, shape=[n, *model.data_shape])
    if guide is not None:
        result["guide"] = guide
    if traj is not None:
        npy_path, png_path = _trajectory_paths(output)
        io.save_npy(npy_path, traj)
        sampling.save_trajectory_png(png_path, traj, info["trajectory_times"], model.data_kind)
        result.update(trajectory_npy=npy_path, trajectory_png=png_path, trajectory_shape=list(traj.shape))
    if _is_mixture(checkpoint):
        from ddpmctl.exact import mixture_quality

        result["quality"] = mixture_quality(samples, model.mixture)
    if json_out:
        emit_json(result)
        return
    out = report_stream(output == io.STDIO)
    where = "stdout" if output == io.STDIO else output
    out.write(
        f"wrote {n} samples {tuple(model.data_shape)} to {where}: {label}, {info['steps']} steps ({info['spacing']}), "
        f"NFE {info['nfe']}, {info['seconds']:.2f} s ({1000 * info['seconds_per_sample']:.2f} ms/sample) on {info['device']}\n"
    )
    if traj is not None:
        out.write(f"trajectory: {result['trajectory_npy']} {tuple(traj.shape)} (N, K, [x_t, x0], ...) and {result['trajectory_png']}\n")
    if "quality" in result:
        q = result["quality"]
        out.write(
            f"vs the exact mixture: sliced W1 {q['swd']:.4f} (exact samples: {q['swd_floor']:.4f}), MMD^2 {q['mmd2']:.2e} (exact: 0), "
            f"weight error {q['weight_error']:.4f}, mean error {q['mean_error']:.3f} std, covariance error {100 * q['cov_error']:.1f}%\n"
        )
