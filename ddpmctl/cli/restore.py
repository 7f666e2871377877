"""ddpmctl restore: restore degraded observations with a trained diffusion model (DDNM, RePaint, DPS, PiGDM,
DiffPIR, SDEdit; SR3 with a model trained for super-resolution)."""

from __future__ import annotations

from typing import Optional

import typer

from ddpmctl import io
from ddpmctl import samplers as S
from ddpmctl.cli.common import (
    batch_option,
    cfg_option,
    choice_option,
    class_option,
    device_option,
    emit_json,
    handle_errors,
    json_option,
    progress,
    quiet_option,
    report_stream,
    seed_option,
    steps_option,
)
from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module
from ddpmctl.restore_registry import DEFAULT_METHOD, DEFAULT_ZETA, METHODS, TASKS, describe_default, parse_options

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

# options with long help, declared here so that ``command``'s signature reads as a list
OBSERVATION = typer.Argument(..., help="Observation .npy from 'ddpmctl degrade' (its sidecar .json is read too).")
TRUTH = typer.Option(
    None, "--truth", help="Clean images: report PSNR and SSIM, and add them as a row to a .png output."
)
METHOD = choice_option(
    None,
    "--method",
    METHODS,
    ", ".join(f"{m.name} ({m.help})" for m in METHODS.values())
    + ". Default, per task (the best measured): "
    + ", ".join(f"{task} {name}" for task, name in DEFAULT_METHOD.items())
    + "; an SR3 checkpoint (train --condition sr:F): sr3.",
)
STEPS = steps_option(
    "Diffusion steps (default: "
    + ", ".join(f"{m.name} {m.steps}" for m in METHODS.values() if not m.conditional)
    + "; sdedit: of the full grid, it runs those below its start time; sr3: the --sampler's, as in sample)."
)
SAMPLER = choice_option(
    None,
    "--sampler",
    S.SAMPLERS,
    "sr3: the sampler that draws x given y from the SR3 model, with its default steps and options "
    f"(as 'ddpmctl sample') (default: {S.DEFAULT_SAMPLER}, i.e. DPM-Solver++(3M), 20 steps).",
)
ETA = typer.Option(
    None,
    "--eta",
    help="ddnm/pigdm/sdedit: DDIM stochasticity in [0, 1] (default: "
    + ", ".join(f"{m.name} {describe_default(m.options['eta'])}" for m in METHODS.values() if "eta" in m.options)
    + "); sr3: the --sampler's eta (ddim, euler-a, dpm++2m-sde).",
)
ZETA = typer.Option(
    None,
    "--zeta",
    help=(
        "dps: step size of the gradient of ||y - A x0|| (the code's scaling, = 2 x the paper's zeta') (default: ("
        + ", ".join(f"{v:g} {k}" for k, v in DEFAULT_ZETA.items())
        + ") x 1000 / steps); diffpir: share of fresh noise per step in [0, 1] (default: "
        + describe_default(METHODS["diffpir"].options["zeta"])
        + ")."
    ),
)
JUMP_LENGTH = typer.Option(
    None,
    "--jump-length",
    help=f"repaint: steps per resampling jump (default: {METHODS['repaint'].options['jump_length']}).",
)
JUMP_N = typer.Option(
    None,
    "--jump-n",
    help=f"repaint: passes over each jump (jump_n - 1 resamplings) (default: {METHODS['repaint'].options['jump_n']}).",
)
OPTION = typer.Option(
    None,
    "--option",
    "-O",
    metavar="NAME=VALUE",
    help="A method's option by name (repeatable; overrides its flag); every option and its default: "
    + "; ".join(
        f"{m.name} " + ", ".join(f"{k}={describe_default(v)}" for k, v in m.options.items())
        for m in METHODS.values()
        if m.options
    )
    + ".",
)
SAMPLES = typer.Option(
    1,
    "--samples",
    help=(
        "Restore each observation K times with independent noise and output the mean: a Monte-Carlo estimate of the "
        "posterior mean of x given y (lowest expected squared error, so higher PSNR; K x the cost)."
    ),
)
STD = typer.Option(
    None,
    "--std",
    help=(
        "With --samples K >= 2: write the per-pixel standard deviation of the K restorations (the uncertainty map) "
        "to this .npy file."
    ),
)
OUTPUT = typer.Option(
    ...,
    "--output",
    "-o",
    help=("Restored images: .npy, .png (rows observation | restored | truth), a folder, or - (stdout)."),
)


@handle_errors("restore")
def command(
    checkpoint: str = typer.Argument(..., help="Checkpoint folder or model.safetensors."),
    observation: str = OBSERVATION,
    method: Optional[str] = METHOD,
    steps: Optional[int] = STEPS,
    sampler: Optional[str] = SAMPLER,
    eta: Optional[float] = ETA,
    zeta: Optional[float] = ZETA,
    jump_length: Optional[int] = JUMP_LENGTH,
    jump_n: Optional[int] = JUMP_N,
    option: Optional[list[str]] = OPTION,
    samples: int = SAMPLES,
    std: Optional[str] = STD,
    truth: Optional[str] = TRUTH,
    task: Optional[str] = typer.Option(None, "--task", help=f"Override the sidecar: {', '.join(TASKS)}."),
    box: Optional[str] = typer.Option(None, "--box", help="Override: inpainting hole x,y,w,h."),
    mask: Optional[str] = typer.Option(None, "--mask", help="Override: inpainting mask file (1 = known)."),
    scale: Optional[int] = typer.Option(None, "--scale", help="Override: sr factor."),
    kernel_sigma: Optional[float] = typer.Option(None, "--kernel-sigma", help="Override: deblur kernel sigma."),
    kernel_size: Optional[int] = typer.Option(None, "--kernel-size", help="Override: deblur kernel size."),
    noise: Optional[float] = typer.Option(None, "--noise", help="Override: noise sigma of y in image units ([0, 1])."),
    klass: Optional[str] = class_option("every observation is restored as class K"),
    cfg: Optional[float] = cfg_option("--class"),
    seed: int = seed_option(),
    batch: Optional[int] = batch_option(None, "(default: 64)"),
    device: str = device_option(),
    output: str = OUTPUT,
    json_out: bool = json_option(),
    quiet: bool = quiet_option(),
) -> None:
    """Restore observations y = A x + n (from 'ddpmctl degrade') with a diffusion model as the prior.

    The operator and the noise level come from the observation's sidecar (Y.json); the flags
    --task/--box/--mask/--scale/--kernel-sigma/--kernel-size/--noise override it. Without --method
    each task gets the method that measured best on held-out data (--method's help lists them):
    ddnm (null-space projection in DDIM steps; time travel with -O travel_repeat=R), repaint,
    dps, pigdm, diffpir, sdedit (denoising only). A checkpoint trained for super-resolution
    (train --condition sr:F, SR3) restores its sr observations with --method sr3 (its default):
    the model's own --sampler, given the bicubic-upsampled y. --truth prints PSNR and SSIM;
    --samples K outputs the mean of K restorations (lower squared error), --std their spread.

    Example: ddpmctl restore ckpt/ y.npy --truth tri.npy -o restored.png

    Example: ddpmctl restore ckpt/ y.npy --method dps --steps 500 --zeta 0.3 --json -o x.npy

    Example: ddpmctl restore ckpt/ y.npy --samples 16 --std std.npy --truth tri.npy -o mean.npy

    Example: ddpmctl restore ckpt/ y.npy --method ddnm --steps 50 -O travel_repeat=2 -O travel_length=5 -o x.npy

    Example: ddpmctl restore cond/ y.npy --class disc --cfg 2 -o discs.png   (a class-conditional checkpoint)

    Example: ddpmctl restore sr3/ y.npy --method sr3 --truth tri.npy -o sr.png   (train --condition sr:4)
    """
    from ddpmctl.checkpoint import load_model
    from ddpmctl.device import resolve_device
    from ddpmctl.labels import sample_labels
    from ddpmctl.operators import observation_operator
    from ddpmctl.restore import RestoreOptions, check_observation, plan_restore, run_restore

    _check_outputs(output, std)
    given = dict(eta=eta, zeta=zeta, jump_length=jump_length, jump_n=jump_n, sampler=sampler, **parse_options(option))
    dev = resolve_device(device)
    model = load_model(checkpoint, device=dev)
    y = _read_observation(observation)
    labels = sample_labels(model.class_names, klass, None, None, len(y))
    options = RestoreOptions(**given, samples=samples, return_std=std is not None, labels=labels, cfg=cfg)
    op, sigma, _ = observation_operator(
        observation, y.shape, model.data_shape, task=task, noise=noise,
        box=box, mask=mask, scale=scale, kernel_sigma=kernel_sigma, kernel_size=kernel_size,
    )  # fmt: skip
    job = plan_restore(model, op, sigma, method, steps, y.shape[0], batch, options)
    clean = _read_truth(truth, y.shape[0], model.data_shape)
    y_checked = check_observation(model, y, op)
    with progress(job.progress_total, f"restore {job.method.name}", quiet=quiet) as update:
        result = run_restore(model, job, y_checked, op, sigma, seed, dev, update)
    _write(output, op, y, result[0], clean, model.data_kind, result[-1])
    _finish(result, output, std, json_out, model.data_kind, op, sigma)


def _finish(result: tuple, output: str, std: Optional[str], json_out: bool, data_kind: str, op, sigma: float) -> None:
    """Write the --std map and report (one JSON object with --json, lines for people otherwise)."""
    info = result[-1]
    if std is not None:
        io.save_npy(std, result[1])
        info["std"] = std
    if json_out:
        emit_json({**info, "output": output})
    else:
        _report(info, data_kind, op, sigma, output, std)


def _check_outputs(output: str, std: Optional[str]) -> None:
    io.output_kind(output)
    if std is not None and not std.lower().endswith(".npy"):
        raise InputError(f"--std: {std}: must be a .npy file")


def _read_observation(observation: str) -> np.ndarray:
    y = np.asarray(io.read_npy(observation, mmap=False))
    if y.dtype.kind not in "fui" or y.ndim < 2:
        raise InputError(
            f"{observation}: expected an observation array (N, ...) of numbers, got {y.dtype} {tuple(y.shape)}"
        )
    io.check_finite(y, observation)
    return y


def _read_truth(truth: Optional[str], n: int, data_shape) -> Optional[np.ndarray]:
    if truth is None:
        return None
    clean, _ = io.read_data(truth, mmap=False)
    if clean.shape != (n,) + tuple(data_shape):
        raise InputError(
            f"{truth}: shape {tuple(clean.shape)} does not match the {n} restored samples of shape {tuple(data_shape)}"
        )
    return clean


def _write(output: str, op, y: np.ndarray, x: np.ndarray, clean, data_kind: str, info: dict) -> None:
    """Write the restorations (a .png: rows observation | restored | truth); quality vs --truth into ``info``."""
    import torch

    from ddpmctl.metrics import quality
    from ddpmctl.restore import comparison_rows

    shown = op.display(op.decode(torch.from_numpy(np.asarray(y, dtype=np.float32)))).numpy()
    if data_kind == "images":
        shown = np.clip(shown, 0.0, 1.0)
    if clean is not None:
        info["quality"] = {"observation": quality(shown, clean), "restored": quality(x, clean)}
    kind_out = io.output_kind(output)
    if kind_out == "png" and data_kind == "images":
        images, nrow = comparison_rows([shown, x] + ([clean] if clean is not None else []))
        io.save_grid(output, images, nrow=nrow)
    elif kind_out == "png":
        io.save_scatter(
            output,
            [shown, x] + ([clean] if clean is not None else []),
            titles=["observation", "restored"] + (["truth"] if clean is not None else []),
        )
    else:
        io.save_output(output, x)


def _method_label(info: dict) -> str:
    """The method, and for sr3 the sampler (and ODE solver) it ran."""
    if "sampler" not in info:
        return info["method"]
    return f"{info['method']} ({info['sampler']}" + (f"/{info['solver']}" if info.get("solver") else "") + ")"


def _report(info: dict, data_kind: str, op, sigma: float, output: str, std: Optional[str]) -> None:
    out = report_stream(output == io.STDIO)
    samples = info["samples"]
    per_image = f"{info['nfe']} NFE/image" if samples == 1 else f"mean of {samples} samples x {info['nfe']} NFE/image"
    print(
        f"restored {info['n']} {data_kind} ({op.describe()}, noise {sigma:g}) with {_method_label(info)}: "
        f"{info['steps']} steps, {per_image}, {info['seconds']:.1f} s ({info['seconds_per_image']:.3g} s/image) "
        f"-> {output}" + (f", std -> {std}" if std is not None else ""),
        file=out,
    )
    if "quality" in info:
        for name, q in info["quality"].items():
            vals = ", ".join(
                f"{k.upper()} {v:.2f}{' dB' if k == 'psnr' else ''}" if k == "psnr" else f"{k.upper()} {v:.4f}"
                for k, v in q.items()
            )
            print(f"  {name:12s} {vals}", file=out)
