"""The registry of restoration methods: one ``Method`` record per method (function, options with
defaults, default steps, the tasks it applies to, its grid and NFE), the observation a method
restores from, and each task's default method.

A method is ``fn(denoiser, x, times, generator, callback=None, *, obs, **options)``: the samplers'
signature plus the observation. The records sit beside their functions in the family modules
(``projection``, ``guidance``, ``proximal``, ``denoising``), which ``register`` them when imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ddpmctl import samplers as S
from ddpmctl.errors import InputError
from ddpmctl.operators import TASKS, Operator
from ddpmctl.schedules import Process

# The method `restore` uses when none is given, per task, with its steps and options: the
# configuration with the best mean PSNR on the validation split of benchmarks/restore_quality.py
# at <= 200 NFE (docs/restore.md, "Benchmark"). Given flags and options override these.
DEFAULT_METHOD = {"inpaint": "dps", "denoise": "ddnm", "sr": "dps", "deblur": "dps"}
DEFAULT_SETTINGS: dict[str, tuple[int, dict[str, Any]]] = {
    "inpaint": (200, {}),  # DPS's zeta at 200 steps: 0.5 x 1000 / 200
    "denoise": (50, {"travel_length": 5, "travel_interval": 5, "travel_repeat": 2}),  # 140 NFE
    "sr": (200, {}),
    "deblur": (200, {}),
}


@dataclass(frozen=True)
class Observation:
    """What a method restores from, in model space: y = A x + n with ``op`` = A and noise ``sigma_y``."""

    op: Operator
    y: torch.Tensor
    sigma_y: float


def plain_grid(process: Process, steps: int, sigma_y: float) -> torch.Tensor:
    """The samplers' uniform grid ``make_times(process, steps)`` (t_max ... 0)."""
    return S.make_times(process, steps)


def per_task(values: Mapping[str, Any]) -> Callable[[str, int], Any]:
    """An option default that depends on the task (a callable of (task, steps), as ``Method.options`` takes)."""

    def default(task: str, steps: int) -> Any:
        return values[task]

    default.values = dict(values)  # type: ignore[attr-defined]  # for --help and the docs
    return default


@dataclass(frozen=True)
class Method:
    """A restoration method ``fn(denoiser, x, times, generator, callback=None, *, obs, **options)``:
    the sampler signature plus the observation."""

    name: str
    fn: Callable
    steps: int  # default steps (at most T on a process with T steps)
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default (a callable: of (task, steps))
    tasks: tuple[str, ...] = TASKS  # the tasks it applies to
    refusal: str = ""  # why it refuses the others ({others}: the methods that take them)
    noisy: bool = False  # needs a noisy observation
    times: Callable[[Process, int, float], torch.Tensor] = plain_grid  # its grid for (process, steps, sigma_y)
    nfe: Callable[[int, Mapping[str, Any]], int] = lambda k, options: k
    hint: str = ""  # added to the error when the result is not finite
    check_options: Callable[[Mapping[str, Any]], None] | None = None  # InputError for a bad combination
    source: str = ""

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


METHODS: dict[str, Method] = {}

# the type of every method option (``--option NAME=VALUE`` casts to it)
OPTION_TYPES = {
    "eta": float,
    "zeta": float,
    "jump_length": int,
    "jump_n": int,
    "travel_length": int,
    "travel_interval": int,
    "travel_repeat": int,
    "weight": float,
    "lam": float,
}


def register(method: Method) -> Method:
    unknown = set(method.options) - set(OPTION_TYPES)
    if unknown:
        raise ValueError(f"method {method.name}: options {sorted(unknown)} need a type in OPTION_TYPES")
    METHODS[method.name] = method
    return method


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise InputError(f"--method: unknown method '{name}' (choose from {', '.join(METHODS)})")
    return METHODS[name]


def default_method(task: str) -> str:
    """The method ``restore`` uses for ``task`` when none is given (``DEFAULT_METHOD``)."""
    return DEFAULT_METHOD[task]


def check_method(method: str | None, op: Operator, sigma_y: float) -> None:
    """InputError (one line) when ``method`` (None: the task's default) does not apply to this problem."""
    get_method(method or default_method(op.task)).check(op, sigma_y)


def parse_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--option NAME=VALUE`` strings as {NAME: value cast to the option's type}; InputError for a
    NAME no method takes or a value of the wrong type."""
    out: dict[str, Any] = {}
    for pair in pairs or ():
        name, eq, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not value.strip():
            raise InputError(f"--option: expected NAME=VALUE, got '{pair}'")
        if name not in OPTION_TYPES:
            raise InputError(f"--option: no method takes '{name}' (options: {', '.join(OPTION_TYPES)})")
        try:
            out[name] = OPTION_TYPES[name](value.strip())
        except ValueError:
            raise InputError(f"--option {pair}: {name} takes {OPTION_TYPES[name].__name__} values") from None
    return out


def describe_default(value: Any) -> str:
    """An option default as text for --help and the docs (a per-task default: task:value pairs)."""

    def text(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    values = getattr(value, "values", None)
    if values is not None:
        if len(set(values.values())) == 1:
            return text(next(iter(values.values())))
        return "/".join(f"{task}:{text(v)}" for task, v in values.items())
    if callable(value):
        return (value.__doc__ or "depends on the task").strip().splitlines()[0]
    return text(value)
