"""ddpmctl encode: data -> latents along the probability-flow ODE (``sample --from`` decodes them)."""

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
    report_stream,
    steps_option,
)
from ddpmctl.cli.sample import CHECKPOINT, PROCESS, SCHEDULE, SOLVER_HELP, SPACING_HELP, STEPS_T, _load
from ddpmctl.errors import InputError

ODE_STEPS_HELP = (
    "Steps of the ODE grid (the same as sample --sampler ode's) (default: "
    + ", ".join(f"{s.name} {s.steps}" for s in S.ODE_SOLVERS.values())
    + "; at most T)."
)
RHO = typer.Option(7.0, "--rho", help="karras spacing: sigma~^(1/rho) is uniform.")
RTOL = typer.Option(1e-5, "--rtol", help="rk45: relative tolerance.")
ATOL = typer.Option(1e-5, "--atol", help="rk45: absolute tolerance.")


def read_for_model(model, path: str, name: str):
    """Data for ``model`` from ``path`` (.npy, image or folder): checked against its data shape."""
    from ddpmctl import encode as E

    x, _ = io.read_data(path, mmap=False)
    try:
        E.check_data(model, x, path)
    except InputError as e:
        raise InputError(f"{name}: {e}") from None
    return x


@handle_errors("encode")
def command(
    checkpoint: str = CHECKPOINT,
    data: str = typer.Argument(..., metavar="DATA", help="Data to encode (.npy, image or folder; - for stdin)."),
    output: str = typer.Option("latents.npy", "--output", "-o", help="Latents (.npy, or - for stdout)."),
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
    """Encode data to latents: the probability-flow ODE from the data (t_min) to the noise (t_max).

    The latents are scaled like the sampler's starting noise (standard normal when the model is
    right), so 'sample CKPT --from latents.npy' with the same --steps/--solver/--spacing decodes
    them on the same grid reversed and returns the data (to the solver's accuracy). --solver euler
    is DDIM inversion (DDIM with eta = 0). Reports the NFE like sample. See docs/encode.md.

    Example: ddpmctl encode ckpt/ tri.npy -o z.npy && ddpmctl sample ckpt/ --from z.npy -o back.npy

    Example: ddpmctl encode mix.npz mix.npy --solver heun --steps 30 -o z.npy
    """
    if not output.lower().endswith(".npy") and output != io.STDIO:
        raise InputError(f"{output}: latents are written as .npy (or - for stdout)")
    if json_out and output == io.STDIO:
        raise InputError("--json: stdout carries the latents (-o -); write them to a file to get the JSON report")
    from ddpmctl import encode as E

    model, dev = _load(checkpoint, device, process, schedule, T)
    x = read_for_model(model, data, "DATA")
    plan = E.encode_plan(model.process, steps, solver, spacing, rho=rho, rtol=rtol, atol=atol)
    total = (plan.steps - 1) * -(-len(x) // batch)
    with progress(total, f"encode ode/{plan.solver.name}", quiet=quiet) as update:
        z, info = E.encode(model, x, steps, solver, spacing, batch, dev, update, rho=rho, rtol=rtol, atol=atol)
    io.save_npy(output, z)
    info.pop("times")
    info.update(output=output, model=checkpoint, shape=list(z.shape), latent_mean=float(z.mean()),
                latent_std=float(z.std()))  # fmt: skip
    if json_out:
        emit_json(info)
        return
    out = report_stream(output == io.STDIO)
    where = "stdout" if output == io.STDIO else output
    out.write(
        f"wrote {len(z)} latents {tuple(z.shape[1:])} to {where}: ode/{info['solver']}, {info['steps']} steps "
        f"({info['spacing']}) t_min -> t_max, NFE {info['nfe']}, {info['seconds']:.2f} s on {info['device']}; "
        f"latent mean {info['latent_mean']:.3f}, std {info['latent_std']:.3f} (N(0, I): 0, 1)\n"
    )
