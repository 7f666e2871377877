"""ddpmctl: a Unix-style toolkit for diffusion models (DDPM, score SDEs, probability-flow ODEs).

The package is a library first: every command of the CLI is a thin layer over the functions
exported here and in the submodules (``ddpmctl.io``, ``ddpmctl.schedules``, ``ddpmctl.diffusion``,
``ddpmctl.datasets``, ...).
"""

__version__ = "0.1.0"

from ddpmctl.errors import DdpmctlError, InputError, RunError  # noqa: E402,F401
