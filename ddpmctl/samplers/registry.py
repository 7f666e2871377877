"""The sampler registry: one ``Sampler`` record per sampler and one ``Solver`` record per ODE
solver, from which the CLI's choices and help, the man pages, docs/sample.md's table and
``expected_nfe`` are derived; ``plan`` checks a run against a process and makes its time grid.

The records live beside their functions in the family modules (``ancestral``, ``ode``,
``stochastic``), which add them with ``register``; ``ddpmctl.samplers`` imports the families in
order, so the registry holds every record once the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ddpmctl.diffusion import Denoiser
from ddpmctl.errors import InputError
from ddpmctl.schedules import Process, make_times

DEFAULT_SOLVER = "dpm++3m"


@dataclass(frozen=True)
class Solver:
    """An ODE solver ``fn(denoiser, x, times, callback=None, **options)`` of ``sample_ode``."""

    name: str
    fn: Callable
    steps: int  # default steps
    nfe: Callable[[int], int | None]  # NFE of a run of k steps (None: adaptive)
    nfe_text: str
    help: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default
    check: Callable[[Mapping[str, Any]], None] | None = None
    free_report: bool = True  # False: the callback's x0 costs extra (uncounted) evaluations


@dataclass(frozen=True)
class Sampler:
    """A sampler ``fn(denoiser, x, times, generator, callback=None, **options)`` and what it needs."""

    name: str
    fn: Callable
    steps: int | None  # default steps (None: the solver's)
    nfe: Callable[[int, Mapping[str, Any]], int | None]  # NFE of k steps with these options
    nfe_text: str
    help: str
    source: str
    options: Mapping[str, Any] = field(default_factory=dict)  # keyword -> default
    check: Callable[[Mapping[str, Any]], None] | None = None
    spacing: str = "uniform"  # default spacing
    all_steps: bool = False  # default on a process with T steps: all of them (else at most T)
    processes: tuple[str, ...] = ()  # the process kinds it is defined for (empty: every one)
    why: str = ""  # why it needs those processes

    def check_process(self, process: Process) -> None:
        if self.processes and process.kind not in self.processes:
            raise InputError(f"--sampler {self.name} does not apply to a {process.kind} model: {self.why}")

    def default_steps(self, process: Process, solver: Solver | None = None) -> int:
        """Steps when --steps is not given: on a process with T steps all T (``all_steps``: DDPM's
        Algorithm 2) or at most T; the ODE's default is the solver's (about 20 NFE)."""
        n = solver.steps if self.steps is None else self.steps
        if process.max_steps is None:
            return n
        return process.max_steps if self.all_steps else min(n, process.max_steps)


# the registry, filled by the family modules (``register``) in the order the package imports them
ODE_SOLVERS: dict[str, Solver] = {}
SAMPLERS_BY_NAME: dict[str, Sampler] = {}


def register(*records: Sampler | Solver) -> None:
    """Add sampler and ODE solver records to the registry (a name may be registered once)."""
    for r in records:
        table = ODE_SOLVERS if isinstance(r, Solver) else SAMPLERS_BY_NAME
        if r.name in table:
            raise ValueError(f"{type(r).__name__} '{r.name}' is registered twice")
        table[r.name] = r


def get_sampler(name: str) -> Sampler:
    if name not in SAMPLERS_BY_NAME:
        raise InputError(f"--sampler: unknown sampler '{name}' (choose from {', '.join(SAMPLERS_BY_NAME)})")
    return SAMPLERS_BY_NAME[name]


def get_solver(name: str) -> Solver:
    if name not in ODE_SOLVERS:
        raise InputError(f"--solver: unknown ODE solver '{name}' (choose from {', '.join(ODE_SOLVERS)})")
    return ODE_SOLVERS[name]


@dataclass(frozen=True)
class Plan:
    """A checked sampler run: the record(s), the time grid and the sampler function's options."""

    sampler: Sampler
    solver: Solver | None
    spacing: str
    times: torch.Tensor
    options: dict  # keywords of ``sampler.fn`` (the solver's name and options included)

    @property
    def steps(self) -> int:
        return len(self.times) - 1

    @property
    def nfe(self) -> int | None:
        """Network evaluations per sample (None for an adaptive solver)."""
        return self.sampler.nfe(self.steps, self.options)

    @property
    def free_report(self) -> bool:
        """Whether reporting each step's state and x0 (trajectories, progress) costs nothing extra."""
        return self.solver is None or self.solver.free_report

    def run(self, denoiser: Denoiser, x, generator=None, callback=None) -> torch.Tensor:
        return self.sampler.fn(denoiser, x, self.times, generator, callback=callback, **self.options)


def _cast(name: str, default: Any, value: Any) -> Any:
    try:
        return type(default)(value)
    except (TypeError, ValueError):
        raise InputError(f"--option {name}={value}: {name} takes {type(default).__name__} values") from None


def _options(defaults: Mapping[str, Any], given: Mapping[str, Any]) -> dict:
    """``defaults`` with the ``given`` values that are not None, cast to the default's type."""
    return {k: v if given.get(k) is None else _cast(k, v, given[k]) for k, v in defaults.items()}


def option_names() -> tuple[str, ...]:
    """Every option of every sampler and ODE solver, in registry order."""
    return tuple(dict.fromkeys(k for r in (*SAMPLERS_BY_NAME.values(), *ODE_SOLVERS.values()) for k in r.options))


def parse_options(pairs: Sequence[str] | None) -> dict[str, str]:
    """``--option NAME=VALUE`` strings as {NAME: VALUE}; ``plan`` casts each value to the type of
    the option's default. A NAME that no sampler or solver takes is an InputError."""
    out: dict[str, str] = {}
    for pair in pairs or ():
        name, eq, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not value.strip():
            raise InputError(f"--option: expected NAME=VALUE, got '{pair}'")
        if name not in option_names():
            raise InputError(f"--option: no sampler takes '{name}' (options: {', '.join(option_names())})")
        out[name] = value.strip()
    return out


def plan(
    process: Process, sampler: str, steps: int | None = None, spacing: str | None = None, rho: float = 7.0, **options
) -> Plan:
    """Check ``sampler`` and its ``options`` (``solver``, ``eta``, ``snr``, ...; those it does not
    take are ignored, except ``solver``) against ``process``, fill in the defaults and make the
    time grid."""
    record = get_sampler(sampler)
    record.check_process(process)
    solver = None
    if "solver" in record.options:
        solver = get_solver(options.get("solver") or record.options["solver"])
    elif options.get("solver") is not None:
        raise InputError(f"--solver: only the ode sampler takes a solver (got --sampler {sampler})")
    kwargs = {**_options(record.options, options), **(_options(solver.options, options) if solver else {})}
    for check in (record.check, solver.check if solver else None):
        if check is not None:
            check(kwargs)
    steps = record.default_steps(process, solver) if steps is None else int(steps)
    # a sampler's "uniform" default is the process's own default grid (EDM, whose t = sigma: karras)
    spacing = spacing or (process.default_spacing if record.spacing == "uniform" else record.spacing)
    return Plan(record, solver, spacing, make_times(process, steps, spacing, rho=rho), kwargs)


def default_steps(sampler: str, process: Process, solver: str | None = None) -> int:
    """Steps a sampler takes when --steps is not given (``Sampler.default_steps``)."""
    record = get_sampler(sampler)
    return record.default_steps(process, get_solver(solver or DEFAULT_SOLVER) if record.steps is None else None)


def expected_nfe(sampler: str, steps: int, solver: str | None = None, **options) -> int | None:
    """The NFE of a ``steps``-step run (None for an adaptive solver), options at their defaults
    unless given."""
    record = get_sampler(sampler)
    return record.nfe(int(steps), _options(record.options, dict(options, solver=solver)))


def markdown_table() -> str:
    """docs/sample.md's table of samplers (a test keeps the two equal)."""
    rows = ["| sampler | defined for | NFE | source |", "|---|---|---|---|"]
    for s in SAMPLERS_BY_NAME.values():
        where = " and ".join(k.upper() for k in s.processes) + " only" if s.processes else "every process"
        rows.append(f"| `{s.name}` | {where} | {s.nfe_text} | {s.source} |")
    return "\n".join(rows) + "\n"
