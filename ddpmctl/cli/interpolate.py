"""ddpmctl interpolate: encode two sets, slerp their latents, decode (or the linear data baseline)."""

from __future__ import annotations

from typing import Optional

import typer

from ddpmctl import io
from ddpmctl import samplers as S
from ddpmctl.cli.common import (
    batch_option,
    choice_option,
    device_option,
    emit_json,
    handle_errors,
    json_option,
    progress,
    quiet_option,
    steps_option,
)
from ddpmctl.cli.encode import ATOL, ODE_STEPS_HELP, RHO, RTOL, read_for_model
from ddpmctl.cli.sample import CHECKPOINT, PROCESS, SCHEDULE, SOLVER_HELP, SPACING_HELP, STEPS_T, _load
from ddpmctl.errors import InputError

SPACES = ("latent", "data")


@handle_errors("interpolate")
def command(
    checkpoint: str = CHECKPOINT,
    a: str = typer.Argument(..., metavar="A", help="First ends (.npy, image or folder), one per row."),
    b: str = typer.Argument(..., metavar="B", help="Second ends, as many as A."),
    k: int = typer.Option(8, "--k", "-k", help="Points per row, the two ends included (>= 2)."),
    space: str = choice_option(
        "latent", "--space", SPACES, "latent: slerp of the ODE latents, then decode; data: (1 - u) a + u b."
    ),
    output: str = typer.Option("interpolation.npy", "--output", "-o", help="(N, k, ...) .npy, or a .png grid."),
    steps: Optional[int] = steps_option(ODE_STEPS_HELP),
    solver: Optional[str] = choice_option(None, "--solver", S.SOLVERS, SOLVER_HELP),
    spacing: Optional[str] = choice_option(None, "--spacing", S.SPACINGS, SPACING_HELP),
    rho: float = RHO,
    rtol: float = RTOL,
    atol: float = ATOL,
    batch: int = batch_option(256),
    device: str = device_option(),
    process: Optional[str] = PROCESS,
    schedule: Optional[str] = SCHEDULE,
    T: Optional[int] = STEPS_T,
    quiet: bool = quiet_option(),
    json_out: bool = json_option(),
) -> None:
    """Interpolate between pairs: encode A and B with the probability-flow ODE, interpolate the
    latents spherically (slerp: they are Gaussian, so the path keeps their norm) and decode each
    point. Row i goes from row i of A to row i of B in k points. --space data is the linear
    baseline in data space. PNG: a grid of N rows of k images (points: a scatter plot).

    Example: ddpmctl interpolate ckpt/ a.npy b.npy --k 8 -o strip.png

    Example: ddpmctl interpolate mix.npz a.npy b.npy --k 16 --solver heun --steps 30 -o path.npy
    """
    if k < 2:
        raise InputError(f"--k: must be >= 2, got {k}")
    if output == io.STDIO and json_out:
        raise InputError("--json: stdout carries the interpolation (-o -); write it to a file to get the JSON report")
    io.output_kind(output)  # an unknown format fails before any work
    from ddpmctl import encode as E

    model, dev = _load(checkpoint, device, process, schedule, T)
    xa, xb = read_for_model(model, a, "A"), read_for_model(model, b, "B")
    if len(xa) != len(xb):
        raise InputError(f"A and B: {len(xa)} and {len(xb)} items; give as many of each (one pair per row)")
    plan = E.encode_plan(model.process, steps, solver, spacing, rho=rho, rtol=rtol, atol=atol)
    total = None if space == "data" else (plan.steps - 1) * 2 * len(xa) // min(batch, 2 * len(xa)) + plan.steps
    with progress(total, f"interpolate {space}", quiet=quiet) as update:
        out, info = E.interpolate(model, xa, xb, k, space, steps=steps, solver=solver, spacing=spacing, batch=batch,
                                  device=dev, rho=rho, rtol=rtol, atol=atol, progress=update)  # fmt: skip
    if model.data_kind == "images" and io.output_kind(output) != "npy":
        io.save_output(output, out.reshape(-1, *out.shape[2:]).clip(0, 1), nrow=k)
    else:
        io.save_output(output, out if io.output_kind(output) == "npy" else out.reshape(-1, out.shape[-1]))
    info.pop("times", None)
    info.update(output=output, model=checkpoint, shape=list(out.shape), k=k)
    if json_out:
        emit_json(info)
        return
    how = f"{info['solver']}, {info['steps']} steps, NFE {info['nfe']}" if space == "latent" else "linear, no NFE"
    typer.echo(f"wrote {len(xa)} rows of {k} ({space} interpolation: {how}) to {output}", err=output == io.STDIO)
