"""What every command shares: error reporting and exit codes, progress bars, JSON output, devices.

Exit codes (README, "Exit status"): 0 success, 1 failure while running, 2 bad usage or bad input
(one line naming the file and the problem), 130 interrupted.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import traceback
from collections.abc import Callable, Iterator

import typer

from ddpmctl.errors import DdpmctlError, InputError

STATE = {"debug": False, "command": "ddpmctl"}


def err(message: str) -> None:
    """One line on stderr."""
    sys.stderr.write(message.rstrip("\n") + "\n")
    sys.stderr.flush()


def handle_errors(name: str) -> Callable:
    """Decorator for a command: DdpmctlError -> one line + its exit code, Ctrl-C -> 130,
    anything unexpected -> one line + exit 1 (the traceback with ``ddpmctl --debug``)."""

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            STATE["command"] = f"ddpmctl {name}"
            try:
                return fn(*args, **kwargs)
            except (typer.Exit, typer.Abort, SystemExit):
                raise
            except DdpmctlError as e:
                if STATE["debug"]:
                    traceback.print_exc()
                err(f"ddpmctl {name}: error: {e}")
                raise typer.Exit(e.exit_code) from None
            except KeyboardInterrupt:
                err(f"ddpmctl {name}: interrupted")
                raise typer.Exit(130) from None
            except BrokenPipeError:
                raise typer.Exit(1) from None
            except MemoryError:
                err(f"ddpmctl {name}: error: out of memory (try a smaller --batch or -n)")
                raise typer.Exit(1) from None
            except OSError as e:
                if STATE["debug"]:
                    traceback.print_exc()
                where = f"{e.filename}: " if getattr(e, "filename", None) else ""
                err(f"ddpmctl {name}: error: {where}{e.strerror or e}")
                raise typer.Exit(1) from None
            except Exception as e:  # an internal error: say so in one line
                if STATE["debug"]:
                    traceback.print_exc()
                err(f"ddpmctl {name}: internal error: {e.__class__.__name__}: {e} (rerun with --debug for a traceback)")
                raise typer.Exit(1) from None

        return wrapper

    return deco


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(total: int | None, description: str, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """A rich progress bar on stderr; yields ``update(advance=1, **fields)``.

    Silent when ``quiet`` or when stderr is not a terminal. Fields (e.g. loss=0.1) are shown
    after the bar."""
    if quiet or not stderr_is_tty():
        yield lambda advance=1, **fields: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    ]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total, info="")

        def update(advance: int = 1, **fields) -> None:
            info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())
            bar.update(task, advance=advance, **({"info": info} if fields else {}))

        yield update


def emit_json(obj) -> None:
    """The one JSON object a ``--json`` command prints on stdout."""
    sys.stdout.write(json.dumps(obj, sort_keys=True, default=_json_default) + "\n")
    sys.stdout.flush()


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def report_stream(data_on_stdout: bool):
    """Where human-readable reports go: stdout, unless stdout carries data (``-o -``)."""
    return sys.stderr if data_on_stdout else sys.stdout


def parse_int_list(text: str, name: str) -> list[int]:
    """``"0,100,500"`` -> [0, 100, 500]; a clear error otherwise."""
    try:
        vals = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise InputError(f"{name}: expected comma-separated integers, got '{text}'") from None
    if not vals:
        raise InputError(f"{name}: expected at least one value")
    return vals


def parse_float_list(text: str, name: str) -> list[float]:
    """``"1,0.5,0"`` -> [1.0, 0.5, 0.0]; a clear error otherwise."""
    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"{name}: expected comma-separated numbers, got '{text}'") from None
    if not vals:
        raise InputError(f"{name}: expected at least one value")
    return vals


# shared options: each is declared once here, with its range, so the same flag means and checks the
# same thing in every command (a bad value is a one-line usage error, exit 2, before any work)
HELP_OUTPUT = "Output file: .npy, .png (a picture), a folder, or - for stdout (an .npy stream)."
HELP_SEED = "Random seed (the same seed gives the same output)."
HELP_QUIET = "No progress bar (it is also off when stderr is not a terminal)."
HELP_JSON = "Print one JSON object with the results on stdout."
HELP_DEVICE = "Device: auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps."
HELP_BATCH = "Batch size."


def at_least(name: str, low: float, strict: bool = False):
    """A typer callback: the value (when given) must be >= ``low`` (> with ``strict``)."""

    def check(value):
        if value is not None and (value <= low if strict else value < low):
            raise typer.BadParameter(f"must be {'>' if strict else '>='} {low:g}, got {value}", param_hint=f"'{name}'")
        return value

    return check


def seed_option(default: int | None = 0, extra: str = ""):
    """``--seed``: an integer >= 0."""
    return typer.Option(default, "--seed", callback=at_least("--seed", 0), help=f"{HELP_SEED} {extra}".strip())


def batch_option(default: int | None = None, extra: str = ""):
    """``--batch``: an integer >= 1."""
    return typer.Option(default, "--batch", callback=at_least("--batch", 1), help=f"{HELP_BATCH} {extra}".strip())


def steps_option(help: str, default: int | None = None):
    """``--steps``: an integer >= 1."""
    return typer.Option(default, "--steps", callback=at_least("--steps", 1), help=help)


def n_option(default: int | None = 64, help: str = "Number of samples."):
    """``--n`` / ``-n``: an integer >= 1."""
    return typer.Option(default, "--n", "-n", callback=at_least("-n", 1), help=help)


def device_option(default: str | None = "auto"):
    """``--device``: checked when it is resolved (``ddpmctl.device.resolve_device``)."""
    return typer.Option(default, "--device", help=HELP_DEVICE)


def quiet_option():
    """``--quiet`` / ``-q``."""
    return flag_option("--quiet", "-q", help=HELP_QUIET)


def json_option():
    """``--json``."""
    return flag_option("--json", help=HELP_JSON)


def flag_option(*names: str, help: str, default: bool | None = False, **kwargs):
    """A boolean flag (``--x`` or ``--x/--no-x``), shown in ``--help`` without a value placeholder."""
    return typer.Option(default, *names, help=help, metavar="", **kwargs)


def choice_option(default: str | None, name: str, choices, help: str, *extra_names: str):
    """A string option that must be one of ``choices`` (listed in ``--help`` as a|b|c)."""
    choices = tuple(choices)

    def check(value):
        if value is not None and value not in choices:
            raise typer.BadParameter(f"'{value}' is not one of {', '.join(choices)}", param_hint=f"'{name}'")
        return value

    return typer.Option(default, name, *extra_names, callback=check, metavar="|".join(choices), help=help)


def class_option(subject: str):
    """``--class K`` of a class-conditional checkpoint (checked against its classes when it is loaded,
    ``ddpmctl.labels.sample_labels``); ``subject`` says what gets class K in this command, e.g.
    "every sample of class K"."""
    return typer.Option(
        None,
        "--class",
        metavar="K",
        help=f"Class-conditional checkpoints: {subject} (an index or a class name, e.g. 2 or disc).",
    )


def cfg_option(needs: str, with_guide: bool = False):
    """``--cfg S``: the classifier-free guidance scale (Ho & Salimans 2022), with the classes that
    ``needs`` names (checked with them, ``ddpmctl.sampling.check_classes``); ``with_guide``: the
    command has --guide, with which the default is 1 (``labels.default_cfg``)."""
    from ddpmctl.labels import DEFAULT_CFG

    default = f"{DEFAULT_CFG:g}; 1 with --guide" if with_guide else f"{DEFAULT_CFG:g}"
    return typer.Option(
        None,
        "--cfg",
        metavar="S",
        help=f"With {needs}: classifier-free guidance scale S, eps = eps_uncond + S (eps_cond - eps_uncond) "
        "(Ho & Salimans' w = S - 1); 1 = the conditional model alone (no guidance), 0 = the unconditional one, "
        "S > 1 truer to the class, less diverse; S != 1 costs 2 NFE per step (one call on a doubled batch) "
        f"(default: {default}).",
    )
