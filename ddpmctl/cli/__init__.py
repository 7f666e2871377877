"""The ``ddpmctl`` command line: one module per subcommand (parse, validate, call the core, report)."""

from __future__ import annotations

import importlib
import os
import sys

# A short OpenMP spin-wait: PyTorch's CPU threads otherwise spin for long, and on a shared machine
# a spinning thread burns the core its descheduled partner needs (docs/architecture.md, "Process
# settings"). Set before torch is imported; a value in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import typer

from ddpmctl import __version__
from ddpmctl.cli.common import STATE, flag_option

app = typer.Typer(
    name="ddpmctl",
    help=(
        "Unix-style toolkit for diffusion models: make data, build noise schedules, noise images, "
        "train DDPM / score-SDE models, sample with DDPM / DDIM / SDE / ODE samplers, encode data to "
        "latents, measure bits/dim, compute FID and restore images. Commands chain through .npy / .png / "
        ".safetensors files.\n\n"
        "Example: ddpmctl make-data triangles --n 10000 -o tri.npy"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# (command name, module under ddpmctl.cli); each module defines ``command`` and may define ``HELP``
COMMANDS = [
    ("make-data", "make_data"),
    ("schedule", "schedule"),
    ("noise", "noise"),
    ("info", "info"),
    ("degrade", "degrade"),
    ("restore", "restore"),
    ("train", "train"),
    ("sample", "sample"),
    ("encode", "encode"),
    ("nll", "nll"),
    ("interpolate", "interpolate"),
    ("fid", "fid"),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ddpmctl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = flag_option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    debug: bool = flag_option("--debug", help="Show Python tracebacks for errors."),
) -> None:
    STATE["debug"] = debug


def _register() -> None:
    for name, module in COMMANDS:
        mod = importlib.import_module(f"ddpmctl.cli.{module}")
        app.command(name, **getattr(mod, "COMMAND_SETTINGS", {}))(mod.command)


_register()


def _hide_flag_placeholders(command) -> None:
    """Boolean flags (--help and the completion flags too) take no value: show none in --help."""
    ctx = typer.Context(command, help_option_names=["-h", "--help"])
    help_option = command.get_help_option(ctx)
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _hide_flag_placeholders(sub)


def _usage_message(e) -> str:
    """A usage error in the one format of ddpmctl's errors: ``--flag: what is wrong``."""
    if type(e).__name__ == "BadParameter" and getattr(e, "param_hint", None):
        return f"{str(e.param_hint).strip(chr(39))}: {e.message}"
    return str(e.format_message())


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Usage errors are reported in one line (exit 2)."""
    command = typer.main.get_command(app)
    _hide_flag_placeholders(command)
    try:
        code = command.main(args=argv, prog_name="ddpmctl", standalone_mode=False)
    except KeyboardInterrupt:
        sys.stderr.write("ddpmctl: interrupted\n")
        sys.exit(130)
    except Exception as e:
        # click's (or typer's vendored click's) UsageError / ClickException / Abort, by duck typing so
        # the one-line format does not depend on typer's version
        if type(e).__name__ == "Abort":
            sys.stderr.write("ddpmctl: interrupted\n")
            sys.exit(130)
        if not hasattr(e, "format_message"):
            raise
        if not str(e.format_message()).strip():  # no_args_is_help: the help was printed
            sys.exit(getattr(e, "exit_code", 2))
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None else "ddpmctl"
        hint = f" (see '{where} --help')" if getattr(e, "exit_code", 1) == 2 else ""
        sys.stderr.write(f"{where}: error: {_usage_message(e)}{hint}\n")
        sys.exit(getattr(e, "exit_code", 1))
    sys.exit(code if isinstance(code, int) else 0)
