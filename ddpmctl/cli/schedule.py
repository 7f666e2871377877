"""Placeholder until the schedule command lands."""
import typer


def command(kind: str = typer.Argument(..., help="Data set.")) -> None:
    """Make a data set."""
    raise typer.Exit(1)
