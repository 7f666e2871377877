"""A module imported on first use: ``np = lazy_module("numpy")`` in place of ``import numpy as np``.

The modules that the command line's ``--help`` and choices go through (``io``, ``betas``,
``datasets``, ...) use numpy only inside their functions; with this stand-in, loading them costs
nothing and numpy (about 0.1 s) is imported by the first function that uses it
(docs/startup.md). The stand-in is never put in ``sys.modules``: an ``import numpy`` anywhere
still gets the real module. After the first use every attribute of the module is copied onto the
stand-in, so later uses are plain attribute reads.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule(ModuleType):
    """The stand-in: a module object named like the real one, empty until its first use."""

    def __getattr__(self, attr: str):
        # only called for names not yet on the stand-in: the first use (or a missing name)
        module = importlib.import_module(self.__name__)
        self.__dict__.update({k: v for k, v in vars(module).items() if not k.startswith("__")})
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r}>"


def lazy_module(name: str) -> ModuleType:
    """A stand-in for the module ``name`` that imports it when one of its attributes is first read."""
    return LazyModule(name)
