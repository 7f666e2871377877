"""ddpmctl noise: the forward process q(x_t | x_0) at chosen steps, as arrays or a picture."""

from __future__ import annotations

from typing import Optional

import typer

from ddpmctl import io
from ddpmctl.cli.common import (
    HELP_OUTPUT,
    at_least,
    choice_option,
    emit_json,
    handle_errors,
    json_option,
    parse_float_list,
    progress,
    quiet_option,
    seed_option,
    steps_option,
)
from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)


def _values(t: Optional[str], steps: Optional[int], top, continuous: bool) -> list:
    """The --t values, or --steps K evenly spaced ones, in [0, top]: times of a ``continuous``
    process (top = t_max: 1, or sigma_max for edm), else the steps 0..T of DDPM."""
    if steps is not None:
        grid = np.linspace(0, top, steps)
        values = list(grid) if continuous else sorted(set(grid.round().astype(int).tolist()))
    else:
        values = parse_float_list(t, "--t")
    for v in values:
        if continuous and not 0 <= v <= top:
            raise InputError(f"--t: times of this continuous process lie in [0, {top:g}], got {v:g}")
        if not continuous and (v != int(v) or not 0 <= v <= top):
            raise InputError(f"--t: steps must be integers in 0..{top}, got {v:g}")
    return values


@handle_errors("noise")
def command(
    input: str = typer.Argument(..., help="Images (.npy, a PNG/JPEG file, a folder) or points (.npy), or - for stdin."),
    schedule: str = typer.Option(
        "linear", "--schedule", "-s", help="Schedule name or .npy file of betas (see 'ddpmctl schedule')."
    ),
    T: int = typer.Option(
        1000, "--T", "-T", callback=at_least("--T", 1), help="Number of diffusion steps of a named schedule."
    ),
    t: Optional[str] = typer.Option(
        None,
        "--t",
        help="Comma-separated steps t in 0..T (0 is the clean input). With --sde: times in [0, 1] "
        "(edm: sigma in [0, 80]).",
    ),
    steps: Optional[int] = steps_option("Instead of --t: K evenly spaced steps from 0 to T."),
    sde: Optional[str] = choice_option(
        None, "--sde", ("vp", "subvp", "ve", "edm"), "Use a continuous process instead: vp, subvp, ve or edm."
    ),
    sequential: bool = typer.Option(
        False, "--sequential", help="Run the Markov chain x_t = sqrt(1-beta_t) x_{t-1} + sqrt(beta_t) eps step by step."
    ),
    rows: int = typer.Option(
        8, "--rows", callback=at_least("--rows", 1), help="PNG output: how many images (rows) to show."
    ),
    output: str = typer.Option("noised.npy", "--output", "-o", help=HELP_OUTPUT),
    seed: int = seed_option(),
    quiet: bool = quiet_option(),
    json_out: bool = json_option(),
) -> None:
    """Noise data with the forward process q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I).

    The process works in model space ([-1, 1] for images); outputs are mapped back to image
    units, x = (x_t + 1) / 2, and NOT clipped, so values leave [0, 1] as noise grows (PNG output
    clips for viewing). Points are noised as they are. One t gives an array shaped like the input;
    several give (N, K, ...) with K = number of steps. PNG output is a grid: rows = images,
    columns = t. All steps share one noise draw per image unless --sequential.

    Example: ddpmctl noise triangles.npy --schedule cosine --t 0,100,250,500,999 -o forward.png

    Example: ddpmctl make-data triangles --n 64 -o - | ddpmctl noise - --t 500 -o noisy.npy
    """
    if (t is None) == (steps is None):
        raise InputError("give exactly one of --t and --steps")
    if sequential and sde is not None:
        raise InputError("--sequential runs the discrete chain; it does not combine with --sde")
    import torch

    from ddpmctl.diffusion import IDENTITY_NORMALIZATION, IMAGE_NORMALIZATION, forward_noise, q_sample_sequential
    from ddpmctl.schedules import make_process

    kind_out = io.output_kind(output)
    process = make_process(sde, schedule, T)
    top = process.t_max if sde is not None else process.max_steps  # times in [0, t_max], or the steps 0..T of DDPM
    values = _values(t, steps, top, sde is not None)
    data, kind = io.read_data(input)
    n_keep = min(len(data), rows) if kind_out == "png" else len(data)
    x0 = np.array(data[:n_keep], dtype=np.float32)  # a writable copy (inputs may be memory maps)
    norm = IMAGE_NORMALIZATION if kind == "images" else IDENTITY_NORMALIZATION
    gen = torch.Generator().manual_seed(seed)
    if sequential:
        xm = norm.to_model(torch.from_numpy(x0))
        wanted = [int(v) for v in values]
        with progress(max(wanted), "noising", quiet) as update:
            chain = q_sample_sequential(process, xm, wanted, generator=gen, callback=lambda i: update())
        out = torch.stack([norm.to_data(chain[v]) for v in wanted], dim=1).numpy().astype(np.float32)
    else:
        times = [float(v) if sde is not None else float(v) / top for v in values]
        out = forward_noise(process, x0, times, gen, norm)
    _write(output, kind_out, kind, out, values)
    if json_out:
        emit_json(
            {"input": input, "output": output, "t": values, "shape": list(out.shape), "process": process.describe()}
        )


def _write(output: str, kind_out: str, kind: str, out: np.ndarray, values: list) -> None:
    if kind_out == "png" and kind == "images":
        n, k = out.shape[:2]
        io.save_grid(output, out.reshape((n * k,) + out.shape[2:]), nrow=k)
    elif kind_out == "png":
        io.save_scatter(output, [out[:, j] for j in range(out.shape[1])], titles=[f"t = {v:g}" for v in values])
    else:
        io.save_output(output, out[:, 0] if len(values) == 1 else out)
