"""Exceptions shared by the core and the CLI.

The CLI maps them to exit codes (see ../shared/design.md): ``InputError`` -> 2 (bad usage or bad
input, one line naming the file and the problem), ``RunError`` -> 1 (failure while running).
"""


class DdpmctlError(Exception):
    """Base class of every error ddpmctl raises on purpose."""

    exit_code = 1


class InputError(DdpmctlError, ValueError):
    """Bad usage or bad input: a file that cannot be read, a wrong shape, an unknown name."""

    exit_code = 2


class RunError(DdpmctlError, RuntimeError):
    """A failure while running (e.g. a non-finite loss, a full disk)."""

    exit_code = 1
