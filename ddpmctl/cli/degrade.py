"""ddpmctl degrade: make observations y = A x + n (inpainting, denoising, super-resolution, deblurring)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ddpmctl import io
from ddpmctl.cli.common import HELP_JSON, HELP_SEED, emit_json, handle_errors, report_stream
from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module
from ddpmctl.restore_registry import TASKS

np = lazy_module("numpy")  # imported on first use (docs/startup.md)

# options with long help, declared here so that ``command``'s signature reads as a list
CLEAN = typer.Argument(..., help="Clean images (.npy, image file or folder) or points (.npy (N, D)); - for stdin.")
BOX = typer.Option(
    None,
    "--box",
    help=("inpaint: hide the box x,y,w,h (column, row, width, height) (default: the centre box of half the size)."),
)
KEEP = typer.Option(
    None, "--keep", help="inpaint: keep this random fraction of pixels (a new mask per image, from --seed)."
)
MASK = typer.Option(None, "--mask", help="inpaint: mask file (.npy or .png; 1/white = known, 0/black = missing).")
KERNEL_SIGMA = typer.Option(None, "--kernel-sigma", help="deblur: Gaussian kernel sigma in pixels (default: 2).")
KERNEL_SIZE = typer.Option(None, "--kernel-size", help="deblur: odd kernel size (default: 2 ceil(3 sigma) + 1).")
NOISE = typer.Option(0.0, "--noise", help="Standard deviation of the Gaussian noise n, in image units ([0, 1]).")
OUTPUT = typer.Option(
    ..., "--output", "-o", help="Observation .npy (with a sidecar .json next to it), a .png picture, or - (stdout)."
)


@handle_errors("degrade")
def command(
    clean: str = CLEAN,
    task: str = typer.Option(..., "--task", help=f"Degradation: {', '.join(TASKS)}."),
    box: Optional[str] = BOX,
    keep: Optional[float] = KEEP,
    mask: Optional[str] = MASK,
    scale: Optional[int] = typer.Option(
        None, "--scale", help="sr: downsampling factor (average pooling) (default: 4)."
    ),
    kernel_sigma: Optional[float] = KERNEL_SIGMA,
    kernel_size: Optional[int] = KERNEL_SIZE,
    noise: float = NOISE,
    seed: int = typer.Option(0, "--seed", help=HELP_SEED),
    output: str = OUTPUT,
    json_out: bool = typer.Option(False, "--json", help=HELP_JSON),
) -> None:
    """Degrade clean data into an observation y = A x + n for 'ddpmctl restore'.

    A is a mask (inpaint), the identity (denoise), s x s average pooling (sr) or a circular Gaussian
    blur (deblur); n is white Gaussian noise of standard deviation --noise in image units. The
    observation is written as .npy (not clipped, so the noise stays Gaussian; for sr it is the
    low-resolution array; for inpaint the missing pixels hold 0.5) together with a sidecar Y.json
    that records the operator, its parameters, the noise and the seed, so restore needs no flags.

    Example: ddpmctl degrade tri.npy --task inpaint --box 8,8,16,16 -o y.npy

    Example: ddpmctl degrade tri.npy --task sr --scale 4 --noise 0.02 -o y.npy
    """
    kind_out = io.output_kind(output)
    if kind_out == "folder":
        raise InputError(f"{output}: degrade writes a .npy observation (or a .png picture, or - for stdout)")
    if task != "inpaint":
        for flag, value in (("--box", box), ("--keep", keep), ("--mask", mask)):
            if value is not None:
                raise InputError(f"{flag}: only for --task inpaint")
    if task != "sr" and scale is not None:
        raise InputError("--scale: only for --task sr")
    if task != "deblur" and (kernel_sigma is not None or kernel_size is not None):
        raise InputError("--kernel-sigma/--kernel-size: only for --task deblur")
    if not (noise >= 0) or not np.isfinite(noise):
        raise InputError(f"--noise: sigma must be >= 0, got {noise}")
    import torch

    from ddpmctl.operators import degrade, make_operator, observation_meta, sidecar_path

    x, kind = io.read_data(clean, mmap=False)
    mask_arr = np.asarray(io.read_array(mask, mmap=False)) if mask is not None else None
    op = make_operator(
        task, x.shape[1:], x.shape[0], box=box, keep=keep, mask=mask_arr, mask_name=mask or "--mask",
        mask_seed=seed, scale=scale, kernel_sigma=kernel_sigma, kernel_size=kernel_size,
    )  # fmt: skip
    y = degrade(x, op, noise, seed)
    meta = observation_meta(op, noise, seed, x.shape, y.shape, kind)
    side = None
    if kind_out == "npy" and output != io.STDIO:
        side = sidecar_path(output)
        if mask is not None:  # recorded relative to the sidecar, so the pair can move with the mask
            meta["operator"]["mask"] = os.path.relpath(Path(mask).resolve(), side.parent.resolve())
        io.save_npy(output, y)
        io.write_json(side, meta)
    elif kind_out == "npy":
        io.save_npy(output, y)
    elif kind == "points":
        io.save_scatter(output, [x, y], titles=["clean", "observation"])
    else:
        io.save_grid(output, op.display(torch.from_numpy(y)).numpy())
    if json_out:
        emit_json({**meta, "output": output, "sidecar": str(side) if side else None})
        return
    out = report_stream(output == io.STDIO)
    extra = f" (+ {side})" if side else ""
    print(f"degraded {x.shape[0]} {kind}: {op.describe()}, noise sigma {noise:g} -> {output}{extra}", file=out)
