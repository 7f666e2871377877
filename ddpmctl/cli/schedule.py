"""ddpmctl schedule: build beta schedules, print their key figures, write betas and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ddpmctl import io
from ddpmctl.betas import SCHEDULE_OPTIONS, SCHEDULES, get_betas, is_schedule_file, summarize
from ddpmctl.cli.common import at_least, emit_json, err, handle_errors, json_option, report_stream
from ddpmctl.errors import InputError
from ddpmctl.lazy import lazy_module

np = lazy_module("numpy")  # imported on first use (docs/startup.md)


def plot_schedules(path: str, named: list[tuple[str, np.ndarray]]) -> None:
    """beta_t, alpha_bar_t and log-SNR of several schedules side by side, as a PNG (atomic)."""
    import io as _io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name, betas in named:
        t = np.arange(1, len(betas) + 1)
        ab = np.cumprod(1 - betas)
        axes[0].plot(t, betas, label=name)
        axes[1].plot(t, ab, label=name)
        axes[2].plot(t, np.log(ab / (1 - ab)), label=name)
    for ax, title in zip(axes, [r"$\beta_t$", r"$\bar\alpha_t$", r"log SNR = log $\bar\alpha_t/(1-\bar\alpha_t)$"]):
        ax.set_title(title)
        ax.set_xlabel("t")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    io.write_bytes(path, buf.getvalue())


@handle_errors("schedule")
def command(
    names: list[str] = typer.Argument(
        ..., help=f"Schedule names ({', '.join(SCHEDULES)}) or .npy files of betas.", show_default=False, metavar="NAME"
    ),
    T: int = typer.Option(1000, "--T", "-T", callback=at_least("--T", 1), help="Number of diffusion steps."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="Write the betas (float64 .npy; - for stdout). Needs exactly one schedule."
    ),
    plot: Optional[str] = typer.Option(
        None, "--plot", help="Draw beta_t, alpha_bar_t and log-SNR of every schedule into this PNG."
    ),
    beta_start: Optional[float] = typer.Option(
        None, "--beta-start", help="First beta (linear, quadratic, sigmoid, power, wave) (default: 1e-4)."
    ),
    beta_end: Optional[float] = typer.Option(
        None, "--beta-end", help="Last beta (linear, quadratic, sigmoid, power, wave) (default: 0.02)."
    ),
    power: Optional[float] = typer.Option(None, "--power", help="Exponent of the power schedule (default: 2)."),
    cycles: Optional[int] = typer.Option(None, "--cycles", help="Sine cycles of the wave schedule (default: 4)."),
    amplitude: Optional[float] = typer.Option(
        None, "--amplitude", help="Ripple amplitude of the wave schedule, 0..1 (default: 0.5)."
    ),
    cosine_s: Optional[float] = typer.Option(
        None, "--cosine-s", help="Offset s of the cosine schedule (default: 0.008)."
    ),
    json_out: bool = json_option(),
) -> None:
    """Build noise schedules, print their key figures, write betas (.npy) and plots.

    Prints T, the beta range, alpha_bar_T and the log-SNR range of each schedule, and warns when
    the terminal SNR is far from 0 (the data leaks into x_T). Options a schedule does not take are
    ignored for it.

    Example: ddpmctl schedule linear cosine --T 1000 --plot schedules.png

    Example: ddpmctl schedule power --power 1.5 -o betas.npy && ddpmctl train --schedule betas.npy data.npy
    """
    if output is not None and len(names) != 1:
        raise InputError("-o writes one schedule: give exactly one name (or use --plot to compare several)")
    opts = dict(beta_start=beta_start, beta_end=beta_end, power=power, cycles=cycles, amplitude=amplitude, s=cosine_s)
    named = []
    for name in names:
        if is_schedule_file(name):
            betas = get_betas(name, T)
        else:
            # pass each schedule only the options it takes (so `schedule linear power --power 2` works)
            allowed = SCHEDULE_OPTIONS.get(name, ())
            betas = get_betas(name, T, **{k: v for k, v in opts.items() if k in allowed})
        named.append((Path(name).name if is_schedule_file(name) else name, betas))
    summaries = [summarize(n, b) for n, b in named]
    if output is not None:
        io.save_npy(output, named[0][1])
    if plot is not None:
        plot_schedules(plot, named)
    for s in summaries:
        if s.warning:
            err(f"ddpmctl schedule: warning: {s.name}: {s.warning}")
    if json_out:
        emit_json({"schedules": [s.as_dict() for s in summaries], "output": output, "plot": plot})
        return
    out = report_stream(output == "-")
    columns = ("T", 6), ("beta_min", 10), ("beta_max", 10), ("alpha_bar_T", 12), ("logSNR_max", 11), ("logSNR_min", 11)
    header = f"{'schedule':<12} " + " ".join(f"{name:>{width}}" for name, width in columns)
    print(header, file=out)
    for s in summaries:
        print(
            f"{s.name:<12} {s.T:>6} {s.beta_min:>10.3g} {s.beta_max:>10.3g} {s.alpha_bar_T:>12.3g} "
            f"{s.log_snr_max:>11.3f} {s.log_snr_min:>11.3f}",
            file=out,
        )
