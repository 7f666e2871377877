"""The options of ``likelihood.nll`` (``ddpmctl nll``): their choices, ``NllOptions`` and their
check. Torch-free, so that ``ddpmctl nll --help`` starts without torch (docs/startup.md);
``ddpmctl.likelihood`` re-exports every name defined here."""

from __future__ import annotations

from dataclasses import dataclass

from ddpmctl.errors import InputError

METHODS = ("ode", "vlb")
PROBES = ("rademacher", "gaussian")
VARIANCES = ("small", "large")


@dataclass(frozen=True)
class NllOptions:
    """Settings of ``nll``: the ODE's probes and tolerances, the bound's terms and variance."""

    method: str = "ode"
    probes: int = 1
    probe: str = "rademacher"
    rtol: float = 1e-5
    atol: float = 1e-5
    terms: int | None = None  # vlb: KL terms per sample (None: all T - 1)
    variance: str = "large"  # vlb: the reverse variance, beta (large: the tighter bound) or beta-tilde (small)
    dequantize: bool = True  # images: uniform dequantisation (ode)


def check_options(model, opts: NllOptions) -> None:
    if opts.method not in METHODS:
        raise InputError(f"--method: unknown method '{opts.method}' (choose from {', '.join(METHODS)})")
    if opts.probes < 1:
        raise InputError(f"--probes: must be >= 1, got {opts.probes}")
    if opts.probe not in PROBES:
        raise InputError(f"--probe: unknown probe '{opts.probe}' (choose from {', '.join(PROBES)})")
    if opts.rtol <= 0 or opts.atol <= 0:
        raise InputError(f"--rtol/--atol: must be > 0, got {opts.rtol}, {opts.atol}")
    if opts.variance not in VARIANCES:
        raise InputError(f"--variance: unknown variance '{opts.variance}' (choose from {', '.join(VARIANCES)})")
    if opts.method == "vlb":
        T = model.process.max_steps
        if T is None:
            raise InputError(
                f"--method vlb: needs a discrete (ddpm) model, this one is a {model.process.kind} process "
                "(use --method ode)"
            )
        if T < 2:
            raise InputError("--method vlb: needs T >= 2")
        if opts.terms is not None and not 1 <= opts.terms <= T - 1:
            raise InputError(f"--terms: must lie in [1, T - 1 = {T - 1}], got {opts.terms}")
