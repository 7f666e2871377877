"""The registry of restoration methods (one ``Method`` record each) and the degradation tasks.

From these records come ``restore``'s choices, defaults and ``--help``, the checks of a method
against a task, and docs/restore.md's description. A record names its function and its time grid
in ``ddpmctl.restore`` (``"ddnm"``, ``"sdedit_times"``), imported when first used: this module
needs no torch, so that ``ddpmctl restore --help`` and ``ddpmctl degrade --help`` start without it
(docs/startup.md). ``ddpmctl.restore`` re-exports every name defined here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ddpmctl.errors import InputError

if TYPE_CHECKING:  # types only: the registry imports no torch
    from ddpmctl.operators import Operator
    from ddpmctl.schedules import Process

TASKS = ("inpaint", "denoise", "sr", "deblur")  # the degradation operators (ddpmctl.operators.make_operator)

# DPS step size at 1000 steps (the DPS configs, code scaling; denoising, which DPS has no config
# for: measured); with K steps the default is DEFAULT_ZETA * 1000 / K, which keeps the total
# guidance (docs/restore.md).
DEFAULT_ZETA = {"inpaint": 0.5, "denoise": 0.06, "sr": 0.3, "deblur": 0.3}
OPTION_TYPES = {"eta": float, "zeta": float, "jump_length": int, "jump_n": int}


def _restore(name: str) -> Callable:
    return getattr(importlib.import_module("ddpmctl.restore"), name)


def _down_steps(k: int, options: Mapping[str, Any]) -> int:
    """RePaint's NFE: the down steps of its path (``restore.repaint_path``)."""
    path = _restore("repaint_path")(k, options["jump_length"], options["jump_n"])
    return sum(1 for a, b in zip(path[:-1], path[1:]) if b > a)


def _default_zeta(task: str, steps: int) -> float:
    return DEFAULT_ZETA[task] * 1000.0 / steps


@dataclass(frozen=True)
class Method:
    """A restoration method ``fn(denoiser, x, times, generator, callback=None, *, obs, **options)``:
    the sampler signature plus the observation."""

    name: str
    function: str  # its function in ddpmctl.restore (``fn``)
    steps: int  # default steps (at most T on a process with T steps)
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default (a callable: of (task, steps))
    tasks: tuple[str, ...] = TASKS  # the tasks it applies to
    refusal: str = ""  # why it refuses the others ({others}: the methods that take them)
    noisy: bool = False  # needs a noisy observation
    grid: str = "_grid"  # its time grid for (process, steps, sigma_y): a function in ddpmctl.restore (``times``)
    nfe: Callable[[int, Mapping[str, Any]], int] = lambda k, options: k
    hint: str = ""  # added to the error when the result is not finite

    @property
    def fn(self) -> Callable:
        return _restore(self.function)

    @property
    def times(self) -> Callable:
        return _restore(self.grid)

    def check(self, op: Operator, sigma_y: float) -> None:
        """InputError (one line) when the method does not apply to this problem."""
        if op.task not in self.tasks:
            others = [m.name for m in METHODS.values() if op.task in m.tasks]
            others = ", ".join(others[:-1]) + " or " + others[-1] if len(others) > 1 else others[0]
            raise InputError(f"--method {self.name} " + self.refusal.format(task=op.task, others=others))
        if self.noisy and not sigma_y > 0:
            raise InputError(
                f"--method {self.name} needs a noisy observation (noise sigma > 0 in the sidecar or --noise)"
            )

    def default_steps(self, process: Process) -> int:
        return self.steps if process.max_steps is None else min(self.steps, process.max_steps)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("ddnm", "ddnm", 100, "null-space projection; DDNM+ for noisy y", {"eta": 0.85}),
        Method("dps", "dps", 1000, "posterior sampling", {"zeta": _default_zeta}, hint=" (try a smaller --zeta)"),
        Method(
            "repaint",
            "repaint",
            250,
            "inpainting with resampling",
            {"jump_length": 10, "jump_n": 10},
            ("inpaint", "sr", "deblur"),
            nfe=_down_steps,
            refusal="does not apply to denoising (it replaces the observed part, which is everything; use {others})",
        ),
        Method(
            "sdedit",
            "sdedit",
            100,
            "denoising",
            {"eta": 1.0},
            ("denoise",),
            noisy=True,
            grid="sdedit_times",
            refusal="applies to denoising only (this observation is {task}; use {others})",
        ),
    )
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise InputError(f"--method: unknown method '{name}' (choose from {', '.join(METHODS)})")
    return METHODS[name]


def check_method(method: str, op: Operator, sigma_y: float) -> None:
    """InputError (one line) when ``method`` does not apply to this problem."""
    get_method(method).check(op, sigma_y)
