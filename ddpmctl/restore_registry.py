"""The registry of restoration methods (one ``Method`` record each), each task's default method,
and the degradation tasks.

From these records come ``restore``'s choices, defaults, ``-O`` options and ``--help``, the checks
of a method against a task and of its options, and docs/restore.md's description. A record names
its function and its time grid in ``ddpmctl.restore`` (``"ddnm"``, ``"sdedit_times"``), imported
when first used: this module needs no torch, so that ``ddpmctl restore --help`` and ``ddpmctl
degrade --help`` start without it (docs/startup.md). ``ddpmctl.restore`` re-exports every name
defined here. The functions live in the family modules of ``ddpmctl/restore/``: ``projection``
(ddnm, repaint), ``guidance`` (dps, pigdm), ``proximal`` (diffpir), ``denoising`` (sdedit),
``conditional`` (sr3: a model trained with the observation as its condition, ``train --condition``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
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

# the type of every method option (``--option NAME=VALUE`` casts to it; ``RestoreOptions`` has a field each)
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


def _restore(name: str) -> Callable:
    return getattr(importlib.import_module("ddpmctl.restore"), name)


def jump_path(steps: int, length: int, interval: int, repeats: int) -> list[int]:
    """A schedule over grid positions 0 (t_max) .. steps (t = 0) that goes down one position per
    network call and, at every position k = interval, 2 interval, ... < steps with k >= length,
    jumps back ``length`` positions, ``repeats`` times (the counts are not reset by later jumps).
    RePaint's resampling is length = interval = j, repeats = n - 1; DDNM's time travel (Wang et al.
    2023, section 3.3) is travel length l, interval s, repeats r."""
    left = {}
    if length > 0 and repeats > 0:
        left = {k: repeats for k in range(interval, steps, interval) if k >= length}
    path, k = [0], 0
    while k < steps:
        k += 1
        path.append(k)
        if left.get(k, 0) > 0:
            left[k] -= 1
            k -= length
            path.append(k)
    return path


def repaint_path(steps: int, jump_length: int, jump_n: int) -> list[int]:
    """RePaint's schedule (``jump_path`` with length = interval = jump_length, jump_n - 1 repeats).
    With 250 steps, j = 10, n = 10: 2410 down steps (NFE) and 216 jumps of 10 (2160 undone steps)."""
    return jump_path(steps, jump_length, max(jump_length, 1), jump_n - 1)


def down_steps(path: list[int]) -> int:
    """Network calls along a path: the steps that go down."""
    return sum(1 for a, b in zip(path[:-1], path[1:]) if b > a)


def _repaint_nfe(k: int, options: Mapping[str, Any]) -> int:
    return down_steps(repaint_path(k, options["jump_length"], options["jump_n"]))


def _ddnm_nfe(k: int, options: Mapping[str, Any]) -> int:
    return down_steps(jump_path(k, options["travel_length"], options["travel_interval"], options["travel_repeat"]))


def _default_zeta(task: str, steps: int) -> float:
    """0.5/0.06/0.3/0.3 (inpaint/denoise/sr/deblur) x 1000 / steps"""
    return DEFAULT_ZETA[task] * 1000.0 / steps


def per_task(values: Mapping[str, Any]) -> Callable[[str, int], Any]:
    """An option default that depends on the task (a callable of (task, steps), as ``Method.options`` takes)."""

    def default(task: str, steps: int) -> Any:
        return values[task]

    default.values = dict(values)  # type: ignore[attr-defined]  # for --help and the docs
    return default


def _sampler_nfe(k: int, options: Mapping[str, Any]) -> int | None:
    """The NFE of the sampler a conditional method runs (its record's formula)."""
    from ddpmctl.samplers.registry import get_sampler  # torch-free, like this module

    return get_sampler(options["sampler"]).nfe(k, options)


def _check_travel(options: Mapping[str, Any]) -> None:
    if options["travel_length"] < 0 or options["travel_interval"] < 1 or options["travel_repeat"] < 0:
        raise InputError(
            "--option: travel_length must be >= 0, travel_interval >= 1 and travel_repeat >= 0, got "
            f"{options['travel_length']}, {options['travel_interval']} and {options['travel_repeat']}"
        )


def _check_weight(options: Mapping[str, Any]) -> None:
    if not options["weight"] >= 0:
        raise InputError(f"--option weight: must be >= 0, got {options['weight']}")


def _check_diffpir(options: Mapping[str, Any]) -> None:
    if not 0 <= options["zeta"] <= 1:
        raise InputError(f"--zeta: diffpir's zeta (the share of fresh noise) must lie in [0, 1], got {options['zeta']}")
    if not options["lam"] > 0:
        raise InputError(f"--option lam: must be > 0, got {options['lam']}")


@dataclass(frozen=True)
class Method:
    """A restoration method ``fn(denoiser, x, times, generator, callback=None, *, obs, **options)``:
    the sampler signature plus the observation.

    A ``conditional`` method (sr3) is for a checkpoint trained with the task's observation as its
    condition (``train --condition``): it runs the model's own sampler (``restore --sampler``, its
    grid, options and NFE; ``steps`` None: the sampler's default steps) on the denoiser that the
    batch driver conditions on each row's observation (``sampling.Batches.cond``)."""

    name: str
    function: str  # its function in ddpmctl.restore (``fn``)
    steps: int | None  # default steps (at most T on a process with T steps); None: the sampler's (conditional)
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default (a callable: of (task, steps))
    tasks: tuple[str, ...] = TASKS  # the tasks it applies to
    refusal: str = ""  # why it refuses the others ({others}: the methods that take them)
    noisy: bool = False  # needs a noisy observation
    grid: str = "plain_grid"  # its time grid for (process, steps, sigma_y): a function in ddpmctl.restore
    nfe: Callable[[int, Mapping[str, Any]], int] = lambda k, options: k
    hint: str = ""  # added to the error when the result is not finite
    check_options: Callable[[Mapping[str, Any]], None] | None = None  # InputError for bad option values
    source: str = ""
    conditional: bool = False  # for a model trained with the observation as its condition (see above)

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
        Method(
            "ddnm", "ddnm", 100, "null-space projection; DDNM+ for noisy y; time travel with -O travel_repeat=R",
            {"eta": 0.85, "travel_length": 0, "travel_interval": 1, "travel_repeat": 0},
            nfe=_ddnm_nfe, check_options=_check_travel,
            source="Wang, Yu & Zhang 2023 (DDNM), eq. 17-19 and section 3.3",
        ),
        Method(
            "repaint", "repaint", 250, "inpainting with resampling", {"jump_length": 10, "jump_n": 10},
            ("inpaint", "sr", "deblur"), nfe=_repaint_nfe,
            refusal="does not apply to denoising (it replaces the observed part, which is everything; use {others})",
            source="Lugmayr et al. 2022 (RePaint)",
        ),
        Method(
            "dps", "dps", 1000, "posterior sampling", {"zeta": _default_zeta}, hint=" (try a smaller --zeta)",
            source="Chung et al. 2023 (DPS), Algorithm 1",
        ),
        Method(
            "pigdm", "pigdm", 100, "pseudo-inverse guidance", {"eta": 1.0, "weight": 1.0},
            hint=" (try a smaller -O weight)", check_options=_check_weight, source="Song et al. 2023 (PiGDM), eq. 7-8",
        ),
        Method(
            "diffpir", "diffpir", 100, "plug-and-play: closed-form data step",
            {"lam": per_task(dict.fromkeys(TASKS, 7.0)), "zeta": per_task(dict.fromkeys(TASKS, 0.3))},
            check_options=_check_diffpir, source="Zhu et al. 2023 (DiffPIR), Algorithm 1",
        ),
        Method(
            "sdedit", "sdedit", 100, "denoising", {"eta": 1.0}, ("denoise",), noisy=True, grid="sdedit_times",
            refusal="applies to denoising only (this observation is {task}; use {others})",
            source="Meng et al. 2022 (SDEdit)",
        ),
        Method(
            "sr3", "sr3", None, "an SR3 checkpoint (train --condition sr:F) samples x given y with --sampler",
            tasks=("sr",), refusal="applies to super-resolution only (this observation is {task}; use {others})",
            nfe=_sampler_nfe, conditional=True,
            source="Saharia et al. 2021 (SR3); seed 001, slide 'Conditional DDPM for super-resolution'",
        ),
    )
}  # fmt: skip


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
