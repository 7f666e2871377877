"""ddpmctl nll: negative log-likelihood in bits per dimension (probability-flow ODE or DDPM's bound)."""

from __future__ import annotations

from typing import Optional

import typer

from ddpmctl.cli.common import (
    batch_option,
    choice_option,
    device_option,
    emit_json,
    handle_errors,
    json_option,
    progress,
    quiet_option,
    seed_option,
)
from ddpmctl.cli.encode import ATOL, RTOL, read_for_model
from ddpmctl.cli.sample import CHECKPOINT, PROCESS, SCHEDULE, STEPS_T, _load
from ddpmctl.nll_options import METHODS, PROBES, VARIANCES

METHOD_HELP = (
    "ode: the probability-flow ODE's change of variables with Hutchinson's trace estimator (every process); "
    "vlb: DDPM's variational bound (ddpm models only)."
)


@handle_errors("nll")
def command(
    checkpoint: str = CHECKPOINT,
    data: str = typer.Argument(..., metavar="DATA", help="Data (.npy, image or folder; - for stdin)."),
    method: str = choice_option("ode", "--method", METHODS, METHOD_HELP),
    probes: int = typer.Option(
        1, "--probes", help="ode: Hutchinson probes per sample (the estimate's noise ~ 1/sqrt)."
    ),
    probe: str = choice_option("rademacher", "--probe", PROBES, "ode: the probes' distribution."),
    rtol: float = RTOL,
    atol: float = ATOL,
    terms: Optional[int] = typer.Option(
        None, "--terms", help="vlb: KL terms per sample, drawn at random (unbiased) (default: all T - 1)."
    ),
    variance: str = choice_option(
        "large", "--variance", VARIANCES, "vlb: the reverse variance, beta_t (large) or beta-tilde (small)."
    ),
    seed: int = seed_option(0, "For the dequantisation, the probes and the vlb's draws; the same whatever --batch."),
    batch: int = batch_option(64),
    device: str = device_option(),
    process: Optional[str] = PROCESS,
    schedule: Optional[str] = SCHEDULE,
    T: Optional[int] = STEPS_T,
    quiet: bool = quiet_option(),
    json_out: bool = json_option(),
) -> None:
    """Negative log-likelihood of data under a model, in bits per dimension, with its standard error.

    Images are 8-bit data (values y/255): --method ode dequantises them, (y + U)/256, and reports
    -(log p_model / D + log 2) / ln 2 + 8 bits/dim (docs/encode.md, eq. L3); --method vlb bounds the
    discrete probability with Ho et al.'s discretised decoder. Points: nats and bits per dimension of
    the density in the units of the file. On a mixture .npz (the exact model) it can be checked
    against the mixture's own density.

    Example: ddpmctl nll ckpt/ heldout.npy --method ode --probes 4 --json

    Example: ddpmctl nll ckpt/ heldout.npy --method vlb --terms 100
    """
    from ddpmctl import likelihood as L

    model, dev = _load(checkpoint, device, process, schedule, T)
    x = read_for_model(model, data, "DATA")
    opts = L.NllOptions(method, probes, probe, rtol, atol, terms, variance)
    L.check_options(model, opts)
    with progress(len(x), f"nll {method}", quiet=quiet) as update:
        _, info = L.nll(model, x, opts, seed, batch, dev, update)
    info.update(model=checkpoint, data=data)
    if json_out:
        emit_json(info)
        return
    line = f"{info['bits_per_dim']:.4f} +- {info['bits_per_dim_se']:.4f} bits/dim"
    if "nats_per_dim" in info:
        line += f" ({info['nats_per_dim']:.4f} +- {info['nats_per_dim_se']:.4f} nats/dim)"
    how = (
        f"ode, {probes} {probe} probe(s), rtol {rtol:g}"
        if method == "ode"
        else f"vlb, {info['terms']} of {model.process.max_steps - 1} KL terms, {variance} variance"
    )
    typer.echo(
        f"{line} over {info['n']} samples (+- one standard error); {how}; NFE {info['nfe']}, {info['seconds']:.2f} s"
    )
    typer.echo(f"units: {info['units']}")
