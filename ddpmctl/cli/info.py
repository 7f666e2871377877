"""ddpmctl info: what a file holds."""

from __future__ import annotations

import typer

from ddpmctl.cli.common import HELP_JSON, emit_json, handle_errors
from ddpmctl.fileinfo import describe, format_description


@handle_errors("info")
def command(
    file: str = typer.Argument(
        ..., help="An .npy array (or - for stdin), an image, a folder, an .npz, or a checkpoint."
    ),
    json_out: bool = typer.Option(False, "--json", help=HELP_JSON),
) -> None:
    """Show what a file holds: shape, dtype and value range of an array; size of an image;
    the images of a folder; the arrays of an .npz (FID statistics, a Gaussian mixture); or the
    network, process, data and training step of a checkpoint.

    Example: ddpmctl info triangles.npy

    Example: ddpmctl make-data triangles --n 64 -o - | ddpmctl noise - --t 500 -o - | ddpmctl info -

    Example: ddpmctl info ckpt/ --json
    """
    d = describe(file)
    if json_out:
        emit_json(d)
    else:
        print(format_description(d))
