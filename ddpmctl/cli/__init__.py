"""The ``ddpmctl`` command line: one module per subcommand (parse, validate, call the core, report)."""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys

# A short OpenMP spin-wait: PyTorch's CPU threads otherwise spin for long, and on a shared machine
# a spinning thread burns the core its descheduled partner needs (docs/architecture.md, "Process
# settings"). Set before torch is imported; a value in the environment wins.
os.environ.setdefault("GOMP_SPINCOUNT", "10000")

import typer
import typer.core
import typer.main

from ddpmctl import __version__
from ddpmctl.cli.common import STATE, flag_option

# (command name, module under ddpmctl.cli, one-line summary for `ddpmctl --help` and `man ddpmctl`);
# each module defines ``command`` and may define ``COMMAND_SETTINGS`` (keywords of ``Typer.command``)
COMMANDS = [
    ("make-data", "make_data", "Make a data set (triangles, shapes, points) or import images."),
    ("schedule", "schedule", "Build noise schedules: key figures, betas (.npy), plots."),
    ("noise", "noise", "Noise data with the forward process q(x_t | x_0)."),
    ("info", "info", "Show what a file holds (array, image, .npz, checkpoint)."),
    ("degrade", "degrade", "Degrade clean data into an observation y = A x + n."),
    ("restore", "restore", "Restore observations y = A x + n with a diffusion prior."),
    ("train", "train", "Train a denoising network (U-Net or MLP); write checkpoints."),
    ("sample", "sample", "Generate samples from a checkpoint with any sampler."),
    ("distill", "distill", "Distil a checkpoint into a student that samples in 1-4 steps."),
    ("encode", "encode", "Encode data to latents along the probability-flow ODE."),
    ("nll", "nll", "Negative log-likelihood of data, in bits per dimension."),
    ("interpolate", "interpolate", "Interpolate between pairs through their latents (slerp)."),
    ("fid", "fid", "Frechet Inception Distance (and KID) between two sets."),
]
_MODULES = {name: module for name, module, _ in COMMANDS}
_SUMMARIES = {name: summary for name, _, summary in COMMANDS}


class _Commands(dict):
    """The commands imported so far; ``commands[name]`` imports one (click's ``group.commands``)."""

    def __missing__(self, name: str):
        if name not in _MODULES:
            raise KeyError(name)
        self[name] = command = _load(name)
        return command


class LazyGroup(typer.core.TyperGroup):
    """The root command. A command's module is imported when the command is run, its help shown or
    its options completed, not before: ``ddpmctl schedule`` imports neither the other commands nor
    torch, and ``ddpmctl --help`` lists the summaries of ``COMMANDS`` without importing any
    (docs/startup.md)."""

    _summaries_only = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.commands = _Commands(self.commands)

    def list_commands(self, ctx) -> list[str]:
        return list(_MODULES)

    def get_command(self, ctx, name: str):
        if self._summaries_only and name in _MODULES and name not in self.commands:
            return typer.core.TyperCommand(name, short_help=_SUMMARIES[name], help=_SUMMARIES[name])
        try:
            return self.commands[name]
        except KeyError:
            return None

    @contextlib.contextmanager
    def _listing(self):
        """While the commands are only listed (the group's help, completing a command name)."""
        self._summaries_only = True
        try:
            yield
        finally:
            self._summaries_only = False

    def format_help(self, ctx, formatter) -> None:
        with self._listing():
            super().format_help(ctx, formatter)

    def shell_complete(self, ctx, incomplete: str):
        with self._listing():
            return super().shell_complete(ctx, incomplete)


app = typer.Typer(
    name="ddpmctl",
    cls=LazyGroup,
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


def _load(name: str):
    """The click command of ``name``: its module imported, its function turned into a command as
    ``app`` would (same markup mode), flag placeholders hidden."""
    module = importlib.import_module(f"ddpmctl.cli.{_MODULES[name]}")
    single = typer.Typer(add_completion=False, rich_markup_mode=app.rich_markup_mode, pretty_exceptions_enable=False)
    settings = {"short_help": _SUMMARIES[name], **getattr(module, "COMMAND_SETTINGS", {})}
    single.command(name, **settings)(module.command)
    command = typer.main.get_command(single)
    command.help = reflow(command.help)
    _hide_flag_placeholders(command)
    return command


def reflow(text: str | None) -> str | None:
    """A docstring's paragraphs as single lines, so that --help wraps them at the terminal's width
    (typer's rich help keeps the docstring's line breaks, which leaves ragged lines). Paragraphs
    of examples, lists or indented text keep their lines."""
    if not text:
        return text
    out = []
    for para in inspect.cleandoc(text).split("\n\n"):
        lines = para.splitlines()
        keep = para.startswith(("Example", "\b")) or any(line.startswith(("  ", "- ", "* ")) for line in lines)
        out.append(para if keep else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


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
