"""ddpmctl restore: restore degraded observations with a trained diffusion model (DDNM, DPS, RePaint, SDEdit)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
import typer

from ddpmctl import io
from ddpmctl.cli.common import (
    HELP_BATCH,
    HELP_DEVICE,
    HELP_JSON,
    HELP_QUIET,
    HELP_SEED,
    emit_json,
    handle_errors,
    progress,
    report_stream,
)
from ddpmctl.errors import InputError
from ddpmctl.operators import TASKS, observation_operator


@handle_errors("restore")
def command(
    checkpoint: str = typer.Argument(..., help="Checkpoint folder or model.safetensors."),
    observation: str = typer.Argument(..., help="Observation .npy from 'ddpmctl degrade' (its sidecar .json is read too)."),
    method: str = typer.Option("ddnm", "--method", help="ddnm (null-space projection; DDNM+ for noisy y), dps (posterior sampling), repaint (inpainting with resampling), sdedit (denoising)."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Diffusion steps (default: ddnm 100, dps 1000, repaint 250, sdedit 100 (of the full grid; it runs those below its start time))."),
    eta: Optional[float] = typer.Option(None, "--eta", help="ddnm/sdedit: DDIM stochasticity in [0, 1] (default: ddnm 0.85, sdedit 1)."),
    zeta: Optional[float] = typer.Option(None, "--zeta", help="dps: step size of the gradient of ||y - A x0|| (the code's scaling, = 2 x the paper's zeta') (default: (0.5 inpaint, 0.3 sr/deblur, 0.06 denoise) x 1000 / steps)."),
    jump_length: Optional[int] = typer.Option(None, "--jump-length", help="repaint: steps per resampling jump (default: 10)."),
    jump_n: Optional[int] = typer.Option(None, "--jump-n", help="repaint: passes over each jump (jump_n - 1 resamplings) (default: 10)."),
    samples: int = typer.Option(1, "--samples", help="Restore each observation K times with independent noise and output the mean: a Monte-Carlo estimate of the posterior mean of x given y (lowest expected squared error, so higher PSNR; K x the cost)."),
    std: Optional[str] = typer.Option(None, "--std", help="With --samples K >= 2: write the per-pixel standard deviation of the K restorations (the uncertainty map) to this .npy file."),
    truth: Optional[str] = typer.Option(None, "--truth", help="Clean images: report PSNR and SSIM, and add them as a row to a .png output."),
    task: Optional[str] = typer.Option(None, "--task", help=f"Override the sidecar: {', '.join(TASKS)}."),
    box: Optional[str] = typer.Option(None, "--box", help="Override: inpainting hole x,y,w,h."),
    mask: Optional[str] = typer.Option(None, "--mask", help="Override: inpainting mask file (1 = known)."),
    scale: Optional[int] = typer.Option(None, "--scale", help="Override: sr factor."),
    kernel_sigma: Optional[float] = typer.Option(None, "--kernel-sigma", help="Override: deblur kernel sigma (pixels)."),
    kernel_size: Optional[int] = typer.Option(None, "--kernel-size", help="Override: deblur kernel size."),
    noise: Optional[float] = typer.Option(None, "--noise", help="Override: noise sigma of y in image units ([0, 1])."),
    seed: int = typer.Option(0, "--seed", help=HELP_SEED),
    batch: Optional[int] = typer.Option(None, "--batch", help=HELP_BATCH + " (default: 64)"),
    device: str = typer.Option("auto", "--device", help=HELP_DEVICE),
    output: str = typer.Option(..., "--output", "-o", help="Restored images: .npy, .png (rows observation | restored | truth), a folder, or - (stdout)."),
    json_out: bool = typer.Option(False, "--json", help=HELP_JSON),
    quiet: bool = typer.Option(False, "--quiet", help=HELP_QUIET),
) -> None:
    """Restore observations y = A x + n (from 'ddpmctl degrade') with a diffusion model as the prior.

    The operator and the noise level come from the observation's sidecar (Y.json); the flags
    --task/--box/--mask/--scale/--kernel-sigma/--kernel-size/--noise override it. Methods: ddnm
    (default; x0 <- A^+ y + (I - A^+ A) x0 inside DDIM steps, DDNM+ when y is noisy), dps
    (gradient of ||y - A x0|| through the network), repaint (known part replaced, with resampling
    jumps; not for denoising), sdedit (denoising only: starts where the model's noise level
    matches that of y). With --truth it prints the PSNR and SSIM of the observation and of the
    restoration. --samples K outputs the mean of K restorations (an estimate of the posterior
    mean, which raises PSNR), --std their per-pixel spread.

    Example: ddpmctl degrade tri.npy --task inpaint --box 8,8,16,16 -o y.npy && ddpmctl restore ckpt/ y.npy --truth tri.npy -o restored.png

    Example: ddpmctl restore ckpt/ y.npy --method dps --steps 500 --zeta 0.3 --json -o x.npy

    Example: ddpmctl restore ckpt/ y.npy --samples 16 --std std.npy --truth tri.npy -o mean.npy
    """
    from ddpmctl.checkpoint import load_model
    from ddpmctl.device import resolve_device
    from ddpmctl.metrics import quality
    from ddpmctl.restore import check_method, check_samples, comparison_rows, default_steps, plan, restore

    kind_out = io.output_kind(output)
    check_samples(samples, std is not None)
    if std is not None and not std.lower().endswith(".npy"):
        raise InputError(f"--std: {std}: must be a .npy file")
    dev = resolve_device(device)
    model = load_model(checkpoint, device=dev)
    y = np.asarray(io.read_npy(observation, mmap=False))
    if y.dtype.kind not in "fui" or y.ndim < 2:
        raise InputError(f"{observation}: expected an observation array (N, ...) of numbers, got {y.dtype} {tuple(y.shape)}")
    io.check_finite(y, observation)
    op, sigma, _ = observation_operator(
        observation, y.shape, model.data_shape, task=task, noise=noise,
        box=box, mask=mask, scale=scale, kernel_sigma=kernel_sigma, kernel_size=kernel_size,
    )
    check_method(method, op, sigma)
    clean = None
    if truth is not None:
        clean, _ = io.read_data(truth, mmap=False)
        if clean.shape != (y.shape[0],) + tuple(model.data_shape):
            raise InputError(f"{truth}: shape {tuple(clean.shape)} does not match the {y.shape[0]} restored samples of shape {tuple(model.data_shape)}")
    n_steps = default_steps(method, model.process) if steps is None else steps
    sigma_m = abs(model.normalization.scale) * sigma
    _, nfe = plan(method, model.process, n_steps, sigma_m, jump_length or 10, jump_n or 10)
    rows = y.shape[0] * samples
    n_batches = -(-rows // max(1, batch or min(rows, 64)))
    with progress(nfe * n_batches, f"restore {method}", quiet=quiet) as update:
        result = restore(
            model, y, op, sigma, method, steps, eta=eta, zeta=zeta, jump_length=jump_length, jump_n=jump_n,
            seed=seed, batch=batch, device=dev, progress=update, samples=samples, return_std=std is not None,
        )
    x, info = result[0], result[-1]
    shown = op.display(op.decode(torch.from_numpy(np.asarray(y, dtype=np.float32)))).numpy()
    if model.data_kind == "images":
        shown = np.clip(shown, 0.0, 1.0)
    if clean is not None:
        info["quality"] = {"observation": quality(shown, clean), "restored": quality(x, clean)}
    if kind_out == "png" and model.data_kind == "images":
        sets = [shown, x] + ([clean] if clean is not None else [])
        images, nrow = comparison_rows(sets)
        io.save_grid(output, images, nrow=nrow)
    elif kind_out == "png":
        io.save_scatter(output, [shown, x] + ([clean] if clean is not None else []),
                        titles=["observation", "restored"] + (["truth"] if clean is not None else []))
    else:
        io.save_output(output, x)
    if std is not None:
        io.save_npy(std, result[1])
        info["std"] = std
    if json_out:
        emit_json({**info, "output": output})
        return
    out = report_stream(output == io.STDIO)
    per_image = f"{info['nfe']} NFE/image" if samples == 1 else f"mean of {samples} samples x {info['nfe']} NFE/image"
    print(f"restored {info['n']} {model.data_kind} ({op.describe()}, noise {sigma:g}) with {method}: "
          f"{info['steps']} steps, {per_image}, {info['seconds']:.1f} s ({info['seconds_per_image']:.3g} s/image) -> {output}"
          + (f", std -> {std}" if std is not None else ""), file=out)
    if clean is not None:
        for name, q in info["quality"].items():
            vals = ", ".join(f"{k.upper()} {v:.2f}{' dB' if k == 'psnr' else ''}" if k == "psnr" else f"{k.upper()} {v:.4f}" for k, v in q.items())
            print(f"  {name:12s} {vals}", file=out)
