"""Placeholder until the make-data command lands (owned by the data work)."""
import typer


def command(kind: str = typer.Argument(..., help="Data set.")) -> None:
    """Make a data set."""
    raise typer.Exit(1)
